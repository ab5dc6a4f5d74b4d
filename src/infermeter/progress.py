"""A progress bar while a sweep runs and a summary table at its end (rich)."""

from __future__ import annotations

import sys
import textwrap

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class SweepProgress:
    def __init__(self, total: int, quiet: bool = False):
        self.quiet = quiet or total == 0
        self.console = Console(stderr=True)
        self.bar = None if self.quiet else Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"), console=self.console, transient=False)
        self.task = None
        self.total = total

    def __enter__(self):
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("sweep", total=self.total, last="")
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False

    def status(self, text: str) -> None:
        if self.bar:
            self.bar.update(self.task, description=text)

    def advance(self, row: dict) -> None:
        if self.bar:
            last = f"{row['cell_id']}: {row['status']}"
            self.bar.update(self.task, advance=1, last=last)


#: the summary table's width by default: long reasons go to numbered notes under it; --wide shows everything
TABLE_WIDTH = 120
_COLOUR = {"ok": "green", "mismatch": "yellow", "failed": "red", "skipped": "dim"}


def _fmt(v, spec: str) -> str:
    if v is None or v == "":
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


class Notes:
    """Numbered notes under the table: one per distinct text, so twenty cells skipped for the same reason
    share one note."""

    def __init__(self):
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def lines(self, width: int) -> list[str]:
        out = []
        for i, text in enumerate(self.texts, 1):
            head = f"[{i}] "
            out += textwrap.wrap(text, width, initial_indent=head, subsequent_indent=" " * len(head),
                                 break_on_hyphens=False)
        return out


def _status(r: dict, notes: Notes | None) -> tuple[str, str]:
    """(what the status cell says, its colour). A LoadGen run that LoadGen itself judged INVALID says so,
    with the constraints that failed."""
    status = r["status"]
    reason = r.get("error") or ""
    if status == "ok" and r.get("loadgen_result") == "INVALID":
        status, reason = "INVALID", f"LoadGen INVALID: {r.get('loadgen_failed_constraints') or 'see mlperf_log_summary.txt'}"
    colour = _COLOUR.get(status, "yellow")
    if not reason or status == "ok":
        return status, colour
    return (f"{status}: {reason}" if notes is None else f"{status} {notes.mark(reason)}"), colour


def _check(r: dict, notes: Notes | None) -> str:
    text = str(r.get("check_status") or "-")
    head, sep, why = text.partition(":")
    if not sep or notes is None:
        return text
    if why.strip() == (r.get("error") or "").strip():
        return head  # the same reason as the row's status: one note is enough
    return f"{head} {notes.mark(text)}"


def summary_table(rows: list[dict], title: str = "infermeter results", notes: Notes | None = None) -> Table:
    """One line per cell. With notes, reasons become numbered notes (the table fits TABLE_WIDTH); without,
    every reason is written out in its cell (--wide)."""
    wide = notes is None
    # streams only where some cell ran more than one; host RSS only with --wide
    shown = {"streams": wide or any(str(r.get("streams")) not in ("1", "None") for r in rows), "RSS MB": wide}
    columns = [("engine", "left", lambda r: r["engine"]), ("prec", "left", lambda r: r["precision"]),
               ("scenario", "left", lambda r: r["scenario"]), ("batch", "right", lambda r: str(r["batch_size"])),
               ("streams", "right", lambda r: str(r["streams"])),
               ("items/s", "right", lambda r: _fmt(r.get("throughput_items_s"), ".1f")),
               ("p50 ms", "right", lambda r: _fmt(r.get("latency_ms_p50"), ".2f")),
               ("p99 ms", "right", lambda r: _fmt(r.get("latency_ms_p99"), ".2f")),
               ("power W", "right", lambda r: _fmt(r.get("power_avg_w"), ".1f")),
               ("J/item", "right", lambda r: _fmt(r.get("energy_per_item_j"), ".4f")),
               ("RSS MB", "right", lambda r: _fmt(r.get("host_rss_peak_mb"), ".0f")),
               ("check", "left", lambda r: _check(r, notes))]
    columns = [c for c in columns if shown.get(c[0], True)]
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for name, just, _ in columns:
        t.add_column(name, justify=just, overflow="fold")
    t.add_column("status", justify="left", overflow="fold")
    for r in rows:
        status, colour = _status(r, notes)
        t.add_row(*(Text(cell(r)) for _, _, cell in columns), Text(status, style=colour))
    return t


def print_summary(rows: list[dict], out_dir, energy_note: str | None = None, wide: bool = False) -> None:
    from infermeter.engines import ENGINE_ORDER

    def order(r):
        e = r["engine"]
        return (ENGINE_ORDER.index(e) if e in ENGINE_ORDER else len(ENGINE_ORDER), e, r["precision"], r["scenario"],
                int(r["batch_size"]), int(r["streams"]))

    notes = None if wide else Notes()
    width = 1000 if wide else TABLE_WIDTH  # wide: as wide as the longest reason needs
    console = Console(file=sys.stdout, width=width, soft_wrap=wide)
    console.print(summary_table(sorted(rows, key=order), notes=notes))
    lines = notes.lines(width) if notes else []
    failed = sorted({(r["engine"], r["graph_passes_failed"]) for r in rows if r.get("graph_passes_failed")})
    for engine, what in failed:  # a pass that failed changes the graph the engine ran, and so its speed
        lines += textwrap.wrap(f"graph: {engine} ran without a failed pass: {what}", width, subsequent_indent="  ",
                               break_on_hyphens=False)
    if energy_note:
        lines += textwrap.wrap(f"energy: {energy_note}", width, subsequent_indent="  ", break_on_hyphens=False)
    lines.append(f"results: {out_dir}")
    for line in lines:
        console.print(Text(line), soft_wrap=True)

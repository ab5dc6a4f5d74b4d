"""A progress bar while a sweep runs and a summary table at its end (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


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


def _fmt(v, spec: str) -> str:
    if v is None or v == "":
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def summary_table(rows: list[dict], title: str = "infermeter results") -> Table:
    t = Table(title=title, show_lines=False)
    for col, just in (("engine", "left"), ("prec", "left"), ("scenario", "left"), ("batch", "right"),
                      ("streams", "right"), ("items/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
                      ("power W", "right"), ("J/item", "right"), ("RSS MB", "right"), ("check", "left"),
                      ("status", "left")):
        t.add_column(col, justify=just)
    for r in rows:
        status = r["status"]
        colour = {"ok": "green", "mismatch": "yellow", "failed": "red", "skipped": "dim"}.get(status, "")
        note = status if status == "ok" else f"{status}: {(r.get('error') or '')[:70]}"
        t.add_row(r["engine"], r["precision"], r["scenario"], str(r["batch_size"]), str(r["streams"]),
                  _fmt(r.get("throughput_items_s"), ".1f"), _fmt(r.get("latency_ms_p50"), ".2f"),
                  _fmt(r.get("latency_ms_p99"), ".2f"), _fmt(r.get("power_avg_w"), ".1f"),
                  _fmt(r.get("energy_per_item_j"), ".4f"), _fmt(r.get("host_rss_peak_mb"), ".0f"),
                  str(r.get("check_status") or "-")[:30], f"[{colour}]{note}[/{colour}]" if colour else note)
    return t


def print_summary(rows: list[dict], out_dir, energy_note: str | None = None) -> None:
    from infermeter.engines import ENGINE_ORDER

    def order(r):
        e = r["engine"]
        return (ENGINE_ORDER.index(e) if e in ENGINE_ORDER else len(ENGINE_ORDER), e, r["precision"], r["scenario"],
                int(r["batch_size"]), int(r["streams"]))

    console = Console(file=sys.stdout, width=200)
    console.print(summary_table(sorted(rows, key=order)))
    if energy_note:
        console.print(f"energy: {energy_note}")
    console.print(f"results: {out_dir}")

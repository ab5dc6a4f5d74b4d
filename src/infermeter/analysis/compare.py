"""`infermeter compare`: the cross-device table (pivot.py) in the terminal, and optionally as a workbook."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import pandas as pd

from infermeter.analysis.load import find_result_dirs, load_results
from infermeter.analysis.pivot import compare_table
from infermeter.errors import BadInput
from infermeter.results.writer import read_results

COMPARE_METRICS = {
    "throughput_items_s": "throughput (items/s, higher is better)",
    "latency_ms_p99": "p99 latency (ms, lower is better)",
    "items_per_j": "energy efficiency (items/J, higher is better)",
}


def _fmt(v: float) -> str:
    if pd.isna(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def print_compare(df: pd.DataFrame, console=None, metric: str = "throughput_items_s") -> None:
    """Render the comparison in the terminal with rich; the best device per row in bold green."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = compare_table(df, metric)
    lower_is_better = metric.startswith("latency")
    out = Table(title=COMPARE_METRICS.get(metric, metric), show_lines=False, header_style="bold")
    for name in table.index.names:
        out.add_column(str(name).replace("_", " "))
    for dev in table.columns:
        out.add_column(str(dev), justify="right")
    for idx, values in table.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        valid = values.dropna()
        best = (valid.idxmin() if lower_is_better else valid.idxmax()) if len(valid) > 1 else None
        cells = [_fmt(v) if dev != best else f"[bold green]{_fmt(v)}[/]" for dev, v in values.items()]
        out.add_row(*[_label(i) for i in idx], *cells)
    console.print(out)
    skipped = df[df["status"] != "ok"]
    if not skipped.empty:
        counts = ", ".join(f"{n} {s}" for s, n in skipped["status"].value_counts().items())
        console.print(f"[dim]– = no result; not counted: {counts} cell(s)[/]")


def compare_main(dirs: Iterable[str], xlsx: str | None = None, console=None, metric: str | None = None) -> int:
    """`infermeter compare DIR... [--xlsx PATH] [--metric M]`: print the cross-device table(s).

    metric None prints throughput, p99 latency and items/J; a named metric prints that one only.
    Returns 0, or 2 (one line on stderr) for bad input.
    """
    from rich.console import Console

    console = console or Console()
    try:
        found = find_result_dirs(list(dirs))
        # a tune's trials are many settings per cell, not a grid: its front (front.csv) answers for it
        tunes = [d for d in found if (d / "tune.db").is_file()
                 and all(r.get("trial") not in (None, "") for r in read_results(d / "results.csv"))]
        if tunes:
            print(f"infermeter: warning: left out: the trials of a tune (its front is front.csv there): "
                  f"{', '.join(map(str, tunes))}", file=sys.stderr)
        if len(tunes) == len(found):
            raise BadInput("these folders hold only tunes; their fronts are in front.csv")
        df = load_results([d for d in found if d not in tunes])
        if "trial" in df:  # a folder holding a grid beside a tune: its grid only
            df = df[df["trial"].isna()]
    except BadInput as e:
        print(f"infermeter compare: {e}", file=sys.stderr)
        return 2
    if metric is not None and metric not in df.columns:
        print(f"infermeter compare: --metric {metric!r} is not a results column "
              f"(e.g. {', '.join(COMPARE_METRICS)})", file=sys.stderr)
        return 2
    for m in [metric] if metric else list(COMPARE_METRICS):
        if df[m].notna().any():
            print_compare(df, console, m)
        else:
            console.print(f"{COMPARE_METRICS.get(m, m)}: no measurements in these results")
    if xlsx:
        from infermeter.analysis.workbook import write_workbook

        path = write_workbook(df, xlsx)
        console.print(f"workbook: {path}")
    return 0


def _label(value) -> str:
    """An index value as text: 8.0 -> '8', NaN (not applicable, e.g. target qps offline) -> '-'."""
    if isinstance(value, float):
        if value != value:
            return "-"
        if value.is_integer():
            return str(int(value))
    return str(value)

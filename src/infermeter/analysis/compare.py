"""Cross-device comparison: one row per cell (engine x precision x batch x scenario [x streams]), one column per device."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import pandas as pd

from infermeter.analysis.load import latest_per_cell, load_results, ok_rows
from infermeter.errors import BadInput

COMPARE_METRICS = {
    "throughput_items_s": "throughput (items/s, higher is better)",
    "latency_ms_p99": "p99 latency (ms, lower is better)",
    "items_per_j": "energy efficiency (items/J, higher is better)",
}


def cell_keys(df: pd.DataFrame) -> list[str]:
    """Row keys of the comparison; model, streams and target QPS only when they vary."""
    keys = ["engine", "precision", "batch_size", "scenario"]
    if df["streams"].nunique(dropna=True) > 1 or (df["streams"].dropna() != 1).any():
        keys.append("streams")
    if "target_qps" in df and df["target_qps"].notna().any():
        keys.append("target_qps")
    if df["model"].nunique(dropna=True) > 1:
        keys.insert(0, "model")
    return keys


def compare_table(df: pd.DataFrame, metric: str = "throughput_items_s") -> pd.DataFrame:
    """Pivot of `metric` over successful cells: index = cell keys, columns = device labels (NaN = no result).

    Only status "ok" rows count (a mismatched cell's speed is not a result); when a cell was run
    twice on one device, the last row wins.
    """
    if metric not in df.columns:
        raise KeyError(f"no column {metric!r} in results")
    keys = cell_keys(df)
    devices = list(dict.fromkeys(df["device_label"]))
    rows = latest_per_cell(ok_rows(df))
    table = rows.pivot_table(index=keys, columns="device_label", values=metric, aggfunc="last", dropna=False)
    # every device and every cell tried anywhere keeps its place, even with nothing to show
    all_cells = df[keys].drop_duplicates().sort_values(keys).set_index(keys).index
    table = table.reindex(index=all_cells, columns=devices)
    table.columns.name = "device"
    return table


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
        df = load_results(list(dirs))
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

"""The cross-device table as data: one row per cell (engine x precision x batch x scenario [x streams]),
one column per device. The terminal view (compare.py) and the workbook (workbook.py) both render it."""

from __future__ import annotations

import pandas as pd

from infermeter.analysis.load import latest_per_cell, ok_rows


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

"""The xlsx workbook: one sheet per device (every row and column of its results) and comparison sheets.

Comparison sheets: "Comparison" (throughput, items/s), "Comparison p99" (ms) and "Comparison items per J";
rows = cells (engine x precision x batch x scenario [x streams]), columns = devices. Empty = no result.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from infermeter.analysis.pivot import compare_table

COMPARISON_SHEETS = {
    "Comparison": ("throughput_items_s", "#,##0.0"),
    "Comparison p99": ("latency_ms_p99", "0.000"),
    "Comparison items per J": ("items_per_j", "#,##0.00"),
}
# number formats by column-name pattern; first match wins
FORMATS = [
    (re.compile(r"^(batch_size|streams|iterations|items|gpu_id)$"), "0"),
    (re.compile(r"_(pct)$"), "0.0"),
    (re.compile(r"^(max_abs_err|rel_err|ci95_rel|energy_trace_vs_counter_rel)$"), "0.00E+00"),
    (re.compile(r"(_ms|_ms_\w+)$"), "0.000"),
    (re.compile(r"(_items_s|_qps|_mb|_w|_j|_s)$"), "#,##0.000"),
]
HEADER_FILL = "DDEBF7"


def sheet_title(label: str, taken: set[str]) -> str:
    """An Excel-legal, unique sheet name (31 chars, none of []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", "-", str(label)).strip("'") or "device"
    base = base[:31]
    name, n = base, 2
    while name.lower() in {t.lower() for t in taken}:
        suffix = f" ({n})"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(name)
    return name


def _number_format(column: str) -> str | None:
    for pattern, fmt in FORMATS:
        if pattern.search(column):
            return fmt
    return None


def _cell_value(v):
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
        return None  # empty cell: not measured, never 0
    if hasattr(v, "item"):
        return v.item()
    return v


def _finish_sheet(ws, widths: dict[int, int]) -> None:
    from openpyxl.utils import get_column_letter

    ws.freeze_panes = "A2"
    if ws.max_row >= 1 and ws.max_column >= 1:
        ws.auto_filter.ref = ws.dimensions
    for col, width in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = max(6, min(width + 2, 60))


def _write_frame(ws, frame: pd.DataFrame, formats: dict[str, str]) -> None:
    from openpyxl.styles import Font, PatternFill

    header_font, header_fill = Font(bold=True), PatternFill("solid", fgColor=HEADER_FILL)
    widths: dict[int, int] = {}
    for j, name in enumerate(frame.columns, start=1):
        c = ws.cell(row=1, column=j, value=str(name))
        c.font, c.fill = header_font, header_fill
        widths[j] = len(str(name))
    for i, row in enumerate(frame.itertuples(index=False), start=2):
        for j, (name, v) in enumerate(zip(frame.columns, row, strict=True), start=1):
            value = _cell_value(v)
            c = ws.cell(row=i, column=j, value=value)
            fmt = formats.get(name)
            if fmt and isinstance(value, (int, float)):
                c.number_format = fmt
            shown = len(f"{value:,.3f}") if isinstance(value, float) else len(str(value)) if value is not None else 0
            widths[j] = max(widths[j], min(shown, 60))
    _finish_sheet(ws, widths)


def write_workbook(df: pd.DataFrame, path) -> Path:
    """Write the workbook to `path` (parent folders created); returns the path."""
    from openpyxl import Workbook

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    wb.remove(wb.active)
    taken: set[str] = set(COMPARISON_SHEETS)
    for sheet, (metric, fmt) in COMPARISON_SHEETS.items():
        table = compare_table(df, metric).reset_index()
        formats = {c: _number_format(c) for c in table.columns if c in df.columns}
        formats.update({dev: fmt for dev in table.columns if dev not in df.columns})
        _write_frame(wb.create_sheet(sheet), table, {k: v for k, v in formats.items() if v})
    for label, rows in df.groupby("device_label", sort=False):
        formats = {c: f for c in rows.columns if (f := _number_format(c))}
        _write_frame(wb.create_sheet(sheet_title(label, taken)), rows.reset_index(drop=True), formats)
    wb.save(path)
    return path

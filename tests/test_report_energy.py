"""The report's energy cross-checks on the committed H200 sweep: cells whose sampled power trace and NVML
energy counter disagree by more than 2% are flagged, each GPU cell shows whether it was host- or
device-bound, and rows written before energy_trace_vs_counter_pct read the same figure from the old
fraction column."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from infermeter.analysis.load import load_results
from infermeter.analysis.report import (
    TRACE_COUNTER_FLAG_PCT,
    build_report,
    energy_check_table,
    energy_flag_lines,
)
from infermeter.results.writer import ResultsCsv
from infermeter.telemetry.monitor import BOUND_RULE

H200 = Path(__file__).resolve().parents[1] / "benchmark_results_final" / "nvidia-h200" / "mobilenet_v3_large"


@pytest.fixture
def h200_rows() -> list[dict]:
    if not (H200 / "results.csv").is_file():
        pytest.skip("no committed H200 results")
    with open(H200 / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def over_2_percent(raw: list[dict]) -> set[tuple[str, str, str]]:
    """(engine, precision, batch) of the ok GPU rows whose trace and counter are more than 2% apart, from the
    CSV's own fraction column."""
    return {(r["engine"], r["precision"], r["batch_size"]) for r in raw
            if r["status"] == "ok" and r["energy_trace_vs_counter_rel"]
            and abs(100 * float(r["energy_trace_vs_counter_rel"])) > TRACE_COUNTER_FLAG_PCT}


def test_old_rows_read_the_percentage_from_the_fraction(h200_rows):
    df = load_results(H200)
    measured = df[df["energy_trace_vs_counter_rel"].notna()]
    assert not measured.empty
    assert (measured["energy_trace_vs_counter_pct"] == 100 * measured["energy_trace_vs_counter_rel"]).all()


def test_old_rows_read_the_stage_split_overhead_from_its_columns(h200_rows):
    df = load_results(H200)
    split = df[df["h2d_ms"].notna()]
    assert not split.empty
    for _, r in split.iterrows():
        stages = r["h2d_ms"] + r["compute_ms"] + r["d2h_ms"]
        assert r["stage_split_vs_e2e_pct"] == pytest.approx(100 * (stages / r["latency_ms_p50"] - 1))
    cols, body = energy_check_table(df)
    assert cols[-1] == "stages vs e2e (%)" and any(b[-1] != "–" for b in body)


def test_cells_over_2_percent_are_flagged_and_no_others(h200_rows):
    expected = over_2_percent(h200_rows)
    assert expected  # the committed sweep has such cells (2 s windows against 20-100 ms counter steps)
    df = load_results(H200)
    cols, body = energy_check_table(df)
    col = next(i for i, c in enumerate(cols) if c.startswith("trace vs counter"))
    flagged = {(b[0], b[1], b[3]) for b in body if b[col].endswith("FLAG")}
    assert flagged == expected
    lines = energy_flag_lines(df)
    assert f"Trace vs counter above {TRACE_COUNTER_FLAG_PCT:g}%: {len(expected)} cell(s)" in "\n".join(lines)
    flag_lines = [ln for ln in lines if ln.strip().startswith("FLAG")]
    assert len(flag_lines) == len(expected)
    for engine, precision, batch in expected:
        assert any(f"/ {engine} {precision} /" in ln and ln.endswith(")") and f"batch {batch} " in ln
                   for ln in flag_lines), (engine, precision, batch)
    assert lines[0] == f"bound: {BOUND_RULE}"


@pytest.mark.slow
def test_the_report_shows_bound_and_the_flags(h200_rows, tmp_path):
    folder = tmp_path / "h200"
    shutil.copytree(H200, folder, ignore=shutil.ignore_patterns("latency", "power", "logs"))
    # one more cell as a newer sweep writes it: the busiest thread and the bound it implies
    row = dict(next(r for r in h200_rows if r["status"] == "ok" and r["gpu_util_avg_pct"]))
    row.update(cell_id=row["cell_id"] + "_new", batch_size="2", busiest_thread_cpu_pct=row["proc_cpu_util_avg_pct"],
               bound="host")
    ResultsCsv(folder / "results.csv").append({k: (v if v != "" else None) for k, v in row.items()})
    df = load_results(folder)
    cols, body = energy_check_table(df)
    assert "bound" in cols
    bounds = [b[cols.index("bound")] for b in body]
    assert bounds.count("host") == 1 and bounds.count("–") == len(body) - 1  # older rows carry none
    lines = energy_flag_lines(df)
    assert "Host-bound cells: 1" in lines and any("batch 2:" in ln for ln in lines)
    assert not any("GPU boards" in ln for ln in lines)  # one board (the older rows carry no UUID)

    from pypdf import PdfReader

    written = build_report([folder], tmp_path / "report")
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(written["pdf"]).pages).split())
    assert "Energy cross-checks and host-bound cells" in text and "Energy and bound" in text
    assert "FLAG" in text and "Host-bound cells: 1" in text
    # a second board in the same folder is said, so no ratio mixes boards unnoticed
    for n, uuid in enumerate(("GPU-aaaa", "GPU-bbbb")):
        ResultsCsv(folder / "results.csv").append({**{k: (v if v != "" else None) for k, v in row.items()},
                                                   "cell_id": f"{row['cell_id']}_board{n}", "gpu_uuid": uuid})
    lines = energy_flag_lines(load_results(folder))
    assert any("rows from 2 GPU boards (GPU-aaaa, GPU-bbbb)" in ln for ln in lines)

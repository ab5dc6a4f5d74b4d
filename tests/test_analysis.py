"""Analysis on real results: two small ONNX Runtime sweeps on the CPU, labelled as two devices.

Expected values are recomputed here from the raw CSV files (csv module, numpy), not from the
analysis code under test.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

DEVICES = ("cpu-a", "cpu-b")
ROOT = Path(__file__).resolve().parents[1]


def raw_rows(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.rglob("results.csv")):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                r["_dir"] = path.parent
                out.append(r)
    return out


def as_float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def device_dir(root: Path) -> Path:
    return next(root.rglob("results.csv")).parent


def test_load_results_labels_and_empty_cells(two_result_dirs):
    from infermeter.analysis import load_results

    df = load_results(two_result_dirs)
    raw = {d: raw_rows(root) for d, root in zip(DEVICES, two_result_dirs, strict=True)}
    assert sorted(df["device_label"].unique()) == sorted(DEVICES)
    for dev, rows in raw.items():
        sub = df[df["device_label"] == dev].sort_values("batch_size")
        assert len(sub) == len(rows) > 0
        assert set(sub["results_dir"]) == {str(rows[0]["_dir"])}
        by_batch = {int(r["batch_size"]): r for r in rows}
        for _, r in sub.iterrows():
            raw_r = by_batch[int(r["batch_size"])]
            for col in ("throughput_items_s", "latency_ms_p99", "energy_j", "items_per_j"):
                expected = as_float(raw_r[col])
                if math.isnan(expected):
                    assert math.isnan(r[col]), f"{col}: an empty cell must read as not measured, got {r[col]}"
                else:
                    assert r[col] == pytest.approx(expected)
    # a parent folder is searched recursively and finds the same rows
    parent = two_result_dirs[0].parent
    assert len(load_results(parent)) == len(df)


def test_latencies_and_trace_match_files(two_result_dirs):
    from infermeter.analysis import load_latencies, load_power_trace, load_results, load_run_info

    df = load_results(two_result_dirs)
    r = df.iloc[0]
    lat = load_latencies(r["results_dir"], r["cell_id"])
    with open(Path(r["results_dir"]) / "latency" / f"{r['cell_id']}.csv") as fh:
        expected = [float(x["latency_ms"]) for x in csv.DictReader(fh)]
    assert lat.tolist() == pytest.approx(expected)
    assert np.percentile(expected, 50) == pytest.approx(r["latency_ms_p50"], rel=0.05)
    trace = load_power_trace(r["results_dir"], r["cell_id"])
    assert {"time_s", "power_w"} <= set(trace.columns) and len(trace) > 0
    assert load_run_info(r["results_dir"])["device"]["kind"] == "cpu"
    with pytest.raises(FileNotFoundError, match="no per-request latencies"):
        load_latencies(r["results_dir"], "no-such-cell")


def expected_comparison(roots, metric: str) -> dict[tuple, dict[str, float]]:
    out: dict[tuple, dict[str, float]] = {}
    for dev, root in zip(DEVICES, roots, strict=True):
        for r in raw_rows(root):
            key = (r["engine"], r["precision"], int(r["batch_size"]), r["scenario"])
            out.setdefault(key, {})
            if r["status"] == "ok":
                out[key][dev] = as_float(r[metric])
    return out


def test_compare_table_and_terminal_rendering(two_result_dirs):
    from rich.console import Console

    from infermeter.analysis import compare_table, load_results, print_compare

    df = load_results(two_result_dirs)
    table = compare_table(df, "throughput_items_s")
    expected = expected_comparison(two_result_dirs, "throughput_items_s")
    assert list(table.columns) == list(DEVICES)
    assert list(table.index.names) == ["engine", "precision", "batch_size", "scenario"]
    assert len(table) == len(expected)
    for key, per_device in expected.items():
        for dev in DEVICES:
            assert table.loc[key, dev] == pytest.approx(per_device.get(dev, math.nan), nan_ok=True)
    console = Console(record=True, width=160)
    print_compare(df, console)
    text = console.export_text()
    assert all(dev in text for dev in DEVICES) and "onnxruntime" in text


def test_workbook_comparison_sheet(two_result_dirs, tmp_path):
    from openpyxl import load_workbook

    from infermeter.analysis import load_results, write_workbook

    df = load_results(two_result_dirs)
    path = write_workbook(df, tmp_path / "out" / "results.xlsx")
    wb = load_workbook(path)
    assert {"Comparison", "Comparison p99", "Comparison items per J", *DEVICES} <= set(wb.sheetnames)
    for sheet, metric in (("Comparison", "throughput_items_s"), ("Comparison p99", "latency_ms_p99")):
        ws = wb[sheet]
        header = [c.value for c in ws[1]]
        assert header == ["engine", "precision", "batch_size", "scenario", *DEVICES]
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref
        expected = expected_comparison(two_result_dirs, metric)
        got = {}
        for row in ws.iter_rows(min_row=2, values_only=True):
            got[tuple(row[:4])] = dict(zip(DEVICES, row[4:], strict=True))
        assert set(got) == set(expected)
        for key, per_device in expected.items():
            for dev in DEVICES:
                want = per_device.get(dev, math.nan)
                if math.isnan(want):
                    assert got[key][dev] is None  # not measured: an empty cell, never 0
                else:
                    assert got[key][dev] == pytest.approx(want)
    # one sheet per device holds that device's rows
    for dev, root in zip(DEVICES, two_result_dirs, strict=True):
        assert wb[dev].max_row - 1 == len(raw_rows(root))


def test_power_unavailable_is_said_not_plotted_as_zero(two_result_dirs):
    from infermeter.analysis import load_results
    from infermeter.analysis.plots import plot_power_vs_throughput

    df = load_results(two_result_dirs[:1])
    fig, ax = plot_power_vs_throughput(df)
    texts = " ".join(t.get_text() for t in ax.texts) + ax.get_title()
    if df["power_avg_w"].isna().all():
        reason = df["energy_source"].dropna().iloc[0]
        assert reason.startswith("unavailable")
        assert "power unavailable:" in texts
        assert reason.split(":", 1)[1].split()[0] in texts  # the recorded reason, not a generic one
        assert not ax.lines
    else:
        assert ax.lines and ax.get_xlabel() == "average power (W)"


def test_outlier_removal_is_counted_on_the_plot(two_result_dirs):
    from infermeter.analysis import load_results
    from infermeter.analysis.plots import plot_latency_distribution

    df = load_results(two_result_dirs[:1])
    removed = total = 0
    for _, r in df[df["status"] == "ok"].iterrows():
        with open(Path(r["results_dir"]) / "latency" / f"{r['cell_id']}.csv") as fh:
            lat = np.array([float(x["latency_ms"]) for x in csv.DictReader(fh)])
        q1, q3 = np.percentile(lat, [25, 75])
        removed += int(((lat < q1 - 1.5 * (q3 - q1)) | (lat > q3 + 1.5 * (q3 - q1))).sum())
        total += lat.size
    _, ax = plot_latency_distribution(df, remove_outliers=True)
    assert f"outliers removed: {removed} of {total} requests" in ax.get_title()
    _, ax = plot_latency_distribution(df)
    assert "all requests shown" in ax.get_title()
    assert ax.get_ylabel() == "latency per request (ms)"


def test_normalised_to_baseline(two_result_dirs):
    from infermeter.analysis import load_results
    from infermeter.analysis.plots import normalise_to_baseline, plot_devices_normalised

    df = load_results(two_result_dirs)
    merged = normalise_to_baseline(df, "cpu-a")
    expected = expected_comparison(two_result_dirs, "throughput_items_s")
    for _, r in merged.iterrows():
        key = (r["engine"], r["precision"], int(r["batch_size"]), r["scenario"])
        assert r["ratio"] == pytest.approx(expected[key][r["device_label"]] / expected[key]["cpu-a"])
    fig, ax = plot_devices_normalised(df, "cpu-a")
    assert "cpu-a" in ax.get_ylabel()
    with pytest.raises(KeyError, match="baseline"):
        normalise_to_baseline(df, "no-such-device")


def test_report_pdf_plots_and_problems(two_result_dirs, tmp_path):
    from pypdf import PdfReader

    from infermeter.analysis import build_report, load_results
    from infermeter.results.writer import ResultsCsv

    # a third "device": a copy of cpu-b with one failed cell appended by the real writer
    broken = tmp_path / "broken" / "mobilenet_v3_large" / "cpu-c"
    shutil.copytree(device_dir(two_result_dirs[1]), broken)
    error = "worker exited with signal 9 while building the session"
    ResultsCsv(broken / "results.csv").append({
        "cell_id": "onnxruntime_fp32_offline_b4_failed", "model": "mobilenet_v3_large", "engine": "onnxruntime",
        "precision": "fp32", "device": "cpu", "scenario": "offline", "batch_size": 4, "streams": 1,
        "status": "failed", "error": error, "check_status": "not-run: worker crashed"})
    dirs = [*two_result_dirs, broken]
    written = build_report(dirs, tmp_path / "report")
    df = load_results(dirs)
    labels = list(dict.fromkeys(df["device_label"]))
    assert len(labels) == 3

    plot_paths = [p for k, p in written.items() if k.startswith("plot:")]
    kinds = {k.split(":", 1)[1].split("__")[0] for k in written if k.startswith("plot:")}
    assert {"throughput", "latency_percentiles", "latency_distribution", "power_vs_throughput",
            "energy_per_item", "memory_utilisation", "power_trace", "devices_throughput_items_s",
            "devices_normalised_throughput"} <= kinds
    for p in plot_paths:
        assert p.parent == tmp_path / "report" / "plots"
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    reader = PdfReader(written["pdf"])
    assert written["pdf"].name == "Final_Analysis.pdf"
    assert len(reader.pages) >= 4 + len(plot_paths)
    text = "\n".join(page.extract_text() for page in reader.pages)
    for label in labels:
        assert label in text
    assert error in text and "FAILED" in text
    assert "Best engine per batch size" in text
    ok = df[df["status"] == "ok"]  # each engine's graph node count beside its throughput, from the rows
    assert "graph nodes" in text and ok["graph_nodes"].notna().all()
    for _, r in ok.iterrows():
        assert f"{int(r['graph_nodes'])} {r['graph_source']}" in text
    if df["items_per_j"].isna().all():
        assert "no energy measurements" in text
    assert written["xlsx"].is_file()


def test_entry_points_exit_status(two_result_dirs, tmp_path, capsys):
    from infermeter.analysis import compare_main, report_main

    assert compare_main([str(d) for d in two_result_dirs], str(tmp_path / "c.xlsx")) == 0
    assert (tmp_path / "c.xlsx").is_file()
    assert compare_main([str(tmp_path / "missing")]) == 2
    assert report_main([str(tmp_path / "missing")], str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err)


def test_folders_without_results_are_skipped_with_a_warning(two_result_dirs, tmp_path, capsys):
    """`compare benchmark_results_final/*` also globs the report folder: skipped with a warning, not fatal."""
    from infermeter.analysis import compare_main, report_main

    empty = tmp_path / "report-like"
    empty.mkdir()
    (empty / "Final_Analysis.xlsx").write_text("")
    dirs = [str(d) for d in two_result_dirs] + [str(empty)]
    assert compare_main(dirs, str(tmp_path / "c.xlsx")) == 0
    assert report_main(dirs, str(tmp_path / "r")) == 0
    assert (tmp_path / "c.xlsx").is_file() and (tmp_path / "r" / "Final_Analysis.xlsx").is_file()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("warning" in line and str(empty) in line for line in err)
    assert compare_main([str(empty), str(tmp_path / "missing")]) == 2  # nothing left: one line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "does not exist" in err[0]


def test_compare_over_the_committed_folders_from_the_cli(tmp_path):
    import subprocess
    import sys

    final = ROOT / "benchmark_results_final"
    res = subprocess.run([sys.executable, "-m", "infermeter", "compare", *map(str, sorted(final.iterdir())),
                          "--xlsx", str(tmp_path / "gpus.xlsx")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "gpus.xlsx").is_file()
    assert "warning" in res.stderr and "report" in res.stderr  # the report folder holds no results.csv


def test_rows_from_the_old_export_are_marked(two_result_dirs, tmp_path):
    """A folder whose run.json records a tf2onnx export without its passes (made before the clean export)
    has its ONNX-fed rows marked old in the tables and named in the problems; a fresh sweep's are clean."""
    import json

    from infermeter.analysis import load_results
    from infermeter.analysis.report import problem_lines, results_table

    old = tmp_path / "old" / "mobilenet_v3_large" / "cpu-old"
    shutil.copytree(device_dir(two_result_dirs[0]), old)
    info = json.loads((old / "run.json").read_text())
    for facts in info["artifacts"].values():
        assert facts["onnx_exporter"].startswith("tf2onnx") and facts.pop("onnx_passes")["failed"] == []
    info["device_label"] = "cpu-old"  # the label the analysis reads (RunInfo.label)
    (old / "run.json").write_text(json.dumps(info))
    df = load_results([two_result_dirs[0], old])
    fresh, stale = df[df["results_dir"] != str(old)], df[df["results_dir"] == str(old)]
    assert (fresh["graph_export"] == "clean").all() and (stale["graph_export"] == "old").all()
    _, body = results_table(stale)
    assert all(line[5] == "old export" for line in body)
    problems = "\n".join(problem_lines(df))
    assert f"Measured on the old graph: {int((stale['status'] == 'ok').sum())} cells" in problems

"""The table `infermeter run` prints at the end: it fits 120 columns by default, long reasons go to numbered
notes under it, and --wide writes everything out in the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.progress import TABLE_WIDTH, print_summary
from infermeter.results.writer import read_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A real sweep from the command line: measured cells and cells skipped with long reasons (an engine
    this machine lacks, a precision an engine does not offer on a CPU)."""
    tmp = tmp_path_factory.mktemp("table")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "infermeter", "run", str(ROOT / "models" / "example_mlp"), "--device", "cpu",
            "--engines", "onnxruntime,openvino,tensorrt,onnxruntime-trt", "--precisions", "fp32,fp16",
            "--batch-sizes", "1,2", "--iterations", "3", "--warmup", "1", "--idle-time-s", "0", "--quiet",
            "--results-dir", str(tmp / "results"), "--cache-dir", str(tmp / "cache")]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    (csv,) = (tmp / "results").rglob("results.csv")
    return res.stdout, read_results(csv), csv.parent


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_table_of_a_real_sweep_fits_120_columns(small_sweep):
    out, rows, _ = small_sweep
    long = [line for line in out.splitlines() if len(line) > TABLE_WIDTH]
    assert not long, long
    reasons = {r["error"] for r in rows if r["status"] == "skipped"}
    assert reasons and any(len(x) > 40 for x in reasons)  # the sweep has reasons that would not fit a cell
    for reason in reasons:
        assert _flat(reason) in _flat(out)  # each one in full, once, in the notes under the table
        assert _flat(out).count(_flat(reason)) == 1
    measured = [r for r in rows if r["status"] == "ok"]
    assert measured
    for r in measured:
        assert format(float(r["throughput_items_s"]), ".1f") in out


def test_wide_writes_every_reason_in_its_row(small_sweep, capsys):
    _, rows, out_dir = small_sweep
    print_summary(rows, out_dir, wide=True)
    out = capsys.readouterr().out
    skipped = [r for r in rows if r["status"] == "skipped"]
    for r in skipped:
        line = next(line for line in out.splitlines()
                    if f"skipped: {r['error']}" in line and line.split()[:2] == [r["engine"], r["precision"]])
        assert "[" + "1]" not in line  # the reason itself, not a note number
    assert "streams" in out  # every column
    assert max(len(line) for line in out.splitlines()) > TABLE_WIDTH


def test_a_failed_graph_pass_is_named_under_the_table(small_sweep, capsys):
    """A converter pass that failed on an engine's graph changes its speed: the summary names it, once per
    engine and pass, within the table's width."""
    _, rows, out_dir = small_sweep
    measured = [dict(r) for r in rows if r["status"] == "ok"]
    assert measured and all(not r["graph_passes_failed"] for r in measured)  # this sweep's graphs are whole
    what = "onnxscript.optimizer failed (ValueError: a reason long enough to need wrapping under the table)"
    for r in measured:
        r["graph_passes_failed"] = what
    print_summary(measured, out_dir)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= TABLE_WIDTH
    for engine in {r["engine"] for r in measured}:
        assert _flat(out).count(_flat(f"graph: {engine} ran without a failed pass: {what}")) == 1

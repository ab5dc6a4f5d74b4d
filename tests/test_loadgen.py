"""`--loadgen`: the same scenarios driven by MLCommons LoadGen agree with the native driver."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from infermeter.scenarios import Budget, Load, run_scenario
from infermeter.scenarios.loadgen_driver import parse_detail_messages, parse_summary

pytest.importorskip("mlperf_loadgen")

FEATURES = 64


def sleep_client(seconds: float):
    def client(_):
        time.sleep(seconds)

    return client


@pytest.fixture(scope="module")
def ort_load():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from _tiny_models import matmul_relu_session

    sess, _ = matmul_relu_session(FEATURES)
    pool = [np.random.default_rng(i).normal(size=(4, FEATURES)).astype(np.float32) for i in range(4)]
    client = lambda x: sess.run(None, {"x": x})  # noqa: E731
    return Load([client, client], lambda i: pool[i % len(pool)], 4)


def test_loadgen_and_native_single_stream_agree_on_a_sleep_client():
    load = Load([sleep_client(0.005)], lambda i: i, 1)
    budget = Budget(warmup=3, time_s=1.5)
    native = run_scenario("single-stream", load, budget)
    driven = run_scenario("single-stream", load, budget, use_loadgen=True)
    assert driven.stats["latency_ms_p50"] == pytest.approx(native.stats["latency_ms_p50"], rel=0.2)
    assert driven.throughput_items_s == pytest.approx(native.throughput_items_s, rel=0.1)
    # LoadGen's own figures tell the same story as the SUT's timestamps
    summary = driven.loadgen.summary
    assert summary["scenario"] == "SingleStream" and summary["mode"] == "PerformanceOnly"
    assert summary["latency_ms_p50"] == pytest.approx(driven.stats["latency_ms_p50"], rel=0.2)
    assert summary["samples_per_second"] == pytest.approx(driven.achieved_qps, rel=0.1)
    assert summary["min_duration_satisfied"] is True


def test_loadgen_and_native_offline_agree_on_throughput():
    load = Load([sleep_client(0.004)], lambda i: i, 8)
    budget = Budget(warmup=5, time_s=1.0)
    native = run_scenario("offline", load, budget)
    driven = run_scenario("offline", load, budget, use_loadgen=True)
    assert driven.throughput_items_s == pytest.approx(native.throughput_items_s, rel=0.1)
    # LoadGen counts samples (our batches); its rate times the batch size is our items/s
    assert driven.loadgen.summary["samples_per_second"] * 8 == pytest.approx(driven.throughput_items_s, rel=0.1)
    # offline latency is each batch's own run time, as in the native driver (not time queued in the one query)
    assert driven.stats["latency_ms_p50"] == pytest.approx(native.stats["latency_ms_p50"], rel=0.2)


@pytest.mark.parametrize("name, loadgen_name", [("offline", "Offline"), ("single-stream", "SingleStream"),
                                                 ("multi-stream", "MultiStream"), ("server", "Server")])
def test_every_scenario_runs_through_loadgen_on_onnxruntime(ort_load, name, loadgen_name):
    r = run_scenario(name, ort_load, Budget(warmup=2, iterations=24), target_qps=300,
                     latency_bound_ms=1000, use_loadgen=True)
    assert r.scenario == name and r.loadgen.summary["scenario"] == loadgen_name
    assert r.requests == 24  # multi-stream: 12 queries of 2 samples
    assert r.items == 24 * ort_load.batch_size
    assert r.latencies_ms.shape == (24,) and np.all(r.latencies_ms > 0)
    assert r.throughput_items_s == pytest.approx(r.items / r.duration_s)
    assert r.stats["latency_ms_p99"] == pytest.approx(np.percentile(r.latencies_ms, 99))
    assert r.latency_bound_met is True
    assert r.streams == (2 if name in ("multi-stream", "server") else 1)


def test_loadgen_server_runs_near_its_target_rate_and_keeps_logs(tmp_path):
    load = Load([sleep_client(0.003), sleep_client(0.003)], lambda i: i, 1)
    r = run_scenario("server", load, Budget(warmup=1, time_s=1.5), target_qps=60, use_loadgen=True,
                     loadgen_outdir=str(tmp_path))
    summary = r.loadgen.summary
    # LoadGen's schedule is an unconditioned Poisson process: ~90 arrivals, so +-30% covers chance
    assert r.achieved_qps == pytest.approx(60, rel=0.3)
    assert summary["scheduled_samples_per_second"] == pytest.approx(60, rel=0.3)
    assert summary["samples_per_second"] == pytest.approx(r.achieved_qps, rel=0.15)
    assert r.stats["latency_ms_min"] >= 3.0
    text = (tmp_path / "mlperf_log_summary.txt").read_text()
    assert parse_summary(text)["fields"] == summary["fields"]
    assert summary["valid"] == ("Result is : VALID" in text)


def test_loadgen_target_ci_reports_whether_it_was_reached():
    steady = Load([sleep_client(0.002)], lambda i: i, 1)
    r = run_scenario("single-stream", steady, Budget(warmup=2, target_ci=0.05, max_time_s=1.0), use_loadgen=True)
    assert r.loadgen.runs == 1 and r.loadgen.total_s <= 1.2
    assert r.stop.ci_target_reached is True and r.ci95_rel <= 0.05 and r.stop.reason == "ci"


def test_loadgen_reraises_a_client_failure_without_hanging():
    calls = []

    def fails_on_third(_):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        time.sleep(0.001)

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="device lost"):
        run_scenario("single-stream", Load([fails_on_third], lambda i: i, 1), Budget(warmup=0, iterations=10),
                     use_loadgen=True)
    assert threading.active_count() == before


def test_parse_summary_reads_loadgen_lines():
    text = "\n".join([
        "================================================",
        "MLPerf Results Summary",
        "================================================",
        "Scenario : Server",
        "Mode     : PerformanceOnly",
        "Completed samples per second    : 45.83",
        "Result is : INVALID",
        "  Early stopping satisfied: NO",
        "Scheduled samples per second : 46.14",
        "Min latency (ns)                : 10182265",
        "99.00 percentile latency (ns)   : 12860765",
        "target_qps : 50",
        "No warnings encountered during test.",
        "1 ERROR encountered. See detailed log.",
    ])
    s = parse_summary(text)
    assert s["scenario"] == "Server" and s["result"] == "INVALID" and s["valid"] is False
    assert s["samples_per_second"] == 45.83 and s["scheduled_samples_per_second"] == 46.14
    assert s["latency_ms_min"] == pytest.approx(10182265 / 1e6)
    assert s["latency_ms_p99"] == pytest.approx(12860765 / 1e6)
    assert s["early_stopping_satisfied"] is False
    assert s["failed_constraints"] == ["Early stopping satisfied: NO"]
    assert s["fields"]["target_qps"] == 50
    assert s["warnings"] is False and s["errors"] is True
    detail = ':::MLLOG {"key": "error_runtime", "value": "Max query count reached", ' \
             '"metadata": {"is_error": true, "is_warning": false}}'
    assert parse_detail_messages(detail) == ["error: error_runtime: Max query count reached"]



@pytest.mark.slow
def test_a_too_short_loadgen_server_run_is_invalid_in_results_csv_the_table_and_the_report(tmp_path):
    """LoadGen's own verdict reaches the row: one second of Server is too few queries for its early-stopping
    rule, so mlperf_log_summary.txt says INVALID, and so do results.csv, the summary table and the report."""
    from infermeter.analysis.load import load_results
    from infermeter.analysis.report import problem_lines, results_table
    from infermeter.results.writer import read_results

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "infermeter", "run", str(root / "models" / "example_mlp"), "--loadgen",
            "--scenario", "server", "--target-qps", "50", "--time-s", "1", "--engines", "onnxruntime",
            "--batch-sizes", "1", "--device", "cpu", "--idle-time-s", "0", "--quiet",
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    (csv,) = (tmp_path / "results").rglob("results.csv")
    (row,) = read_results(csv)
    summary = (csv.parent / "loadgen" / row["cell_id"] / "mlperf_log_summary.txt").read_text()
    assert "Result is : INVALID" in summary
    unmet = parse_summary(summary)["failed_constraints"]
    assert unmet and row["loadgen_result"] == "INVALID" and row["loadgen_failed_constraints"] == "; ".join(unmet)
    assert row["status"] == "ok"  # the engine's numbers were measured; LoadGen's verdict stands beside them
    table = res.stdout
    line = next(x for x in table.splitlines() if x.startswith("onnxruntime"))
    assert "INVALID [" in line and "ok" not in line.split()[-2:]
    assert all(c in " ".join(table.split()) for c in unmet)  # each failed constraint, in the notes
    df = load_results(csv.parent)
    _, body = results_table(df)
    assert body[0][-1] == "ok, LoadGen INVALID"
    problems = " ".join(problem_lines(df))
    assert "LOADGEN INVALID" in problems and all(c in problems for c in unmet)

"""Every field of the records a scenario returns reaches results.csv (or the file beside the row its
metadata names): the row is built from the records in one place, ScenarioResult.columns()."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from infermeter.config import RunConfig
from infermeter.results.schema import BY_NAME
from infermeter.results.writer import read_results
from infermeter.scenarios.base import LoadGenRun, ScenarioResult, ServerStats, StopInfo, WarmUp
from infermeter.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
RECORDS = (ScenarioResult, WarmUp, StopInfo, ServerStats, LoadGenRun)


def _sweep(tmp_path: Path, **kw) -> tuple[Path, list[dict]]:
    cfg = dict(model=str(ROOT / "models" / "example_mlp"), device="cpu", engines=["onnxruntime"],
               precisions=["fp32"], batch_sizes=[1], warmup=3, idle_time_s=0, quiet=True, latency_bound_ms=1000.0,
               results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"))
    cfg.update(kw)
    status, s = run_sweep(RunConfig(**cfg))
    rows = read_results(s.out_dir / "results.csv")
    assert status == 0 and rows and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    return s.out_dir, rows


@pytest.fixture(scope="module")
def server_ci(tmp_path_factory):
    """The native server scenario stopped by --target-ci: server, CI and warm-up records all filled."""
    return _sweep(tmp_path_factory.mktemp("server"), scenarios=["server"], target_qps=[200.0],
                  target_ci=0.5, time_s=0.5, max_time_s=3.0)


@pytest.fixture(scope="module")
def loadgen_run(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen")
    return _sweep(tmp_path_factory.mktemp("loadgen"), scenarios=["single-stream"], loadgen=True, time_s=0.5)


def test_every_record_field_declares_where_it_is_written():
    for record in RECORDS:
        for f in fields(record):
            meta = f.metadata
            where = [k for k in ("file", "internal", "part") if meta.get(k)]
            if meta.get("part"):
                assert any(r.__name__ in str(f.type) for r in RECORDS), f"{record.__name__}.{f.name}: {f.type}"
            if not where:
                column = meta.get("column") or f.name
                assert column in BY_NAME, f"{record.__name__}.{f.name}: no results.csv column {column!r}"
            else:
                assert len(where) == 1 and not meta.get("column"), f"{record.__name__}.{f.name}: {meta}"


def _found(record, out_dir: Path, row: dict) -> None:
    """Each field of `record` in `row` (non-empty) or in the file its metadata names."""
    for f in fields(record):
        meta = f.metadata
        if meta.get("internal") or meta.get("part"):
            continue  # parts are records of their own, checked by their callers
        if meta.get("file") == "results.csv latency_ms_* columns":
            assert all(row[k] is not None for k in BY_NAME if k.startswith("latency_ms_")), row
        elif meta.get("file"):
            path = out_dir / meta["file"].replace("<cell>", row["cell_id"])
            assert path.exists(), f"{record.__name__}.{f.name}: {path} missing"
        elif (f.name not in ("ci_target", "ci_target_reached") or row["stop_rule"] == "ci") and \
                (f.name != "failed_constraints" or row["loadgen_result"] == "INVALID"):
            column = meta.get("column") or f.name
            assert row.get(column) is not None, f"{record.__name__}.{f.name}: column {column} empty in {row['cell_id']}"


def test_server_ci_and_warmup_fields_are_in_results_csv(server_ci):
    out_dir, (row,) = server_ci
    for record in (ScenarioResult, WarmUp, StopInfo, ServerStats):
        _found(record, out_dir, row)
    assert row["stop_rule"] == "ci" and row["stop_reason"] in ("ci", "max_time")
    assert int(row["ci_checks"]) >= 1 and row["ci_target_reached"] == ("true" if row["stop_reason"] == "ci" else "false")
    assert float(row["ci95_rel"]) == pytest.approx(float(row["ci95_rel_latency"]))  # server: latency alone
    assert int(row["issued"]) <= int(row["planned"]) and int(row["warmup_requests"]) == 3
    assert float(row["queue_wait_ms_mean"]) >= 0 and float(row["service_ms_mean"]) > 0
    assert float(row["dispatch_lag_ms_max"]) >= float(row["dispatch_lag_ms_p99"])


def test_loadgen_fields_are_in_results_csv(loadgen_run):
    out_dir, (row,) = loadgen_run
    for record in (ScenarioResult, WarmUp, StopInfo, LoadGenRun):
        _found(record, out_dir, row)
    summary = (out_dir / "loadgen" / row["cell_id"] / "mlperf_log_summary.txt").read_text()
    assert f"Result is : {row['loadgen_result']}" in summary
    assert (row["loadgen_failed_constraints"] is None) == (row["loadgen_result"] == "VALID")
    assert int(row["loadgen_runs"]) == 1 and float(row["loadgen_wall_s"]) >= float(row["loadgen_total_s"]) > 0

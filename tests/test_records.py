"""Every field of the records a cell's measurement returns reaches results.csv (or the file beside the row its
metadata names): the row is built from the records in one place each, ScenarioResult.columns(),
CellTelemetry.columns() and CheckResult.row_fields(). The run-level records (TelemetryFacts, EngineFacts) are
run.json's mappings, every field a key."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from infermeter.check import HeldOutAccuracy
from infermeter.config import RunConfig
from infermeter.protocol import EngineFacts
from infermeter.results.schema import BY_NAME, ENERGY, MEMORY
from infermeter.results.writer import read_results
from infermeter.scenarios.base import LoadGenRun, ScenarioResult, ServerStats, StopInfo, WarmUp
from infermeter.sweep import run_sweep
from infermeter.telemetry.monitor import COUNTER
from infermeter.telemetry.records import (
    CellTelemetry,
    CounterFacts,
    EnergyRecord,
    IdleFacts,
    MemoryRecord,
    TelemetryFacts,
    UtilisationRecord,
)

ROOT = Path(__file__).resolve().parents[1]
TELEMETRY_RECORDS = (CellTelemetry, EnergyRecord, MemoryRecord, UtilisationRecord)
RECORDS = (ScenarioResult, WarmUp, StopInfo, ServerStats, LoadGenRun, *TELEMETRY_RECORDS, HeldOutAccuracy)
RUN_JSON_RECORDS = (TelemetryFacts, IdleFacts, CounterFacts, EngineFacts)  # written as asdict
# what the monitor reads only from a GPU: empty in a CPU run's row whatever the machine has
GPU_ONLY = {"device_mem_peak_mb", "gpu_util_avg_pct", "bound", "throttle_reasons", "rapl_energy_j",
            "energy_trace_vs_counter_rel", "energy_trace_vs_counter_pct"}


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
def int8_run(tmp_path_factory):
    """An int8 cell (the held-out accuracy record) with an idle baseline asked for (the idle facts where the
    machine can measure energy)."""
    return _sweep(tmp_path_factory.mktemp("int8"), precisions=["int8"], scenarios=["single-stream"], time_s=0.3,
                  idle_time_s=0.2, calibration_items=16, heldout_items=24)


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


def _blank(cls, **kw):
    """A record with every field None (its own types unchecked), parts given by kw."""
    return cls(**{f.name: None for f in fields(cls)} | kw)


def test_the_telemetry_records_fill_every_energy_and_memory_column():
    """No energy/memory column of the schema lacks a record field (energy_pass is the measurer's own)."""
    tel = CellTelemetry(energy=_blank(EnergyRecord), memory=_blank(MemoryRecord),
                        utilisation=_blank(UtilisationRecord), notes=None, trace=[])
    assert set(tel.columns()) == set(ENERGY + MEMORY) - {"energy_pass"}
    assert HeldOutAccuracy(0.5, 20.0, 8).columns() == {"top1_agreement_fp32": 0.5, "snr_db": 20.0, "heldout_items": 8}


def test_every_run_json_record_field_is_a_key_of_its_mapping():
    facts = _blank(TelemetryFacts, idle=_blank(IdleFacts), energy_counter=_blank(CounterFacts)).to_dict()
    assert set(facts) == _keys(TelemetryFacts)
    assert set(facts["idle"]) == _keys(IdleFacts) and set(facts["energy_counter"]) == _keys(CounterFacts)
    assert set(_blank(EngineFacts).to_dict()) == _keys(EngineFacts)
    for record in RUN_JSON_RECORDS:
        assert not any(f.metadata for f in fields(record)), f"{record.__name__}: a run.json record, not a row's"


def _keys(record) -> set[str]:
    return {f.name for f in fields(record)}


def _found(record, out_dir: Path, row: dict, may_be_empty=frozenset()) -> None:
    """Each field of `record` in `row` (non-empty unless in may_be_empty) or in the file its metadata names."""
    header = (out_dir / "results.csv").read_text().splitlines()[0].split(",")
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
            assert column in header, f"{record.__name__}.{f.name}: no column {column} in results.csv"
            assert column in may_be_empty or row.get(column) is not None, \
                f"{record.__name__}.{f.name}: column {column} empty in {row['cell_id']}"


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


def _telemetry_expected_empty(row: dict, facts: dict) -> tuple[set[str], set[str]]:
    """(must be empty, may be empty) among a CPU row's telemetry columns, by the monitor's rules and what
    run.json says it could read (no GPU and no RAPL here: every energy value empty, energy_source says why)."""
    assert row["device"] == "cpu"
    energy = _keys(EnergyRecord) - {"energy_source"}
    must = set(GPU_ONLY)
    # the allocator's peak is the engine's to report; telemetry_notes only when something went wrong
    may = {"device_mem_allocator_peak_mb", "telemetry_notes"}
    if facts["energy_source"].startswith("unavailable"):
        must |= energy
    else:  # RAPL: net energy or the note why not; the idle baseline where one was taken
        may |= {"energy_net_j", "energy_net_note", "power_peak_w"}
        if facts["power_idle_w"] is None:
            must.add("power_idle_w")
    return must, may


def test_telemetry_and_heldout_fields_are_in_results_csv(int8_run):
    out_dir, (row,) = int8_run
    facts = json.loads((out_dir / "run.json").read_text())["telemetry"]
    must, may = _telemetry_expected_empty(row, facts)
    for record in TELEMETRY_RECORDS:
        _found(record, out_dir, row, may_be_empty=must | may)
    assert all(row[c] is None for c in must), {c: row[c] for c in must if row[c] is not None}
    assert row["energy_source"] == facts["energy_source"]  # a CPU run's source is the run's
    if facts["energy_source"].startswith("unavailable"):
        assert row["energy_source"] != "unavailable: " and row["energy_pass"] is None  # it says why; no pass helps
    else:
        assert row["energy_net_j"] is not None or row["energy_net_note"]
    assert float(row["host_rss_peak_mb"]) > 0 and 0 <= float(row["cpu_util_avg_pct"]) <= 100
    assert float(row["proc_cpu_util_avg_pct"]) > 0
    trace = (out_dir / "power" / f"{row['cell_id']}.csv").read_text().splitlines()
    assert len(trace) >= 3 and trace[0].startswith("time_s,power_w")
    _found(HeldOutAccuracy, out_dir, row)  # a classifier: agreement, SNR and the items all filled
    assert int(row["heldout_items"]) == 24 and 0 <= float(row["top1_agreement_fp32"]) <= 1


def test_run_level_records_are_run_json_keys(int8_run):
    out_dir, (row,) = int8_run
    doc = json.loads((out_dir / "run.json").read_text())
    (group,) = doc["groups"].values()
    assert group["telemetry"] == doc["telemetry"]
    facts = doc["telemetry"]
    assert set(facts) == _keys(TelemetryFacts)
    # the parts: None where the monitor had nothing to take (no energy source to idle on; no GPU counter)
    if facts["energy_source"].startswith("unavailable"):
        assert facts["idle"] is None and facts["power_idle_w"] is None
    else:
        assert set(facts["idle"]) == _keys(IdleFacts) and facts["idle"]["window_s"] == 0.2
    if facts["energy_source"] == COUNTER:
        assert set(facts["energy_counter"]) == _keys(CounterFacts)
    else:
        assert facts["energy_counter"] is None
    assert facts["gpu"]["available"] is False and "available" in facts["rapl"]  # a CPU run: the GPU says why not
    (engine,) = doc["engines"].values()
    assert set(engine) == _keys(EngineFacts) | {"run_id"}  # the results folder names the run that measured it
    assert engine["shape_mode"] == row["shape_mode"] and engine["settings"]["heldout_set"]["items"] == 24
    held = {c: engine["check"][c] for c in HeldOutAccuracy(0, 0, 0).columns()}
    assert held["heldout_items"] == 24 and held["top1_agreement_fp32"] == pytest.approx(float(row["top1_agreement_fp32"]))
    shape = doc["artifacts"][row["input_shape"]]  # ArtifactFacts, one flat mapping as before
    assert shape["built_s"] and shape["onnx_exporter"] and "reference_spread" in shape

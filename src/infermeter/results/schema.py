"""The result row: one per cell, the same fields in results.csv and JSON. Each column's type, unit and
meaning are declared once, here; units are also in the names.

Columns are fixed here, never taken from the first row, so a later row with an extra key cannot
break the CSV. Fields a cell could not measure are empty (None), never zero. A row with a key that
is not a column is refused (UnknownColumn): a measurement can never vanish on its way to the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: type  # str, int, float or bool (written true/false)
    unit: str  # "" where the value has no unit (text, counts of nothing physical, ratios say so)
    doc: str
    group: str


def _cols(group: str, *specs: tuple[str, type, str, str]) -> list[Column]:
    return [Column(name, typ, unit, doc, group) for name, typ, unit, doc in specs]


COLUMNS: tuple[Column, ...] = tuple(
    _cols("identity",
          ("run_id", str, "", "the sweep that measured the row"),
          ("cell_id", str, "", "engine/precision/shape/scenario/batch/streams/qps: the cell, stable across runs"),
          ("started_at", str, "UTC ISO-8601", "when the cell's measurement started"),
          ("model", str, "", "model name"),
          ("weights", str, "", "where the weights came from (pretrained file, synthetic seed)"),
          ("input_shape", str, "", "the per-item input shape tag, e.g. 224x224x3"),
          ("engine", str, "", "inference engine"),
          ("precision", str, "", "numeric precision the engine computed in (fp32 = IEEE fp32)"),
          ("device", str, "", "cpu or cuda"),
          ("device_name", str, "", "the device's label (CPU model, GPU name or --device-label)"),
          ("gpu_id", int, "", "NVML index of the GPU; empty on a CPU"),
          ("gpu_uuid", str, "", "the GPU board's UUID (NVML): rows from two boards of one model stay apart"),
          ("gpu_name", str, "", "the GPU's name (NVML); empty on a CPU"),
          ("parallel_gpus", bool, "", "several GPUs of the machine were swept at the same time (--parallel-gpus)"),
          ("scenario", str, "", "offline, single-stream, multi-stream or server"),
          ("batch_size", int, "items", "items per request"),
          ("streams", int, "", "concurrent clients (offline: requests in flight)"),
          ("target_qps", float, "queries/s", "server: the Poisson arrival rate asked for"),
          ("io", str, "", "host or device: where inputs live before each call"),
          ("driver", str, "", "GPU driver version (NVML); empty on a CPU, which runs through no device driver"),
          ("shape_mode", str, "", "static: the engine compiled for this cell's exact input shape; dynamic: one "
                                  "artifact for every batch size (--shape-mode)"),
          ("trial", int, "", "infermeter tune: the search's trial number (empty for rows of `infermeter run`)"),
          ("stage", str, "", "infermeter tune: screen (short window) or confirm (the front re-measured to --target-ci)"))
    + _cols("timing",
            ("iterations", int, "requests", "timed requests"),
            ("items", int, "items", "timed items (requests x batch)"),
            ("duration_s", float, "s", "the timed window"),
            ("throughput_items_s", float, "items/s", "items completed per second in the timed window"),
            ("achieved_qps", float, "queries/s", "requests completed per second"),
            ("offered_qps", float, "queries/s", "server: requests issued per second (the arrivals' real rate)"),
            ("dropped", int, "requests", "server: requests dropped because they had not started when issuing ended"),
            ("late_dispatches", int, "requests", "server: requests dispatched late by the harness (over 1 ms)"),
            ("issued", int, "requests", "server: requests the load generator issued"),
            ("planned", int, "requests", "server: arrivals the Poisson schedule planned (rate x window)"),
            ("dispatch_lag_ms_p99", float, "ms", "server: 99th percentile of how late the harness issued a request"),
            ("dispatch_lag_ms_max", float, "ms", "server: the latest issue after its scheduled arrival"),
            ("queue_wait_ms_mean", float, "ms", "server: mean wait from scheduled arrival to service start"),
            ("service_ms_mean", float, "ms", "server: mean time from service start to completion"),
            ("warmup_requests", int, "requests", "unmeasured warm-up requests before the timed window"),
            ("warmup_s", float, "s", "the warm-up's length"),
            ("warmup_first_ms", float, "ms", "the warm-up's first call (after the cold first_inference_ms call)"),
            ("stop_reason", str, "", "what ended the measurement: iterations, time, ci, max_time or loadgen"),
            ("stop_rule", str, "", "the stopping rule in force: iterations, time or ci (--target-ci)"),
            ("ci_target", float, "fraction", "--target-ci: the relative 95% CI half-width asked for"),
            ("ci_target_reached", bool, "", "--target-ci runs: whether the final data met the target"),
            ("ci_checks", int, "", "--target-ci runs: how often the interval was computed while measuring"),
            ("latency_ms_mean", float, "ms", "mean request latency"),
            ("latency_ms_p50", float, "ms", "median request latency"),
            ("latency_ms_p90", float, "ms", "90th percentile request latency"),
            ("latency_ms_p95", float, "ms", "95th percentile request latency"),
            ("latency_ms_p99", float, "ms", "99th percentile request latency"),
            ("latency_ms_std", float, "ms", "standard deviation of request latency"),
            ("latency_ms_min", float, "ms", "fastest request"),
            ("latency_ms_max", float, "ms", "slowest request"),
            ("ci95_rel", float, "fraction", "95% CI half-width of mean latency/throughput, relative to the mean"),
            ("ci95_rel_latency", float, "fraction", "95% CI half-width of the mean latency (batch means), relative"),
            ("ci95_rel_throughput", float, "fraction", "95% CI half-width of the throughput (batch means), relative"),
            ("loadgen_result", str, "", "--loadgen: LoadGen's own verdict, VALID or INVALID (mlperf_log_summary.txt)"),
            ("loadgen_failed_constraints", str, "", "--loadgen: the constraints LoadGen found unmet, e.g. "
                                                    "'Early stopping satisfied: NO'"),
            ("loadgen_runs", int, "", "--loadgen: LoadGen runs made (--target-ci lengthens the run until it is met)"),
            ("loadgen_total_s", float, "s", "--loadgen: every run's timed window together"),
            ("loadgen_wall_s", float, "s", "--loadgen: the reported run, from LoadGen's start to its end"),
            ("latency_bound_ms", float, "ms", "server: the p99 bound asked for"),
            ("latency_bound_met", bool, "", "server: p99 within the bound and nothing dropped"),
            ("build_s", float, "s", "one-off artifact build (conversion, engine plan); 0 when cached"),
            ("load_s", float, "s", "one-off session creation / compilation"),
            ("compile_s", float, "s", "one-off compile of the artifact this cell ran (its shape and settings; "
                                      "shared by the cells that run the same one), never inside timing"),
            ("first_inference_ms", float, "ms", "the cold first call at this batch size (compile, autotune)"),
            ("graph_nodes", int, "", "operations in the graph the engine ran (its artifact's compute nodes; "
                                     "OpenVINO: the compiled model's execution layers); run.json has the op histogram"),
            ("graph_source", str, "", "the way the model reached the engine (e.g. onnx, tf-frontend, onnx2torch)"),
            ("graph_passes_failed", str, "", "converter or optimizer passes that failed on this engine's graph "
                                             "(the graph ran without them, which changes speed); empty when none"),
            ("h2d_ms", float, "ms", "GPU: host-to-device copy, median"),
            ("compute_ms", float, "ms", "GPU: compute, median"),
            ("d2h_ms", float, "ms", "GPU: device-to-host copy, median"),
            ("stage_split_method", str, "", "how h2d/compute/d2h were timed (a separate synchronised pass after "
                                            "the timed run, never inside it)"),
            ("stage_split_vs_e2e_pct", float, "%", "(h2d + compute + d2h) against the row's median latency, minus "
                                                   "100%: the separate pass's synchronisation overhead"))
    + _cols("energy",
            ("energy_j", float, "J", "gross energy over the energy window"),
            ("energy_net_j", float, "J", "energy minus idle power x window; empty, with energy_net_note, "
                                         "where it would be negative"),
            ("energy_net_note", str, "", "why energy_net_j is empty (or its idle baseline unsettled)"),
            ("energy_per_item_j", float, "J/item", "energy_j per item"),
            ("items_per_j", float, "items/J", "items per joule"),
            ("power_avg_w", float, "W", "mean power over the energy window"),
            ("power_peak_w", float, "W", "highest sampled power"),
            ("power_idle_w", float, "W", "idle power measured in the run's own state"),
            ("energy_window_s", float, "s", "the window the energy covers"),
            ("energy_pass", str, "", "set when energy comes from a separate, longer pass"),
            ("energy_trace_vs_counter_rel", float, "fraction", "integrated power trace vs the energy counter"),
            ("energy_trace_vs_counter_pct", float, "%", "the same in percent; the report flags cells above 2%"),
            ("power_field", str, "", "which power reading the trace holds"),
            ("throttle_reasons", str, "", "GPU clock throttle reasons OR-ed over the cell"),
            ("energy_source", str, "", "nvml-energy-counter, nvml-power-samples, rapl, or unavailable: <why>"),
            ("rapl_energy_j", float, "J", "CPU sockets' RAPL energy beside a GPU run (never the row's energy_j)"),
            ("telemetry_notes", str, "", "telemetry problems in the cell (failed sampler reads, NVML notes)"))
    + _cols("memory",
            ("device_mem_peak_mb", float, "MB", "GPU memory of this process, peak"),
            ("device_mem_allocator_peak_mb", float, "MB", "the framework allocator's peak"),
            ("host_rss_peak_mb", float, "MB", "resident memory of the worker process, peak"),
            ("gpu_util_avg_pct", float, "%", "GPU utilisation, mean over the timed window"),
            ("cpu_util_avg_pct", float, "%", "whole-machine CPU utilisation over the cell"),
            ("proc_cpu_util_avg_pct", float, "% of one core", "the worker process's CPU use over the cell"),
            ("busiest_thread_cpu_pct", float, "% of one core", "the worker's busiest thread over the cell"),
            ("bound", str, "", "GPU rows: host, device or unknown, by the rule in run.json telemetry.bound_rule "
                               "(host: GPU utilisation < 50% while the busiest thread uses >= 90% of a core)"))
    + _cols("check",
            ("max_abs_err", float, "", "largest absolute difference from the float64 reference"),
            ("rel_err", float, "", "relative error against the float64 reference"),
            ("top1_agreement", float, "fraction", "classifiers: top-1 classes equal to the reference's"),
            ("check_snr_db", float, "dB", "signal-to-noise ratio of the outputs against the reference"),
            ("check_status", str, "", "pass, mismatch, or not-run: <why>"))
    # int8/bf16 rows: agreement with fp32 outputs over held-out real inputs (neither calibration nor check inputs)
    + _cols("accuracy",
            ("top1_agreement_fp32", float, "fraction", "int8/bf16: top-1 agreement with fp32 on held-out inputs"),
            ("snr_db", float, "dB", "int8/bf16: output SNR against fp32 on held-out inputs"),
            ("heldout_items", int, "items", "int8/bf16: held-out inputs the accuracy columns cover"))
    + _cols("status",
            ("status", str, "", "ok, mismatch, failed or skipped"),
            ("error", str, "", "why a cell failed, was skipped or mismatched"))
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
FIELDS: list[str] = [c.name for c in COLUMNS]


def _group(name: str) -> list[str]:
    return [c.name for c in COLUMNS if c.group == name]


IDENTITY, TIMING, ENERGY, MEMORY, CHECK, ACCURACY, STATUS = (
    _group(g) for g in ("identity", "timing", "energy", "memory", "check", "accuracy", "status"))
TEXT_COLUMNS: set[str] = {c.name for c in COLUMNS if c.type in (str, bool)}
NUMERIC_COLUMNS: list[str] = [c.name for c in COLUMNS if c.type in (int, float)]


class UnknownColumn(ValueError):
    """A row key that results.csv has no column for."""


@dataclass(frozen=True)
class CellIdentity:
    """Which cell a row is about: built once per row, by the worker (measured) or the sweep (skipped/failed)."""
    run_id: str
    cell_id: str
    model: str
    weights: str | None
    input_shape: str
    engine: str
    precision: str
    device: str
    device_name: str
    gpu_id: int | None
    scenario: str
    batch_size: int
    streams: int
    target_qps: float | None
    io: str
    started_at: str | None = None
    driver: str | None = None
    parallel_gpus: bool | None = None
    shape_mode: str | None = None
    gpu_uuid: str | None = None
    gpu_name: str | None = None

    @classmethod
    def of(cls, *, run_id: str, cell, model, engine: str, precision: str, dev, device_label: str, io: str,
           started_at: str | None = None, shape_mode: str | None = None) -> CellIdentity:
        """From the sweep's objects: a Cell, a Model, a DeviceInfo."""
        return cls(run_id=run_id, cell_id=cell.cell_id, model=model.name, weights=model.weights_id(),
                   input_shape=model.shape_tag(), engine=engine, precision=precision, device=dev.kind,
                   device_name=device_label, gpu_id=dev.gpu_id, scenario=cell.scenario, batch_size=cell.batch_size,
                   streams=cell.streams, target_qps=cell.target_qps, io=io, started_at=started_at,
                   shape_mode=shape_mode, gpu_uuid=dev.uuid if dev.kind == "cuda" else None,
                   gpu_name=dev.name if dev.kind == "cuda" else None)

    def row(self, **fields) -> dict:
        """A full row: this identity, the given fields, every other column empty."""
        return new_row(**asdict(self), **fields)


def empty_row() -> dict:
    return dict.fromkeys(FIELDS)


def check_keys(row: dict) -> None:
    unknown = [k for k in row if k not in BY_NAME]
    if unknown:
        raise UnknownColumn(f"result row has keys with no results.csv column: {', '.join(sorted(unknown))} "
                            "(declare them in results/schema.py)")


def new_row(**fields) -> dict:
    check_keys(fields)
    row = empty_row()
    row.update(fields)
    return row


def normalise(row: dict) -> dict:
    """Every schema field present (None where unmeasured); a key that is not a column raises UnknownColumn."""
    return new_row(**row)

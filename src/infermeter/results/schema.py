"""The result row: one per cell, the same fields in results.csv and JSON. Units are in the names.

Columns are fixed here, never taken from the first row, so a later row with an extra key cannot
break the CSV. Fields a cell could not measure are empty (None), never zero.
"""

from __future__ import annotations

IDENTITY = ["run_id", "cell_id", "started_at", "model", "weights", "input_shape", "engine", "precision",
            "device", "device_name", "gpu_id", "parallel_gpus", "scenario", "batch_size", "streams", "target_qps", "io", "driver"]
TIMING = ["iterations", "items", "duration_s", "throughput_items_s", "achieved_qps",
          "latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "latency_ms_p95", "latency_ms_p99",
          "latency_ms_std", "latency_ms_min", "latency_ms_max", "ci95_rel", "latency_bound_ms",
          "latency_bound_met", "build_s", "load_s", "first_inference_ms",
          "h2d_ms", "compute_ms", "d2h_ms", "stage_split_method"]
ENERGY = ["energy_j", "energy_net_j", "energy_per_item_j", "items_per_j", "power_avg_w", "power_peak_w",
          "power_idle_w", "energy_window_s", "energy_pass", "energy_trace_vs_counter_rel", "power_field",
          "throttle_reasons", "energy_source"]
MEMORY = ["device_mem_peak_mb", "device_mem_allocator_peak_mb", "host_rss_peak_mb", "gpu_util_avg_pct",
          "cpu_util_avg_pct"]
CHECK = ["max_abs_err", "rel_err", "top1_agreement", "check_snr_db", "check_status"]
# int8/bf16 rows: agreement with fp32 outputs over held-out real inputs (neither calibration nor check inputs)
ACCURACY = ["top1_agreement_fp32", "snr_db", "heldout_items"]
STATUS = ["status", "error"]

FIELDS: list[str] = IDENTITY + TIMING + ENERGY + MEMORY + CHECK + ACCURACY + STATUS


def empty_row() -> dict:
    return dict.fromkeys(FIELDS)


def normalise(row: dict) -> dict:
    """Every schema field present (None where unmeasured); unknown keys are kept for JSON only."""
    out = empty_row()
    out.update(row)
    return out

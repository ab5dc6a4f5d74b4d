"""Telemetry without a GPU: RAPL on a sysfs-shaped tree, energy arithmetic on analytic traces, the monitor's
window and derived fields on a scripted GPU reader, sampler thread hygiene, and the unavailable path."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infermeter.device import DeviceInfo
from infermeter.telemetry import energy as ea
from infermeter.telemetry import open_monitor
from infermeter.telemetry.monitor import TRACE_COLUMNS
from infermeter.telemetry.nvml import clock_event_names
from infermeter.telemetry.rapl import RaplAccumulator, RaplReader
from infermeter.telemetry.sampler import Sampler

CPU = DeviceInfo("cpu", "test-cpu")
FAST_MS = 50.0  # the floor: most samples per second of test time
SPEC_TRACE_COLUMNS = {"time_s", "power_w", "gpu_util_pct", "mem_used_mb", "temp_c", "sm_clock_mhz",
                      "mem_clock_mhz", "cpu_util_pct", "rss_mb"}


def telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "infermeter-telemetry"]


# --------------------------------------------------------------------------------------------- RAPL tree
def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # the sampler thread may read at any moment: never let it see half a number


def make_zone(path: Path, name: str, energy_uj: int, max_range_uj: int) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return path


def make_rapl_tree(root: Path, pkg_uj: int, dram_uj: int, max_range_uj: int) -> dict[str, Path]:
    """Socket 0 with core (inside the package) and dram subzones, plus a psys zone that must not be counted."""
    pkg = make_zone(root / "intel-rapl:0", "package-0", pkg_uj, max_range_uj)
    make_zone(pkg / "intel-rapl:0:0", "core", 5, max_range_uj)
    dram = make_zone(pkg / "intel-rapl:0:1", "dram", dram_uj, max_range_uj)
    make_zone(root / "intel-rapl:1", "psys", 7, max_range_uj)
    return {"package": pkg / "energy_uj", "dram": dram / "energy_uj"}


def test_rapl_reader_finds_package_and_dram_only(tmp_path):
    make_rapl_tree(tmp_path, 1000, 2000, 10**9)
    reader = RaplReader(tmp_path)
    assert reader.available, reader.why
    assert sorted(d.kind for d in reader.domains) == ["dram", "package"]
    assert any("core" in s for s in reader.skipped) and any("psys" in s for s in reader.skipped)
    info = reader.info()
    assert "whole socket" in info["note"]
    assert {d["domain"] for d in info["domains"]} == {"intel-rapl:0/package-0", "intel-rapl:0:1/dram"}


def test_rapl_accumulator_sums_domains_and_unwraps(tmp_path):
    max_range = 50_000_000
    pkg_start, dram_start = max_range - 3_000_000, 1_000_000
    files = make_rapl_tree(tmp_path, pkg_start, dram_start, max_range)
    acc = RaplAccumulator(RaplReader(tmp_path))
    assert acc.total_uj() == 0

    pkg_mid, dram_mid = max_range - 1_000_000, 1_500_000
    write_atomic(files["package"], str(pkg_mid))
    write_atomic(files["dram"], str(dram_mid))
    expected = (pkg_mid - pkg_start) + (dram_mid - dram_start)
    assert acc.total_uj() == expected

    pkg_wrapped = 2_000_000  # the package counter passed max_range and restarted from 0
    write_atomic(files["package"], str(pkg_wrapped))
    expected += (max_range - pkg_mid) + pkg_wrapped
    assert acc.total_uj() == expected


def test_rapl_missing_tree_and_unparsable_counter_say_why(tmp_path):
    missing = RaplReader(tmp_path / "nope")
    assert not missing.available and "missing" in missing.why and str(tmp_path / "nope") in missing.why

    empty = RaplReader(tmp_path)
    assert not empty.available and "no intel-rapl package domain" in empty.why

    files = make_rapl_tree(tmp_path / "garbled", 1, 1, 100)
    files["package"].write_text("not-a-number\n")
    garbled = RaplReader(tmp_path / "garbled")
    assert not garbled.available and str(files["package"]) in garbled.why and "cannot read" in garbled.why


_PERMISSION_PROBE = """
import json, os, sys
from infermeter.telemetry.rapl import RaplReader  # imported first: the unprivileged user may not read the venv
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)  # drop root: root reads any file whatever its mode
r = RaplReader(sys.argv[1])
print(json.dumps({"available": r.available, "why": r.why}))
"""


def test_rapl_permission_denied_says_why():
    # a world-traversable tree (pytest's tmp_path is private to its owner) whose counter only root may read
    root = Path(tempfile.mkdtemp(prefix="infermeter-rapl-"))
    try:
        os.chmod(root, 0o755)
        files = make_rapl_tree(root, 1, 1, 100)
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                os.chmod(Path(dirpath) / d, 0o755)
            for f in filenames:
                os.chmod(Path(dirpath) / f, 0o644)
        os.chmod(files["package"], 0o400)
        if os.geteuid() != 0 and os.access(files["package"], os.R_OK):
            pytest.skip("this filesystem ignores file modes")
        probe = subprocess.run([sys.executable, "-c", _PERMISSION_PROBE, str(root)], capture_output=True,
                               text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        assert result["available"] is False
        assert "permission denied" in result["why"] and str(files["package"]) in result["why"]
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


# ------------------------------------------------------------------------------------------ arithmetic
def sample_times(seed: int, t_first: float, t_last: float, n: int) -> list[float]:
    rng = random.Random(seed)
    inner = sorted(rng.uniform(t_first, t_last) for _ in range(n - 2))
    return [t_first, *inner, t_last]


def test_constant_trace_integrates_to_power_times_window():
    power_w = 137.25
    times = sample_times(1, 10.0, 20.0, 40)
    t0, t1 = 11.3, 18.9
    assert ea.window_integral(times, [power_w] * len(times), t0, t1) == pytest.approx(power_w * (t1 - t0), rel=1e-12)
    assert ea.window_mean(times, [power_w] * len(times), t0, t1) == pytest.approx(power_w, rel=1e-12)


def test_step_trace_ramps_between_the_samples_around_the_step():
    low_w, high_w, dt = 60.0, 240.0, 0.1
    times = [5.0 + k * dt for k in range(60)]
    t_step = 7.04  # between two samples: the trace rises linearly from the one before to the one after
    values = [low_w if t < t_step else high_w for t in times]
    t0, t1 = 5.23, 10.61  # edges in flat parts, away from the step
    k_before = max(i for i, t in enumerate(times) if t < t_step)
    t_before, t_after = times[k_before], times[k_before + 1]
    expected = (low_w * (t_before - t0) + 0.5 * (low_w + high_w) * (t_after - t_before) + high_w * (t1 - t_after))
    assert ea.window_integral(times, values, t0, t1) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(offset_w=st.floats(0, 500), slope_w_per_s=st.floats(-50, 50), seed=st.integers(0, 10**6),
       n=st.integers(2, 30), edge_a=st.floats(0, 1), edge_b=st.floats(0, 1))
def test_ramp_trace_is_integrated_exactly_with_interpolated_edges(offset_w, slope_w_per_s, seed, n, edge_a, edge_b):
    def power(t):
        return offset_w + slope_w_per_s * t

    times = sample_times(seed, 0.0, 8.0, n)
    t0, t1 = sorted((8.0 * edge_a, 8.0 * edge_b))
    values = [power(t) for t in times]
    expected = offset_w * (t1 - t0) + 0.5 * slope_w_per_s * (t1 * t1 - t0 * t0)
    assert ea.window_integral(times, values, t0, t1) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    trimmed_t, trimmed_v = ea.trim_trace(times, values, t0, t1)
    assert trimmed_t[0] == t0 and trimmed_t[-1] == t1
    assert trimmed_v[0] == pytest.approx(power(t0), abs=1e-9)
    assert trimmed_v[-1] == pytest.approx(power(t1), abs=1e-9)
    assert all(t0 <= t <= t1 for t in trimmed_t)


def test_trim_refuses_to_extrapolate():
    with pytest.raises(ValueError, match="bracket"):
        ea.trim_trace([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.5, 2.5)
    with pytest.raises(ValueError, match="bracket"):
        ea.trim_trace([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 1.5, 3.5)


def test_wrapped_delta_and_relative_difference():
    wrap = 262_143_328_850
    start, end = wrap - 1234, 5678
    assert ea.wrapped_delta(start, end, wrap) == (wrap - start) + end
    assert ea.wrapped_delta(100, 250, wrap) == 150
    assert ea.relative_difference(110.0, 100.0) == pytest.approx((110.0 - 100.0) / 100.0)
    assert ea.relative_difference(None, 100.0) is None and ea.relative_difference(1.0, 0.0) is None


def test_derived_fields_follow_from_energy_window_items_and_idle():
    energy_j, window_s, items, idle_w = 812.5, 6.25, 4000, 41.0
    row = ea.derived_energy_fields(energy_j, window_s, items, idle_w)
    assert row["energy_j"] == energy_j and row["energy_window_s"] == window_s
    assert row["power_avg_w"] == pytest.approx(energy_j / window_s)
    assert row["energy_net_j"] == pytest.approx(energy_j - idle_w * window_s)
    assert row["energy_per_item_j"] == pytest.approx(energy_j / items)
    assert row["items_per_j"] == pytest.approx(items / energy_j)
    no_idle = ea.derived_energy_fields(energy_j, window_s, items, None)
    assert no_idle["energy_net_j"] is None and no_idle["energy_j"] == energy_j  # gross always, net only with idle
    nothing = ea.derived_energy_fields(None, None, items, idle_w)
    assert all(nothing[k] is None for k in nothing)


def test_clock_event_names():
    assert clock_event_names(0) == []
    assert clock_event_names(0x4 | 0x1) == ["GpuIdle", "SwPowerCap"]
    assert clock_event_names(0x1000) == ["bit0x1000"]


# ----------------------------------------------------------------------------- scripted GPU reader
class ScriptedGpu:
    """Implements the GpuReader interface on a power function of perf_counter time; its energy counter is the
    exact integral of that function, so what the monitor derives can be checked against analytic values."""

    name = "scripted-gpu"
    uuid = None

    def __init__(self, offset_w: float, slope_w_per_s: float, counter: bool = True, power_field: str = "instant"):
        self.origin = time.perf_counter()
        self.offset_w, self.slope_w_per_s = offset_w, slope_w_per_s
        self.counter_why = "" if counter else "energy counter not readable (scripted: pre-Volta)"
        self.power_field, self.power_why = power_field, ""
        self.counter_log: list[tuple[float, int]] = []
        self.samples_returned: list[dict] = []
        self.closed = False

    def power_w(self, t: float) -> float:
        return self.offset_w + self.slope_w_per_s * (t - self.origin)

    def energy_j_until(self, t: float) -> float:
        dt = t - self.origin
        return self.offset_w * dt + 0.5 * self.slope_w_per_s * dt * dt

    def energy_mj(self):
        if self.counter_why:
            return None
        t = time.perf_counter()
        mj = int(self.energy_j_until(t) * 1000)
        self.counter_log.append((t, mj))
        return mj

    def sample(self) -> dict:
        n = len(self.samples_returned)
        s = {"power_w": self.power_w(time.perf_counter()), "gpu_util_pct": 73.0, "mem_used_mb": 2048.0 + n,
             "proc_mem_mb": 500.0 + 3 * n, "temp_c": 55.0, "sm_clock_mhz": 1980.0, "mem_clock_mhz": 2619.0,
             "clock_event_bits": 0x4 if n == 0 else 0x1}
        self.samples_returned.append(s)
        return dict(s)

    def problems(self) -> list[str]:
        return []

    def run_info(self) -> dict:
        return {"name": self.name}

    def close(self) -> None:
        self.closed = True


def timed_cell(monitor, seconds: float, items: int, **stop_kw):
    monitor.start()
    t0 = time.perf_counter()
    time.sleep(seconds)
    t1 = time.perf_counter()
    return monitor.stop(t0, t1, items, **stop_kw), t0, t1


def test_counter_window_and_derived_fields_on_scripted_gpu():
    gpu = ScriptedGpu(offset_w=180.0, slope_w_per_s=120.0)
    cuda = DeviceInfo("cuda", gpu.name, 0)
    with open_monitor(cuda, FAST_MS, gpu_reader=gpu) as mon:
        # a rising ramp never settles: with no time to wait, the baseline is the last 0.3 s, marked unsettled
        idle_w = mon.measure_idle(0.3, max_wait_s=0)
        # the scripted power is a ramp, so the trapezoid over the last window is its exact mean
        t_last = mon._sampler.samples[-1]["t"]
        assert idle_w == pytest.approx(gpu.power_w(t_last - 0.15), rel=1e-3)
        assert mon.idle_info.settled is False and "did not settle within 0.6 s" in mon.idle_info.why

        gpu.counter_log.clear()
        gpu.samples_returned.clear()
        items = 3000
        cell, t0, t1 = timed_cell(mon, 0.6, items, allocator_peak_mb=321.5)
    row = cell.columns()
    assert gpu.closed
    (tc0, mj0), (tc1, mj1) = gpu.counter_log
    assert row["energy_source"] == "nvml-energy-counter"
    assert row["energy_j"] == pytest.approx((mj1 - mj0) / 1000.0, rel=1e-12)
    assert row["energy_window_s"] == pytest.approx(tc1 - tc0, abs=2e-3)
    assert tc0 <= t0 and tc1 >= t1  # the counter window holds the timed region
    assert row["power_avg_w"] == pytest.approx(row["energy_j"] / row["energy_window_s"])
    assert row["power_idle_w"] == idle_w
    assert row["energy_net_j"] == pytest.approx(row["energy_j"] - idle_w * row["energy_window_s"])
    assert row["energy_net_note"].startswith("idle baseline unsettled")
    assert row["energy_per_item_j"] == pytest.approx(row["energy_j"] / items)
    assert row["items_per_j"] == pytest.approx(items / row["energy_j"])
    # a ramp sampled anywhere integrates exactly: trace and counter agree up to timestamp jitter
    assert row["energy_trace_vs_counter_rel"] is not None and abs(row["energy_trace_vs_counter_rel"]) < 0.01
    assert row["power_peak_w"] == pytest.approx(gpu.power_w(t1), rel=0.01)  # rising ramp: highest at t1
    assert row["power_field"] == "instant"
    assert set(row["throttle_reasons"].split(",")) == {"SwPowerCap", "GpuIdle"}  # OR over the cell
    # memory from the timed window only: the closing sample after t1 reads more (memory grows per sample here)
    inside = [s["proc_mem_mb"] for s in mon._sampler.samples if t0 <= s["t"] <= t1]
    assert row["device_mem_peak_mb"] == max(inside) < max(s["proc_mem_mb"] for s in gpu.samples_returned)
    assert row["device_mem_allocator_peak_mb"] == 321.5
    assert row["gpu_util_avg_pct"] == pytest.approx(73.0)
    assert row["host_rss_peak_mb"] > 0 and row["cpu_util_avg_pct"] is not None

    trace = cell.trace
    assert SPEC_TRACE_COLUMNS <= set(trace[0]) and set(trace[0]) == set(TRACE_COLUMNS)
    assert trace[0]["time_s"] == 0.0 and trace[-1]["time_s"] == pytest.approx(t1 - t0)
    assert [r["time_s"] for r in trace] == sorted(r["time_s"] for r in trace)
    assert trace[0]["power_w"] == pytest.approx(gpu.power_w(t0), rel=0.01)
    assert trace[-1]["power_w"] == pytest.approx(gpu.power_w(t1), rel=0.01)
    assert len(trace) >= 4  # 0.6 s at 50 ms: samples inside the window besides the two edges


def test_power_samples_fallback_integrates_the_timed_region():
    gpu = ScriptedGpu(offset_w=90.0, slope_w_per_s=-40.0, counter=False, power_field="average-1s")
    with open_monitor(DeviceInfo("cuda", gpu.name, 0), FAST_MS, gpu_reader=gpu) as mon:
        assert mon.energy_pass_needed(0.6, 5.0) and not mon.energy_pass_needed(5.0, 5.0)
        cell, t0, t1 = timed_cell(mon, 0.6, 100)
    row = cell.columns()
    assert row["energy_source"] == "nvml-power-samples"
    assert row["energy_window_s"] == t1 - t0
    expected_j = gpu.energy_j_until(t1) - gpu.energy_j_until(t0)
    assert row["energy_j"] == pytest.approx(expected_j, rel=1e-2)
    assert row["energy_trace_vs_counter_rel"] is None  # nothing to compare with
    assert row["power_field"] == "average-1s"
    assert row["power_peak_w"] == pytest.approx(gpu.power_w(t0), rel=1e-2)  # falling ramp: highest at t0
    assert row["energy_net_j"] is None and row["power_idle_w"] is None  # no idle baseline measured


def test_rapl_is_the_source_on_a_cpu_run(tmp_path):
    max_range = 10**12
    pkg0, dram0 = 5_000_000, 7_000_000
    files = make_rapl_tree(tmp_path, pkg0, dram0, max_range)
    with open_monitor(CPU, FAST_MS, rapl_root=str(tmp_path)) as mon:
        assert "whole socket" in " ".join(mon.run_info().notes)
        mon.start()
        t0 = time.perf_counter()
        time.sleep(0.15)
        pkg1, dram1 = pkg0 + 4_250_000, dram0 + 750_000
        write_atomic(files["package"], str(pkg1))
        write_atomic(files["dram"], str(dram1))
        time.sleep(0.15)
        t1 = time.perf_counter()
        row = mon.stop(t0, t1, 10).columns()
    assert row["energy_source"] == "rapl"
    assert row["energy_j"] == pytest.approx(((pkg1 - pkg0) + (dram1 - dram0)) / 1e6, rel=1e-12)
    assert row["energy_window_s"] >= t1 - t0
    assert row["power_avg_w"] == pytest.approx(row["energy_j"] / row["energy_window_s"])
    assert row["power_peak_w"] is not None and row["power_peak_w"] >= row["power_avg_w"]


# ------------------------------------------------------------------------------ sampler and threads
def test_sampler_start_stop_and_rate():
    calls = []
    sampler = Sampler(lambda: {"n": len(calls.append(1) or calls)}, FAST_MS)
    sampler.start()
    assert len(telemetry_threads()) == 1 and len(sampler.samples) == 1  # first sample taken on start()
    with pytest.raises(RuntimeError):
        sampler.start()
    t_begin = time.perf_counter()
    time.sleep(0.5)
    samples = sampler.stop()
    elapsed = time.perf_counter() - t_begin
    assert telemetry_threads() == []
    assert sampler.stop() is samples  # idempotent
    times = [s["t"] for s in samples]
    assert times == sorted(times)
    # a fixed schedule never fires more often than its interval (plus the start and stop samples)
    assert 4 <= len(samples) <= elapsed / (FAST_MS / 1000) + 3


def test_sampler_keeps_going_and_reports_when_reads_fail():
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] % 2 == 0:
            raise OSError("sensor went away")
        return {}

    sampler = Sampler(flaky, FAST_MS)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert sampler.error_count >= 1 and "sensor went away" in sampler.errors[0]
    assert len(sampler.samples) >= 2  # the good reads kept coming


def test_interval_floor():
    with pytest.raises(ValueError, match="floor"):
        Sampler(dict, 49.0)
    with pytest.raises(ValueError, match="floor"):
        open_monitor(CPU, 10.0)


def test_no_threads_leak_over_many_cells(tmp_path):
    before = set(threading.enumerate())
    mon = open_monitor(CPU, FAST_MS, rapl_root=str(tmp_path / "none"))
    for _ in range(40):
        mon.start()
        t0 = time.perf_counter()
        t1 = time.perf_counter()
        mon.stop(t0, t1, 1)
    with pytest.raises(RuntimeError):
        mon.stop(0.0, 1.0, 1)
    mon.start()
    with pytest.raises(RuntimeError):
        mon.start()
    mon.close()  # closing mid-cell stops the thread too
    mon.close()
    assert telemetry_threads() == []
    assert set(threading.enumerate()) <= before


# ------------------------------------------------------------------------------------ nothing to read
def test_unavailable_energy_is_none_with_the_reason(tmp_path):
    missing = tmp_path / "powercap"
    with open_monitor(CPU, FAST_MS, rapl_root=str(missing)) as mon:
        assert mon.measure_idle(0.1) is None
        assert not mon.energy_pass_needed(0.01, 5.0)  # no pass can help: there is nothing to read
        cell, t0, t1 = timed_cell(mon, 0.2, 50)
        info = mon.run_info()
    row = cell.columns()
    source = row["energy_source"]
    assert source.startswith("unavailable: ") and "RAPL" in source and f"{missing} missing" in source
    from infermeter.device import nvml_gpus
    names, why = nvml_gpus()
    if not names:
        assert why in source  # the GPU side says why too
    for key in ("energy_j", "energy_net_j", "energy_per_item_j", "items_per_j", "power_avg_w", "power_peak_w",
                "power_idle_w", "energy_window_s", "energy_trace_vs_counter_rel", "power_field", "throttle_reasons",
                "device_mem_peak_mb", "gpu_util_avg_pct"):
        assert row[key] is None, key
    assert row["host_rss_peak_mb"] > 0 and 0 <= row["cpu_util_avg_pct"] <= 100  # the host is always read
    assert all(r["power_w"] is None and r["rss_mb"] > 0 for r in cell.trace)
    assert info.rapl["available"] is False and "missing" in info.rapl["why"]
    assert info.gpu["available"] is False and info.gpu["why"]


def test_cpu_utilisation_stays_within_0_and_100_on_rounding():
    from infermeter.telemetry.host import cpu_util_pct

    # float sums of per-state counters: busy may move by -1e-10 when the machine was idle
    before = {"cpu_busy_s": 0.1 + 0.2, "cpu_total_s": 10.0}
    after = {"cpu_busy_s": 0.3, "cpu_total_s": 12.0}
    assert after["cpu_busy_s"] - before["cpu_busy_s"] < 0  # the rounding this guards against
    assert cpu_util_pct(before, after) == 0.0
    assert cpu_util_pct(before, {"cpu_busy_s": 0.3 + 2.5, "cpu_total_s": 12.0}) == 100.0  # states read apart
    assert cpu_util_pct(before, before) is None  # no time passed: nothing to say

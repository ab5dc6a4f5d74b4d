"""The real NVML reader on a real GPU: the energy counter only increases, ticks often, and agrees with
the integrated power trace under load. Skipped where NVML sees no GPU."""

from __future__ import annotations

import os
import time

import pytest

from infermeter.device import DeviceInfo, nvml_gpus
from infermeter.telemetry import open_monitor
from infermeter.telemetry.nvml import open_nvml

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_device() -> DeviceInfo:
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # torch's cuda:0 is then NVML's index 0
    names, _ = nvml_gpus()  # the gpu marker skipped this module where there is none (conftest.py)
    return DeviceInfo("cuda", names[0], 0)


@pytest.fixture
def reader(gpu_device):
    r, why = open_nvml(gpu_device.gpu_id, None, os.getpid())
    assert r is not None, why
    yield r
    r.close()


def test_counter_only_increases_and_ticks_within_about_100_ms(reader):
    if reader.counter_why:
        pytest.skip(reader.counter_why)
    changes, readings = [], []
    last = reader.energy_mj()
    t_end = time.perf_counter() + 2.0
    while time.perf_counter() < t_end:
        value = reader.energy_mj()
        readings.append(value)
        if value != last:
            changes.append(time.perf_counter())
        last = value
        time.sleep(0.002)
    assert all(b >= a for a, b in zip(readings, readings[1:])), "energy counter went backwards"
    assert len(changes) >= 3, f"counter changed only {len(changes)} times in 2 s"
    gaps = sorted(b - a for a, b in zip(changes, changes[1:]))
    median_gap_s = gaps[len(gaps) // 2]
    assert median_gap_s <= 0.15, f"counter ticks every {median_gap_s * 1000:.0f} ms"


def test_sample_reads_the_board(reader):
    s = reader.sample()
    assert reader.power_field in ("instant", "average-1s")
    assert s["power_w"] is not None and s["power_w"] > 0
    assert s["mem_used_mb"] is not None and s["mem_used_mb"] > 0
    assert s["sm_clock_mhz"] is not None and s["sm_clock_mhz"] > 0
    info = reader.run_info()
    assert info["name"] and info["driver"] and "other_processes" in info


def test_counter_agrees_with_trace_under_load(gpu_device):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: no way to load the GPU")
    a = torch.randn(4096, 4096, device="cuda")
    b = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    with open_monitor(gpu_device, 100.0) as mon:
        if mon.energy_source != "nvml-energy-counter":
            pytest.skip(f"energy source is {mon.energy_source}")
        idle_w = mon.measure_idle(1.0)
        mon.start()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        items = 0
        while time.perf_counter() - t0 < 6.0:
            for _ in range(20):
                a = (a @ b) * 1e-3  # keeps values finite while the GPU stays busy
            torch.cuda.synchronize()
            items += 20
        t1 = time.perf_counter()
        cell = mon.stop(t0, t1, items, allocator_peak_mb=torch.cuda.max_memory_allocated() / 2**20)
    row = cell.columns()
    assert row["energy_window_s"] >= 5.0
    assert row["energy_j"] > 0 and row["power_avg_w"] > idle_w
    # instant power should track the counter closely; a 1 s average lags the load's start and end
    tolerance = 0.05 if row["power_field"] == "instant" else 0.15
    assert abs(row["energy_trace_vs_counter_rel"]) < tolerance, row
    assert row["gpu_util_avg_pct"] > 50
    assert row["power_peak_w"] >= row["power_avg_w"] * 0.95
    assert row["device_mem_allocator_peak_mb"] > 0
    assert row["energy_net_j"] == pytest.approx(row["energy_j"] - idle_w * row["energy_window_s"])
    assert len(cell.trace) >= 50


def test_counter_period_probe_and_settled_idle_on_the_board(gpu_device):
    with open_monitor(gpu_device, 100.0) as mon:
        if mon.energy_source != "nvml-energy-counter":
            pytest.skip(f"energy source is {mon.energy_source}")
        period = mon.measure_counter_period()
        assert period is not None and 0.0005 < period <= 0.15, mon.counter_info
        assert mon.energy_window_needed_s(2.0) == pytest.approx(max(2.0, period / 0.01))
        idle_w = mon.measure_idle(1.0, max_wait_s=30)
        info = mon.run_info().idle
    assert idle_w > 0 and info.power_idle_w == idle_w
    if info.settled:  # the rule held: the last second within 2% of the one before
        assert abs(idle_w - info.previous_window_w) <= 0.02 * info.previous_window_w

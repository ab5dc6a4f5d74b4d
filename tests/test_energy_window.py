"""The energy window is the timed region: warm-up draws energy on a scripted NVML counter, and the row's
energy must hold exactly the measured requests' energy, for every scenario (LoadGen's repeated runs too)."""

from __future__ import annotations

import threading
import time

import pytest

from infermeter.device import DeviceInfo
from infermeter.measure import run_metered
from infermeter.scenarios import Budget, Load
from infermeter.telemetry import open_monitor

MJ_PER_CALL = 7_000  # each inference draws 7 J on the scripted board, nothing between calls
FAST_MS = 50.0


class CallEnergyGpu:
    """A GpuReader whose energy counter (mJ) grows by MJ_PER_CALL at every inference the client runs,
    warm-up calls included: a window holding warm-up reads more than requests x MJ_PER_CALL."""

    name = "scripted-call-energy"
    uuid = None
    counter_why = ""
    power_field, power_why = "instant", ""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def client(self, _batch) -> None:
        time.sleep(0.002)
        with self.lock:
            self.calls += 1

    def energy_mj(self) -> int:
        with self.lock:
            return self.calls * MJ_PER_CALL

    def sample(self) -> dict:
        return {"power_w": 100.0}

    def problems(self) -> list[str]:
        return []

    def run_info(self) -> dict:
        return {"name": self.name}

    def close(self) -> None:
        pass


def metered(scenario: str, budget: Budget, streams: int = 1, batch: int = 4, **kw):
    gpu = CallEnergyGpu()
    load = Load([gpu.client] * streams, lambda i: i, batch)
    with open_monitor(DeviceInfo("cuda", gpu.name, 0), FAST_MS, gpu_reader=gpu) as mon:
        res, tel = run_metered(mon, scenario, load, budget, **kw)
        assert not mon.window_open
    return gpu, res, tel


@pytest.mark.parametrize("scenario,streams,kw", [
    ("single-stream", 1, {}),
    ("offline", 1, {}),
    ("offline", 2, {}),  # several requests in flight (threads)
    ("multi-stream", 3, {}),
    ("server", 2, {"target_qps": 200.0}),
])
def test_energy_covers_only_the_measured_requests(scenario, streams, kw):
    gpu, res, tel = metered(scenario, Budget(warmup=25, time_s=0.3), streams=streams, **kw)
    warmup_calls = res.warmup.requests
    assert warmup_calls >= 25 and gpu.calls == warmup_calls + res.requests
    row = tel.columns()
    assert row["energy_source"] == "nvml-energy-counter"
    assert row["energy_j"] == pytest.approx(res.requests * MJ_PER_CALL / 1000.0)
    assert row["energy_per_item_j"] == pytest.approx(MJ_PER_CALL / 1000.0 / res.items * res.requests)


def test_loadgen_repeated_runs_report_the_last_runs_items_and_energy():
    pytest.importorskip("mlperf_loadgen")
    # an unreachable CI target: LoadGen runs twice (2 s, then what is left of max_time_s), the last is reported
    gpu, res, tel = metered("single-stream", Budget(warmup=10, target_ci=1e-6, max_time_s=2.8), batch=2,
                            use_loadgen=True)
    assert res.loadgen.runs == 2
    assert gpu.calls > res.warmup.requests + res.requests  # the first run's calls happened
    assert tel.energy.energy_j == pytest.approx(res.requests * MJ_PER_CALL / 1000.0)
    assert tel.energy.energy_per_item_j == pytest.approx(MJ_PER_CALL / 1000.0 / 2)


def test_a_failing_scenario_closes_the_window():
    gpu = CallEnergyGpu()

    def fails(_):
        gpu.client(None)
        if gpu.calls > 12:
            raise RuntimeError("device lost")

    with open_monitor(DeviceInfo("cuda", gpu.name, 0), FAST_MS, gpu_reader=gpu) as mon:
        with pytest.raises(RuntimeError, match="device lost"):
            run_metered(mon, "single-stream", Load([fails], lambda i: i, 1), Budget(warmup=10, iterations=50))
        assert not mon.window_open
        res, tel = run_metered(mon, "single-stream", Load([gpu.client], lambda i: i, 1),
                               Budget(warmup=0, iterations=5))  # the monitor serves the next cell
    assert tel.energy.energy_j == pytest.approx(5 * MJ_PER_CALL / 1000.0)


def test_a_separate_energy_pass_gives_the_row_its_energy_and_nothing_else():
    """measure.telemetry_columns: energy (and its notes) from the longer pass, memory and utilisation from the
    timed window, as CellMeasurer writes them when the timed window is too short for the counter."""
    from infermeter.measure import telemetry_columns

    gpu = CallEnergyGpu()
    load = Load([gpu.client], lambda i: i, 1)
    with open_monitor(DeviceInfo("cuda", gpu.name, 0), FAST_MS, gpu_reader=gpu) as mon:
        _, timed = run_metered(mon, "single-stream", load, Budget(warmup=0, iterations=5),
                               allocator_peak=lambda: 11.0)
        _, longer = run_metered(mon, "single-stream", load, Budget(warmup=0, iterations=20))
    row = telemetry_columns(timed, longer)
    assert row == {**timed.columns(), **longer.energy.columns(), "telemetry_notes": longer.notes}
    assert row["energy_j"] == pytest.approx(20 * MJ_PER_CALL / 1000.0) != timed.energy.energy_j
    assert row["device_mem_allocator_peak_mb"] == 11.0 and longer.memory.device_mem_allocator_peak_mb is None
    assert telemetry_columns(timed, timed) == timed.columns()  # no pass: the timed window's records alone

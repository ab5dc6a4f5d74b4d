"""The rules that make GPU energy defensible, on a scripted board (a GpuReader whose power and energy counter
follow a script): the idle baseline waits until power stops falling, the energy window is sized from the
counter's measured update period, a net energy below zero becomes a reason, and each GPU row says whether
it was host- or device-bound."""

from __future__ import annotations

import math
import threading
import time

import pytest

from infermeter.device import DeviceInfo
from infermeter.measure import run_metered
from infermeter.scenarios import Budget, Load
from infermeter.telemetry import energy as ea
from infermeter.telemetry import open_monitor
from infermeter.telemetry.monitor import (
    BOUND_GPU_UTIL_PCT,
    BOUND_RULE,
    BOUND_THREAD_PCT,
    COUNTER_MAX_ERROR,
    IDLE_SETTLE_TOLERANCE,
    bound_of,
)

FAST_MS = 50.0


class ScriptedBoard:
    """Power is power_fn(seconds since creation); the energy counter (mJ) integrates it exactly and, like
    NVML's, only moves every step_s (0: continuously)."""

    name, uuid = "scripted-board", "GPU-00000000-0000-0000-0000-000000000000"
    counter_why, power_field, power_why = "", "instant", ""

    def __init__(self, power_fn, step_s: float = 0.0, util_pct: float = 90.0) -> None:
        self.origin = time.perf_counter()
        self.power_fn, self.step_s, self.util_pct = power_fn, step_s, util_pct
        self._lock = threading.Lock()
        self._energy_j, self._t_last = 0.0, 0.0
        self._tick, self._tick_mj = None, 0

    def _advance(self) -> float:
        """Energy (J) up to now: the trapezoid over fine steps of the power function."""
        with self._lock:
            now = time.perf_counter() - self.origin
            n = max(1, int((now - self._t_last) / 0.001))
            dt = (now - self._t_last) / n
            for k in range(n):
                a = self._t_last + k * dt
                self._energy_j += 0.5 * (self.power_fn(a) + self.power_fn(a + dt)) * dt
            self._t_last = now
            return now

    def energy_mj(self) -> int:
        now = self._advance()
        if not self.step_s:
            return int(self._energy_j * 1000)
        # the counter shows the energy at the last update tick (the integral up to it), fixed until the next
        tick = math.floor(now / self.step_s)
        if tick != self._tick:
            self._tick = tick
            self._tick_mj = int((self._energy_j - self.power_fn(now) * (now - tick * self.step_s)) * 1000)
        return self._tick_mj

    def sample(self) -> dict:
        t = time.perf_counter() - self.origin
        return {"power_w": self.power_fn(t), "gpu_util_pct": self.util_pct, "proc_mem_mb": 100.0}

    def problems(self) -> list[str]:
        return []

    def run_info(self) -> dict:
        return {"name": self.name, "uuid": self.uuid}

    def close(self) -> None:
        pass


def board_monitor(board: ScriptedBoard):
    return open_monitor(DeviceInfo("cuda", board.name, 0, board.uuid), FAST_MS, gpu_reader=board)


# ------------------------------------------------------------------------------------------- idle
IDLE_W, LOAD_EXTRA_W, COOL_TAU_S = 120.0, 90.0, 0.25


def cooling(t: float) -> float:
    """A board that has just finished work: power falls exponentially back to its idle draw."""
    return IDLE_W + LOAD_EXTRA_W * math.exp(-t / COOL_TAU_S)


def test_idle_waits_until_power_stops_falling():
    window = 0.3
    board = ScriptedBoard(cooling)
    with board_monitor(board) as mon:
        idle_w = mon.measure_idle(window, max_wait_s=20)
        info = mon.run_info().idle
        samples = list(mon._sampler.samples)
    times = [s["t"] for s in samples]
    power = [s["power_w"] for s in samples]
    assert info.settled is True and info.power_idle_w == idle_w
    assert "within 2% of the mean" in info.rule and info.window_s == window
    # the rule holds at the end: the last window's mean within 2% of the one before
    assert abs(info.power_idle_w - info.previous_window_w) <= IDLE_SETTLE_TOLERANCE * info.previous_window_w
    ok, last, prev = ea.settled_idle(times, power, window, IDLE_SETTLE_TOLERANCE)
    assert ok and last == pytest.approx(idle_w)
    # ... and did not hold when the first two windows were in: the baseline waited for the board to cool
    first = [i for i, t in enumerate(times) if t - times[0] <= 2 * window + 1e-9]
    assert not ea.settled_idle([times[i] for i in first], [power[i] for i in first], window, IDLE_SETTLE_TOLERANCE)[0]
    assert info.waited_s > 2 * window
    naive_w = ea.window_mean(times, power, times[0], times[0] + window)  # the old rule: the first window
    expected_w = ea.window_mean(times, power, times[-1] - window, times[-1])
    assert idle_w == pytest.approx(expected_w, rel=1e-9) and idle_w < naive_w
    assert abs(idle_w - IDLE_W) < abs(naive_w - IDLE_W) / 4  # far closer to the cold board's draw


def test_flat_power_settles_after_two_windows():
    window = 0.2
    board = ScriptedBoard(lambda t: IDLE_W)
    with board_monitor(board) as mon:
        idle_w = mon.measure_idle(window)
        info = mon.idle_info
    assert info.settled and idle_w == pytest.approx(IDLE_W)
    assert 2 * window <= info.waited_s < 2 * window + 4 * FAST_MS / 1000


def test_idle_that_never_settles_is_marked_and_reaches_the_rows():
    board = ScriptedBoard(lambda t: 300.0 - 100.0 * t)  # falling 100 W/s: never within 2%
    with board_monitor(board) as mon:
        mon.measure_idle(0.2, max_wait_s=0.5)
        info = mon.idle_info
        mon.start()
        t0 = time.perf_counter()
        time.sleep(0.2)
        row = mon.stop(t0, time.perf_counter(), 10).columns()
    assert info.settled is False and "did not settle within 0.5 s" in info.why
    assert row["power_idle_w"] == info.power_idle_w
    assert row["energy_net_j"] is None or row["energy_net_note"].startswith("idle baseline unsettled")


def test_rapl_idle_takes_one_window(tmp_path):
    """A CPU package follows its load within milliseconds: no settling wait, and the rule says so."""
    from test_telemetry import make_rapl_tree, write_atomic

    files = make_rapl_tree(tmp_path, 1_000_000, 0, 10**12)
    with open_monitor(DeviceInfo("cpu", "test-cpu"), FAST_MS, rapl_root=str(tmp_path)) as mon:
        assert mon.energy_source == "rapl"
        t0 = time.perf_counter()
        mon.measure_idle(0.3, max_wait_s=30)
        assert time.perf_counter() - t0 < 3
        info = mon.idle_info
        mon.start()
        t1 = time.perf_counter()
        write_atomic(files["package"], str(1_000_000 + 2_000_000))  # 2 J in the cell
        time.sleep(0.2)
        row = mon.stop(t1, time.perf_counter(), 1).columns()
    assert "RAPL: one window" in info.rule and info.settled is None
    assert row["energy_source"] == "rapl" and row["energy_net_j"] is not None and row["energy_net_note"] is None


# --------------------------------------------------------------------------------------- net energy
def test_negative_net_energy_is_a_reason_not_a_number():
    level = {"w": 150.0}  # the baseline is taken while the board draws more than during the cell
    board = ScriptedBoard(lambda t: level["w"])
    with board_monitor(board) as mon:
        idle_w = mon.measure_idle(0.2)
        level["w"] = 100.0
        mon.start()
        t0 = time.perf_counter()
        time.sleep(0.4)
        row = mon.stop(t0, time.perf_counter(), 40).columns()
    assert idle_w == pytest.approx(150.0)
    assert row["energy_j"] == pytest.approx(100.0 * row["energy_window_s"], rel=0.02)  # gross stays
    assert row["energy_net_j"] is None
    assert "negative" in row["energy_net_note"] and "below the idle baseline" in row["energy_net_note"]
    # the same arithmetic as a pure function, and its positive side
    low = ea.derived_energy_fields(row["energy_j"], row["energy_window_s"], 40, idle_w)
    assert low["energy_net_j"] is None and "negative" in low["energy_net_note"]
    high = ea.derived_energy_fields(row["energy_j"], row["energy_window_s"], 40, idle_w / 2)
    assert high["energy_net_j"] == pytest.approx(row["energy_j"] - idle_w / 2 * row["energy_window_s"])
    assert high["energy_net_note"] is None


# ------------------------------------------------------------------------------------ counter period
STEP_S = 0.1


def test_counter_period_is_measured_and_a_2_s_window_is_extended():
    board = ScriptedBoard(lambda t: IDLE_W, step_s=STEP_S)
    with board_monitor(board) as mon:
        period = mon.measure_counter_period()
        info = mon.run_info().energy_counter
        needed = mon.energy_window_needed_s(2.0)
        assert mon.energy_pass_needed(2.0, 2.0)  # a 2 s window is too short for 100 ms steps at 1%
        assert not mon.energy_pass_needed(needed * 1.01, 2.0)
    assert period == pytest.approx(STEP_S, abs=0.01)
    assert info.update_period_ms == pytest.approx(period * 1e3) and info.changes_seen >= 3
    assert needed == pytest.approx(STEP_S / COUNTER_MAX_ERROR, rel=0.1) and needed > 2.0
    assert info.min_energy_window_s == needed


def test_a_continuous_counter_keeps_the_asked_window():
    board = ScriptedBoard(lambda t: IDLE_W)  # changes at every read: a period of about a millisecond
    with board_monitor(board) as mon:
        mon.measure_counter_period()
        assert mon.energy_window_needed_s(2.0) == 2.0 and not mon.energy_pass_needed(2.0, 2.0)


def test_a_counter_that_never_moves_says_why():
    class Frozen(ScriptedBoard):
        def energy_mj(self) -> int:
            return 5

    with board_monitor(Frozen(lambda t: IDLE_W)) as mon:
        assert mon.measure_counter_period(max_s=0.2) is None
        assert "too few" in mon.counter_info.why and mon.energy_window_needed_s(2.0) == 2.0


def test_a_counter_read_that_fails_costs_the_probe_only():
    class Failing(ScriptedBoard):
        def energy_mj(self) -> int:
            raise RuntimeError("NVML: GPU is lost")

    with board_monitor(Failing(lambda t: IDLE_W)) as mon:
        assert mon.measure_counter_period() is None
        assert "GPU is lost" in mon.counter_info.why and mon.energy_window_needed_s(2.0) == 2.0


@pytest.mark.slow
def test_the_extended_window_holds_the_counter_error_within_1_percent():
    board = ScriptedBoard(lambda t: IDLE_W, step_s=STEP_S)
    with board_monitor(board) as mon:
        mon.measure_counter_period()
        seconds = mon.energy_window_needed_s(2.0)
        _, tel = run_metered(mon, "single-stream", Load([lambda _: time.sleep(0.002)], lambda i: i, 1),
                             Budget(warmup=0, time_s=seconds, min_iterations=1))
    row = tel.columns()
    assert row["energy_window_s"] >= seconds * 0.99
    # constant power: the exact energy of the counter window is power x window; the counter's steps cost <= 1%
    exact_j = IDLE_W * row["energy_window_s"]
    assert abs(row["energy_j"] - exact_j) <= COUNTER_MAX_ERROR * exact_j


# -------------------------------------------------------------------------------------------- bound
def test_bound_rule():
    assert bound_of(None, 100.0) == "unknown"
    assert bound_of(BOUND_GPU_UTIL_PCT, 100.0) == "device"
    assert bound_of(BOUND_GPU_UTIL_PCT - 1, BOUND_THREAD_PCT) == "host"
    assert bound_of(BOUND_GPU_UTIL_PCT - 1, BOUND_THREAD_PCT - 1) == "unknown"
    assert bound_of(BOUND_GPU_UTIL_PCT - 1, None) == "unknown"


@pytest.mark.parametrize("util", [BOUND_GPU_UTIL_PCT / 2, BOUND_GPU_UTIL_PCT * 1.5])
def test_rows_carry_the_busiest_thread_and_bound(util):
    board = ScriptedBoard(lambda t: IDLE_W, util_pct=util)
    with board_monitor(board) as mon:
        mon.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.4:  # this thread spins: the host side of a launch-bound cell
            pass
        row = mon.stop(t0, time.perf_counter(), 1).columns()
    assert row["busiest_thread_cpu_pct"] is not None and row["busiest_thread_cpu_pct"] > 0
    assert row["gpu_util_avg_pct"] == pytest.approx(util)
    assert row["bound"] == bound_of(util, row["busiest_thread_cpu_pct"])
    if util >= BOUND_GPU_UTIL_PCT:
        assert row["bound"] == "device"


def test_cpu_rows_have_no_bound(tmp_path):
    with open_monitor(DeviceInfo("cpu", "test-cpu"), FAST_MS, rapl_root=str(tmp_path / "none")) as mon:
        mon.start()
        t0 = time.perf_counter()
        row = mon.stop(t0, time.perf_counter(), 1).columns()
    assert row["bound"] is None and mon.run_info().bound_rule == BOUND_RULE

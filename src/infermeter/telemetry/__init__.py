"""Telemetry that runs beside every measured cell, inside the worker process.

Contract (used by worker.py):

    mon = open_monitor(device: DeviceInfo, interval_ms: float, pid: int)
    mon.measure_counter_period()         # the GPU energy counter's update period: sets the shortest energy window
    mon.measure_idle(seconds, max_wait_s)  # context alive, model loaded; waits until power stops falling
    mon.start()                          # begins sampling (background thread) and reads counters
    ... sync; t0 = time.perf_counter(); run; sync; t1 = time.perf_counter() ...
    cell = mon.stop(t0, t1, items)       # CellTelemetry (records.py): .columns() its results.csv fields, .trace
    mon.energy_window_needed_s(energy_time_s) -> float  # --energy-time-s, or what the counter's steps need
    mon.energy_pass_needed(window_s, energy_time_s) -> bool
    mon.run_info() -> TelemetryFacts     # power limit, persistence/MIG mode, UUID, driver, other processes, RAPL domains
    mon.close()

Unavailable sources leave their fields None and say why in `energy_source` ("unavailable: <reason>").
"""

from infermeter.telemetry.monitor import CellTelemetry, open_monitor

__all__ = ["CellTelemetry", "open_monitor"]

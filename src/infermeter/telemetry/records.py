"""What the monitor returns, typed: per cell a CellTelemetry (its energy, memory and utilisation records,
each field a results.csv column or the power trace beside the row), and once per run TelemetryFacts
(run.json `telemetry` and `groups.*.telemetry`, written as asdict so its JSON keeps its keys)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from infermeter.records import column, columns_of


@dataclass(frozen=True)
class EnergyRecord:
    """Energy over the cell's energy window (its timed region, or the longer energy pass) and what it means."""

    # energy_* from energy.derived_energy_fields: gross energy, its window, and what follows from them
    energy_j: float | None = column()
    energy_window_s: float | None = column()
    power_avg_w: float | None = column()
    energy_net_j: float | None = column()  # None where it would be negative, energy_net_note says why
    energy_net_note: str | None = column()
    energy_per_item_j: float | None = column()
    items_per_j: float | None = column()
    power_peak_w: float | None = column()
    power_idle_w: float | None = column()  # the run's idle baseline (the monitor's, not this window's)
    energy_trace_vs_counter_rel: float | None = column()  # the integrated trace against the energy counter
    energy_trace_vs_counter_pct: float | None = column()
    power_field: str | None = column()  # which power reading the trace holds
    throttle_reasons: str | None = column()
    energy_source: str = column()  # nvml-energy-counter | nvml-power-samples | rapl | unavailable: <why>
    rapl_energy_j: float | None = column(default=None)  # the sockets beside a GPU run, never energy_j

    def columns(self) -> dict:
        return columns_of(self)


@dataclass(frozen=True)
class MemoryRecord:
    device_mem_peak_mb: float | None = column()  # this process on the GPU, over the timed window
    device_mem_allocator_peak_mb: float | None = column()  # the framework allocator's own peak
    host_rss_peak_mb: float | None = column()


@dataclass(frozen=True)
class UtilisationRecord:
    gpu_util_avg_pct: float | None = column()
    busiest_thread_cpu_pct: float | None = column()
    bound: str | None = column()  # host | device | unknown by monitor.BOUND_RULE; None on a CPU run
    cpu_util_avg_pct: float | None = column()
    proc_cpu_util_avg_pct: float | None = column()


@dataclass(frozen=True)
class CellTelemetry:
    """One cell's telemetry: Monitor.stop's result."""

    energy: EnergyRecord = column(part=True)
    memory: MemoryRecord = column(part=True)
    utilisation: UtilisationRecord = column(part=True)
    notes: str | None = column("telemetry_notes")  # failed sampler reads, NVML problems, counter fallbacks
    # monitor.TRACE_COLUMNS per sample, time_s relative to the window's start
    trace: list[dict] = column(file="power/<cell>.csv")

    def columns(self) -> dict:
        """Every results.csv column this cell's telemetry fills: the one place it becomes row fields."""
        return columns_of(self)


# ---- run-level: run.json ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdleFacts:
    """The idle baseline: the rule it was taken by and what it found (monitor.measure_idle)."""

    rule: str
    window_s: float
    power_idle_w: float | None
    settled: bool | None  # None: RAPL takes one window, there is nothing to settle
    tolerance: float | None = None  # GPU: the settled rule's parameters and what the wait saw
    max_wait_s: float | None = None
    previous_window_w: float | None = None
    waited_s: float | None = None
    why: str | None = None  # unsettled: what the baseline is instead


@dataclass(frozen=True)
class CounterFacts:
    """The GPU energy counter's measured update period and the shortest energy window it allows."""

    update_period_ms: float | None
    why: str | None = None  # no period: why (a failed read, too few changes); windows keep --energy-time-s
    changes_seen: int | None = None
    probe_s: float | None = None
    reads: int | None = None
    max_quantisation_error: float | None = None
    min_energy_window_s: float | None = None
    rule: str | None = None


@dataclass(frozen=True)
class TelemetryFacts:
    """Once per run (Monitor.run_info): the energy source, the baselines, and what the boards report.
    `gpu` and `rapl` stay mappings: their keys are what NVML and the powercap tree report."""

    energy_source: str
    interval_ms: float
    pid: int
    power_idle_w: float | None
    idle: IdleFacts | None  # None: no idle baseline taken (--idle-time-s 0, or no energy source)
    energy_counter: CounterFacts | None  # None: no GPU energy counter
    bound_rule: str
    gpu: dict  # available, and its settings and neighbours (nvml.GpuReader.run_info) or why not
    rapl: dict  # available, the domains read, or why not (rapl.RaplReader.info)
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

"""Every load scenario in one table: its name, what it takes (streams, a target rate), its default batch
sizes, and the function that runs it. The config, the cell grid, the measurement and the dispatch below
read this table; none of them names a scenario's properties itself.

Runners are named as "module:function" and imported when a scenario runs, so the config can read the
table without importing numpy or any scenario code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infermeter.errors import BadInput

if TYPE_CHECKING:  # types only: the registry imports no scenario code at import time
    from infermeter.scenarios.base import Budget, Load, ScenarioResult


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    #: one cell per --streams value, each driving that many concurrent clients
    takes_streams: bool
    #: one cell per --target-qps value (arrival rate); the latency bound is reported for it
    takes_qps: bool
    #: batch sizes when --batch-sizes is not given
    default_batch_sizes: tuple[int, ...]
    #: "module:function" with the signature (load, budget, *, latency_bound_ms, on_measure_start[, target_qps, seed])
    runner: str
    #: drives the engine's offline clients (several requests in flight where the engine wants them)
    engine_offline_clients: bool = False

    def run_fn(self) -> Callable[..., ScenarioResult]:
        module, fn = self.runner.split(":")
        return getattr(importlib.import_module(module), fn)


_CLOSED = "infermeter.scenarios.closed_loop"
SCENARIOS: dict[str, ScenarioSpec] = {s.name: s for s in (
    ScenarioSpec("offline", takes_streams=False, takes_qps=False, default_batch_sizes=(1, 8, 32),
                 runner=f"{_CLOSED}:run_offline", engine_offline_clients=True),
    ScenarioSpec("single-stream", takes_streams=False, takes_qps=False, default_batch_sizes=(1,),
                 runner=f"{_CLOSED}:run_single_stream"),
    ScenarioSpec("multi-stream", takes_streams=True, takes_qps=False, default_batch_sizes=(1,),
                 runner=f"{_CLOSED}:run_multi_stream"),
    ScenarioSpec("server", takes_streams=True, takes_qps=True, default_batch_sizes=(1,),
                 runner="infermeter.scenarios.server:run_server"),
)}
SCENARIO_NAMES = tuple(SCENARIOS)


def scenario_spec(name: str) -> ScenarioSpec:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise BadInput(f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)}") from None


def run_scenario(name: str, load: Load, budget: Budget, *, target_qps: float | None = None,
                 latency_bound_ms: float | None = None, seed: int = 0, use_loadgen: bool = False,
                 loadgen_outdir: str | None = None, on_measure_start: Callable[[], None] | None = None
                 ) -> ScenarioResult:
    """Warm up, then measure `load` under scenario `name` until `budget` says stop.

    on_measure_start: called after warm-up, right before the timed region starts (a meter's window opens
    there, so warm-up never counts). A run made of several timed runs (LoadGen chasing --target-ci) calls it
    before each, and the result is the last run's: the meter must restart its window on every call.

    latency_bound_ms: when given, latency_bound_met = p99 <= bound (and, for server, nothing dropped).
    use_loadgen: drive the run through mlcommons-loadgen instead (its verdict and summary land in `loadgen`);
    loadgen_outdir keeps LoadGen's log files there (default: a temporary folder, removed)."""
    spec = scenario_spec(name)
    if spec.takes_qps and (target_qps is None or not target_qps > 0):
        raise BadInput(f"the {name} scenario needs a positive target_qps, got {target_qps}")
    if latency_bound_ms is not None and not latency_bound_ms > 0:
        raise BadInput(f"latency bound must be positive, got {latency_bound_ms}")
    if use_loadgen:
        from infermeter.scenarios.loadgen_driver import run_with_loadgen

        return run_with_loadgen(name, load, budget, target_qps=target_qps, latency_bound_ms=latency_bound_ms,
                                seed=seed, outdir=loadgen_outdir, on_measure_start=on_measure_start,
                                concurrent=spec.takes_streams)
    rate = {"target_qps": target_qps, "seed": seed} if spec.takes_qps else {}
    return spec.run_fn()(load, budget, latency_bound_ms=latency_bound_ms, on_measure_start=on_measure_start, **rate)

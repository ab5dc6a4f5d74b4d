"""Load scenarios: each drives an engine's clients and returns raw timings. No engine code here.

Contract (used by worker.py):

    result = run_scenario(name, load, budget, target_qps=None, latency_bound_ms=None, seed=0)

- `name`: "offline" | "single-stream" | "multi-stream" | "server"
- `load`: Load(clients, inputs, batch_size) — `clients` are callables from Engine.make_clients(n)
  (one per concurrent client; offline/single-stream use clients[0]); `inputs(i)` returns the i-th
  staged batch (rotating through distinct inputs).
- `budget`: Budget — warm-up and stopping rule.
- returns ScenarioResult (see scenarios/base.py).
- the scenarios and what each takes: registry.py (SCENARIOS).

Importing this package imports nothing else (the config reads the registry without numpy); the names
below load on first use.
"""

_EXPORTS = {"Budget": "base", "Load": "base", "ScenarioResult": "base", "run_scenario": "registry",
            "SCENARIOS": "registry", "scenario_spec": "registry"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"infermeter.scenarios.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'infermeter.scenarios' has no attribute {name!r}")


__all__ = list(_EXPORTS)

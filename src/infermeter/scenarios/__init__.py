"""Load scenarios: each drives an engine's clients and returns raw timings. No engine code here.

Contract (used by worker.py):

    result = run_scenario(name, load, budget, target_qps=None, latency_bound_ms=None, seed=0)

- `name`: "offline" | "single-stream" | "multi-stream" | "server"
- `load`: Load(clients, inputs, batch_size) — `clients` are callables from Engine.make_clients(n)
  (one per concurrent client; offline/single-stream use clients[0]); `inputs(i)` returns the i-th
  staged batch (rotating through distinct inputs).
- `budget`: Budget — warm-up and stopping rule.
- returns ScenarioResult (see scenarios/base.py).
"""

from infermeter.scenarios.base import Budget, Load, ScenarioResult, run_scenario

__all__ = ["Budget", "Load", "ScenarioResult", "run_scenario"]

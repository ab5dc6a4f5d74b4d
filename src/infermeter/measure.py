"""The measurement protocol for one cell, written down once.

1. Inputs: a pool of distinct preprocessed samples, batched and staged before timing, rotated.
2. The cold first call at each batch size is its own figure (first_inference_ms), never part of the stats,
   timed wherever it happens: the correctness check runs in chunks of a cell's batch size and times its
   first call (worker._check), so a compile, autotune or algorithm search lands in that figure.
3. The scenario warms up, then measures until its stopping rule is met (scenarios/).
4. Telemetry brackets exactly the measured window: the scenario opens the monitor's window after its
   warm-up (run_metered), so items and energy come from the same window; a window shorter than
   --energy-time-s gets a separate energy pass, and the row says so.
5. Per-request latencies and the power trace are written atomically beside the row.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from infermeter.results.schema import CellIdentity
from infermeter.results.writer import atomic_write_csv
from infermeter.scenarios.registry import run_scenario, scenario_spec

POOL_MAX_ITEMS = 256


def run_metered(monitor, scenario: str, load, budget, allocator_peak=None, **scenario_kw):
    """Run a scenario with the monitor's window opened by the scenario itself, after warm-up and right
    before the timed region (restarted for every timed run where a scenario makes several), and closed
    when the scenario returns. Returns (ScenarioResult, CellTelemetry) of the same window."""
    try:
        res = run_scenario(scenario, load, budget, on_measure_start=lambda: monitor.start(restart=True),
                           **scenario_kw)
    except BaseException:
        monitor.discard()
        raise
    if not monitor.window_open:
        raise RuntimeError(f"scenario {scenario!r} never opened the meter's window")
    tel = monitor.stop(res.t_start, res.t_end, res.items,
                       allocator_peak_mb=allocator_peak() if allocator_peak is not None else None)
    return res, tel


def telemetry_columns(tel, energy_tel) -> dict:
    """The row's telemetry columns: every field of the timed window's records (CellTelemetry.columns()), with
    the energy record and notes of energy_tel, the window the energy comes from (the timed window itself,
    or the separate longer pass when the timed window is too short for the energy counter)."""
    return {**tel.columns(), **energy_tel.energy.columns(), "telemetry_notes": energy_tel.notes}


class CellMeasurer:
    def __init__(self, cfg, dev, model, engine, monitor, check, job, first_ms: dict[int, float] | None = None):
        self.cfg, self.dev, self.model, self.engine = cfg, dev, model, engine
        self.monitor, self.check, self.job = monitor, check, job  # job: protocol.WorkerJob
        self.out_dir = Path(job.out_dir)
        max_batch = max(c.batch_size for c in job.cells)
        self.pool = model.sample_pool(min(POOL_MAX_ITEMS, max(32, 4 * max_batch)))
        self.first_ms: dict[int, float] = dict(first_ms or {})  # cold calls made before (by the check)
        self.staged_cache: dict[int, list] = {}

    def first_call(self, bs: int) -> float:
        if bs not in self.first_ms:  # the cold call: compilation, allocation, autotuning
            staged = self.staged_batches(bs)
            t0 = time.perf_counter()
            self.engine.infer(staged[0])
            self.first_ms[bs] = (time.perf_counter() - t0) * 1e3
        return self.first_ms[bs]

    # ---- rows ---------------------------------------------------------------------------------
    def base_row(self, cell) -> dict:
        ident = CellIdentity.of(run_id=self.job.run_id, cell=cell, model=self.model, engine=self.job.engine,
                                precision=self.job.precision, dev=self.dev, device_label=self.job.device_label,
                                io=self.cfg.io, started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                shape_mode=self.engine.shape_mode)
        return ident.row(build_s=self.engine.build_s, load_s=self.engine.load_s, **self.check.row_fields())

    def failed_row(self, cell, error: str) -> dict:
        row = self.base_row(cell)
        row.update(status="failed", error=error)
        return row

    # ---- inputs -------------------------------------------------------------------------------
    def staged_batches(self, batch: int) -> list:
        if batch not in self.staged_cache:
            distinct = max(2, min(16, len(self.pool) // batch))
            self.staged_cache = {batch: [self.engine.stage(self.model.make_batch(self.pool, batch, i))
                                         for i in range(distinct)]}
        return self.staged_cache[batch]

    # ---- the cell -----------------------------------------------------------------------------
    def measure(self, cell) -> dict:
        from infermeter.scenarios import Budget, Load

        cfg = self.cfg
        bs, scenario = cell.batch_size, cell.scenario
        row = self.base_row(cell)
        staged = self.staged_batches(bs)

        # The session compiled for this cell's shape (static) or the one dynamic-batch session, then the
        # clients (which may compile for their hint, as OpenVINO's THROUGHPUT); both before any timing.
        self.engine.activate(bs)
        spec = scenario_spec(scenario)
        if spec.engine_offline_clients:
            clients = self.engine.offline_clients()
            row["streams"] = len(clients)  # requests in flight
        else:
            clients = self.engine.make_clients(cell.streams if spec.takes_streams else 1)
        row["compile_s"] = self.engine.active_compile_s  # the compile of the artifact this cell runs
        row["graph_nodes"] = (self.engine.info.get("graph_form") or {}).get("nodes")
        row["graph_source"] = self.engine.info.get("graph_source")
        row["graph_passes_failed"] = "; ".join(self.engine.info.get("passes_failed") or []) or None
        row["first_inference_ms"] = self.first_call(bs)
        load = Load(clients=clients, inputs=lambda i: staged[i % len(staged)], batch_size=bs)
        budget = Budget(warmup=cfg.warmup, warmup_time_s=cfg.warmup_time_s, iterations=cfg.iterations,
                        time_s=cfg.time_s, min_iterations=cfg.min_iterations, target_ci=cfg.target_ci,
                        max_time_s=cfg.max_time_s)

        self.engine.reset_allocator_peak()
        res, tel = run_metered(self.monitor, scenario, load, budget, allocator_peak=self.engine.allocator_peak_mb,
                               target_qps=cell.target_qps, latency_bound_ms=cfg.latency_bound_ms,
                               seed=cfg.seed, use_loadgen=cfg.loadgen,
                               loadgen_outdir=(self.out_dir / "loadgen" / cell.cell_id) if cfg.loadgen else None)
        energy_tel = tel
        # --energy-time-s, or longer where the counter's measured update period needs it (<= 1% error)
        energy_s = self.monitor.energy_window_needed_s(cfg.energy_time_s)
        if self.monitor.energy_pass_needed(res.duration_s, cfg.energy_time_s):
            energy_tel = self.energy_pass(load, energy_s)

        # every field of the result's records (timing, warm-up, stop and CI, server, LoadGen) is a column
        streams = row["streams"]
        row.update(res.columns())
        row["streams"] = streams  # the cell's (or the engine's requests in flight), as the identity says
        row["latency_bound_ms"] = cfg.latency_bound_ms if spec.takes_qps else None
        row.update(telemetry_columns(tel, energy_tel))  # energy from the pass it came from, if separate
        if energy_tel is not tel:
            why = f"--energy-time-s {cfg.energy_time_s:g} s" if energy_s == cfg.energy_time_s else \
                f"{energy_s:.1f} s for the energy counter's {self.monitor.counter_period_s * 1e3:.0f} ms steps"
            row["energy_pass"] = f"separate {energy_tel.energy.energy_window_s or 0:.1f} s pass (timed window " \
                                 f"{res.duration_s:.2f} s < {why})"
        if self.dev.kind == "cuda":
            row.update(self.stage_split(bs))
            if row.get("h2d_ms") is not None and row.get("latency_ms_p50"):
                stages = row["h2d_ms"] + row["compute_ms"] + row["d2h_ms"]
                row["stage_split_vs_e2e_pct"] = 100.0 * (stages / row["latency_ms_p50"] - 1.0)
        row["status"] = "ok" if self.check.timed else "mismatch"
        if row["status"] == "mismatch":
            row["error"] = f"correctness check: {self.check.detail}"
        if res.stop is not None and res.stop.ci_target_reached is False:
            row["error"] = (row["error"] + "; " if row["error"] else "") + \
                f"--target-ci {cfg.target_ci} not reached within --max-time-s {cfg.max_time_s:g} s"

        self.write_traces(cell.cell_id, res, energy_tel if energy_tel is not tel else tel)
        if res.loadgen is not None:
            from infermeter.results.writer import atomic_write_json

            atomic_write_json(self.out_dir / "loadgen" / f"{cell.cell_id}.json", res.loadgen.summary)
        return row

    def energy_pass(self, load, seconds: float):
        """The same load, closed-loop, for at least `seconds`, so the energy counter's steps do not dominate."""
        from infermeter.scenarios import Budget

        _, tel = run_metered(self.monitor, "offline" if len(load.clients) > 1 else "single-stream", load,
                             Budget(warmup=0, time_s=seconds, min_iterations=1))
        return tel

    STAGE_SPLIT_CALLS = 10

    def stage_split(self, batch: int) -> dict:
        """trtexec-style H2D / compute / D2H medians (h2d_ms, compute_ms, d2h_ms), where the engine splits them.
        A separate pass after the timed run, synchronised after each call: the row's method says so, and
        measure() sets stage_split_vs_e2e_pct, how far its sum is from the timed run's median latency."""
        host = self.model.make_batch(self.pool, batch, 0)
        samples = [s for s in (self.engine.staged_timings(host) for _ in range(self.STAGE_SPLIT_CALLS)) if s]
        keys = ("h2d_ms", "compute_ms", "d2h_ms")
        out = {k: float(np.median([s[k] for s in samples])) for k in keys if samples and all(k in s for s in samples)}
        if out:  # engines time the split differently (CUDA events or the host clock): the row says how
            out["stage_split_method"] = (f"separate synchronised pass after the timed run ({len(samples)} calls): "
                                         f"{samples[0].get('stage_split_method')}")
        return out

    def write_traces(self, cell_id: str, res, tel) -> None:
        lat = np.asarray(res.latencies_ms, dtype=float)
        issue = np.asarray(getattr(res, "issue_times_s", None) if getattr(res, "issue_times_s", None) is not None
                           else np.full(lat.shape, np.nan), dtype=float)
        atomic_write_csv(self.out_dir / "latency" / f"{cell_id}.csv", ["request", "issue_time_s", "latency_ms"],
                         ([i, float(issue[i]) if i < len(issue) else None, float(v)] for i, v in enumerate(lat)))
        if tel.trace:
            cols = list(tel.trace[0].keys())
            atomic_write_csv(self.out_dir / "power" / f"{cell_id}.csv", cols, ([s.get(c) for c in cols]
                                                                               for s in tel.trace))

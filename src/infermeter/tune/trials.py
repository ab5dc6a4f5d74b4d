"""One trial is one ordinary cell: the sweep's own workers, correctness gate, telemetry and results row,
with the trial number and stage added to the row.

The model's artifacts are built once per tune (the first trial's prepare worker; the ArtifactStore caches
them on disk across runs). Trials that differ only in the cheap knobs (batch size, streams) share one
engine session: one worker builds the session, runs the check once for all their batch sizes and measures
them one after another, each its own cell and row (the innermost loop). Session build and compile time
land in each row's build_s, load_s and compile_s columns, never in its timing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace

from infermeter.config import RunConfig
from infermeter.errors import BadInput, StopSweep
from infermeter.sweep import Sweep

#: screen: the short window every proposed point gets; confirm: the front re-measured with the CI stop
STAGES = ("screen", "confirm")
#: point keys that are not RunConfig fields: the tuner sets them on the device around the trial
_CELL_KEYS = {"engine", "precision", "batch_size", "streams"}
#: knobs a running session varies without a new session: each value is another cell of the same worker
CHEAP_KNOBS = ("batch_size", "streams")


#: screening's warm-up requests and minimum requests at most: a slow engine at a large batch spends its
#: window on them (TF-XLA on a 2-core CPU: 5 s per batch of 64); the confirm stage keeps the run's own
SCREEN_WARMUP, SCREEN_MIN_REQUESTS = 3, 5


def screen_requests(base: RunConfig) -> tuple[int, int]:
    """(warm-up requests, minimum requests) of a screening window."""
    return min(base.warmup, SCREEN_WARMUP), min(base.min_iterations, SCREEN_MIN_REQUESTS)


def session_key(point: dict) -> tuple:
    """What a point's engine session is built from: everything but the cheap knobs."""
    return tuple(sorted((k, v) for k, v in point.items() if k not in CHEAP_KNOBS))


@dataclass
class Measurement:
    trial: int
    stage: str
    point: dict
    row: dict  # the results.csv row, as written
    wall_s: float  # the trial's share of its session run (build, check, timing): what the budget pays
    session_s: float = 0.0  # the whole session run this trial was measured in
    session_trials: int = 1  # how many trials that session measured


def trial_config(base: RunConfig, point: dict, stage: str, *, screen_s: float, target_ci: float,
                 max_time_s: float, batch_sizes: list[int] | None = None,
                 streams: list[int] | None = None) -> RunConfig:
    """The run configuration of one point at one stage: a short fixed window to screen, the CI stop to confirm.
    batch_sizes/streams: the cheap knobs of every trial sharing the point's session."""
    data = base.to_dict()
    data.update(engines=[point["engine"]], precisions=[point["precision"]],
                batch_sizes=batch_sizes or [point["batch_size"]], streams=streams or [point.get("streams", 1)],
                resume=False, quiet=True, json_path=None)
    names = {f.name for f in fields(RunConfig)}
    data.update({k: v for k, v in point.items() if k not in _CELL_KEYS and k in names})
    if stage == "confirm":
        data.update(time_s=None, iterations=None, target_ci=target_ci, max_time_s=max_time_s)
    else:  # screen (and a benchmark's grid): the short fixed window, few warm-up and minimum requests
        warmup, min_requests = screen_requests(base)
        data.update(time_s=screen_s, iterations=None, target_ci=None, warmup=warmup, min_iterations=min_requests)
    return RunConfig.from_dict(data)


class TrialSweep(Sweep):
    """A sweep of one engine session whose cells are trials: each row carries its trial and stage, and its
    cell id ends in the trial number, so the per-request latency file of each trial is its own. The plan's
    cells that no trial asked for (the batch x streams product) are dropped."""

    def __init__(self, cfg: RunConfig, trials: dict[tuple[int, int], int], stage: str, prepared: dict,
                 session: int = 1):
        super().__init__(cfg)
        self.stage, self.prepared = stage, prepared
        self.trial_of: dict[str, int] = {}
        # a point's later sessions (a confirmation's) keep their own cell ids and per-request latency files
        tail = ("" if stage == "screen" else f"_{stage}") + (f"_s{session}" if session > 1 else "")
        for g in self.groups:
            cells = []
            for c in g.cells:
                trial = trials.get((c.batch_size, c.streams))
                if trial is not None:
                    cells.append(replace(c, cell_id=f"{c.cell_id}_t{trial}{tail}"))
                    self.trial_of[cells[-1].cell_id] = trial
            g.cells = cells

    def emit(self, row: dict) -> None:
        super().emit({**row, "trial": self.trial_of[row["cell_id"]], "stage": self.stage})

    def prepare_model(self, model, kinds: set[str]) -> str | None:
        """Artifacts once per tune: a later trial needing no kind beyond those built reuses that build."""
        for (key, built), (err, facts) in self.prepared.items():
            if key == model.key() and kinds <= built:
                self.info["artifacts"][model.shape_tag()] = facts
                return err
        err = super().prepare_model(model, kinds)
        self.prepared[(model.key(), frozenset(kinds))] = (err, self.info["artifacts"].get(model.shape_tag()))
        return err


def run_trials(base: RunConfig, trials: list[tuple[int, dict]], stage: str, prepared: dict, *,
               session: int = 1, **windows) -> list[Measurement]:
    """Measure points of one session (same session_key) in one worker, one cell each; returns each trial's
    row (ok, mismatch, failed or skipped) with its share of the session's wall time. session: which of a
    confirmation's repeated sessions this is (1 for the first)."""
    points = [p for _, p in trials]
    keys = {session_key(p) for p in points}
    if len(keys) != 1:
        raise ValueError(f"trials of one session share everything but {', '.join(CHEAP_KNOBS)}: {points}")
    by_cell = {(p["batch_size"], p.get("streams", 1)): t for t, p in trials}
    if len(by_cell) != len(trials):
        raise ValueError(f"two trials of one session measure the same point: {points}")
    cfg = trial_config(base, points[0], stage, batch_sizes=sorted({b for b, _ in by_cell}),
                       streams=sorted({s for _, s in by_cell}), **windows)
    t0 = time.monotonic()
    sweep = TrialSweep(cfg, by_cell, stage, prepared, session)
    try:
        sweep.run()
    except StopSweep as e:
        raise BadInput(str(e)) from None
    wall = time.monotonic() - t0
    rows = {sweep.trial_of[r["cell_id"]]: r for r in sweep.rows if r["cell_id"] in sweep.trial_of}
    missing = [t for t, _ in trials if t not in rows]
    if missing:  # every planned cell leaves a row (ok, mismatch, failed or skipped)
        raise RuntimeError(f"trials {missing}: the sweep wrote no row")
    return [Measurement(t, stage, p, rows[t], wall / len(trials), wall, len(trials)) for t, p in trials]


def run_trial(base: RunConfig, point: dict, trial: int, stage: str, prepared: dict, **windows) -> Measurement:
    """Measure one point in a session of its own."""
    return run_trials(base, [(trial, point)], stage, prepared, **windows)[0]

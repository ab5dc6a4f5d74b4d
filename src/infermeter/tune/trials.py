"""One trial is one ordinary cell: the sweep's own workers, correctness gate, telemetry and results row,
with the trial number and stage added to the row.

The model's artifacts are built once per tune (the first trial's prepare worker; the ArtifactStore caches
them on disk across runs), so a trial pays only for its engine session: that build and compile time lands
in the row's build_s, load_s and compile_s columns, never in its timing.
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


@dataclass
class Measurement:
    trial: int
    stage: str
    point: dict
    row: dict  # the results.csv row, as written
    wall_s: float  # the whole trial (session build, check, timing): what the budget pays


def trial_config(base: RunConfig, point: dict, stage: str, *, screen_s: float, target_ci: float,
                 max_time_s: float) -> RunConfig:
    """The run configuration of one point at one stage: a short fixed window to screen, the CI stop to confirm."""
    data = base.to_dict()
    data.update(engines=[point["engine"]], precisions=[point["precision"]], batch_sizes=[point["batch_size"]],
                streams=[point.get("streams", 1)], resume=False, quiet=True, json_path=None)
    names = {f.name for f in fields(RunConfig)}
    data.update({k: v for k, v in point.items() if k not in _CELL_KEYS and k in names})
    if stage == "confirm":
        data.update(time_s=None, iterations=None, target_ci=target_ci, max_time_s=max_time_s)
    else:  # screen (and a benchmark's grid): the short fixed window
        data.update(time_s=screen_s, iterations=None, target_ci=None)
    return RunConfig.from_dict(data)


class TrialSweep(Sweep):
    """A one-cell sweep whose row carries the trial and stage. Its cell id ends in the trial number, so the
    per-request latency file of each trial is its own."""

    def __init__(self, cfg: RunConfig, trial: int, stage: str, prepared: dict):
        super().__init__(cfg)
        self.trial, self.stage, self.prepared = trial, stage, prepared
        suffix = f"_t{trial}" + ("" if stage == "screen" else f"_{stage}")
        for g in self.groups:
            g.cells = [replace(c, cell_id=c.cell_id + suffix) for c in g.cells]

    def emit(self, row: dict) -> None:
        super().emit({**row, "trial": self.trial, "stage": self.stage})

    def prepare_model(self, model, kinds: set[str]) -> str | None:
        """Artifacts once per tune: a later trial needing no kind beyond those built reuses that build."""
        for (key, built), (err, facts) in self.prepared.items():
            if key == model.key() and kinds <= built:
                self.info["artifacts"][model.shape_tag()] = facts
                return err
        err = super().prepare_model(model, kinds)
        self.prepared[(model.key(), frozenset(kinds))] = (err, self.info["artifacts"].get(model.shape_tag()))
        return err


def run_trial(base: RunConfig, point: dict, trial: int, stage: str, prepared: dict, **windows) -> Measurement:
    """Measure one point; returns its row (ok, mismatch, failed or skipped) and the trial's wall time."""
    cfg = trial_config(base, point, stage, **windows)
    t0 = time.monotonic()
    sweep = TrialSweep(cfg, trial, stage, prepared)
    try:
        sweep.run()
    except StopSweep as e:
        raise BadInput(str(e)) from None
    rows = sweep.rows
    if len(rows) != 1:  # the plan of one engine, precision, batch and stream count is one cell
        raise RuntimeError(f"trial {trial}: expected one row, the sweep wrote {len(rows)}")
    return Measurement(trial, stage, point, rows[0], time.monotonic() - t0)

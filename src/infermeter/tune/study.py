"""The search: Optuna proposes points, the sweep measures them, rows come back as objective values.

- Storage: an Optuna RDB study on SQLite (tune.db) in the results folder, beside results.csv. Every
  trial is also a results.csv row with its `trial` number and `stage`. After a kill, `--resume` tells
  Optuna the result of a trial whose row was written before the kill (it is never measured again), and
  proposes again the points that were being measured when the process died. The study's queue of fixed
  points is filled only right before the ask that takes them, so it hands back exactly the point meant.
- Budget: wall seconds over the whole search, across resumes (spent time is kept in the study). No session
  starts once the budget is spent, and a session takes only the trials whose measured cost fits what is left,
  so the search overruns it by at most the one session in progress.
- Innermost loop: a proposed point's engine session also measures its unmeasured siblings, the points that
  differ from it only in the cheap knobs (batch size, streams; trials.CHEAP_KNOBS), nearest first. Each is
  its own Optuna trial, told its own values, so the sampler learns from every cell.
- Stages: screening measures each proposed point over a short window; the front's members are then
  re-measured with the CI stop (--target-ci) in the rest of the budget, in --confirm-sessions separate
  sessions each (round after round over the front, the knee first), pooled into one mean whose interval
  holds the run-to-run spread a single session's interval leaves out. A member whose sessions still
  disagree (interval over them wider than --session-ci) gets more rounds, up to --max-confirm-sessions.
- Infeasible: a failed correctness check (status mismatch), a failed or skipped cell, or a constraint
  broken. Such a point is told to Optuna as infeasible (constraints) and is never on the front.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.errors import BadInput
from infermeter.tune.front import Point, front, measured_point, pick, pooled
from infermeter.tune.objectives import objective_values
from infermeter.tune.options import TuneOptions
from infermeter.tune.space import TUNE_SCENARIOS, SearchSpace, build_space, point_key
from infermeter.tune.trials import Measurement, run_trials, screen_requests, session_key

DB_NAME = "tune.db"
STUDY_NAME = "tune"


def say(line: str) -> None:
    print(f"infermeter: tune: {line}", file=sys.stderr)


@dataclass
class TuneOutcome:
    out_dir: Path
    objectives: list
    points: list[Point]  # every measured trial (its confirmation's values where it has one)
    front: list[Point]
    picked: Point | None
    space: SearchSpace
    history: list[tuple[float, list[Point]]]  # (seconds spent when the trial ended, the screened points so far)
    spent_s: float
    budget_s: float
    notes: list[str] = field(default_factory=list)
    longest_session_s: float = 0.0  # the longest session run (its trials in one worker)
    device_kind: str = "cpu"
    device_name: str = ""
    gpu_index: int | None = None
    knee: Point | None = None

    @property
    def status(self) -> int:
        """0 with a front to ship; 1 when no feasible point was found."""
        return 0 if self.front else 1


def _validate(cfg: RunConfig) -> None:
    if len(cfg.scenarios) != 1 or cfg.scenarios[0] not in TUNE_SCENARIOS:
        raise BadInput(f"--scenario: tune searches one of {', '.join(TUNE_SCENARIOS)}, got {','.join(cfg.scenarios)}")
    if cfg.scenarios[0] == "server" and len(cfg.target_qps) != 1:
        raise BadInput("--target-qps: tune --scenario server takes one arrival rate")
    if cfg.input_shapes and len(cfg.input_shapes) > 1:
        raise BadInput("--input-shapes: tune searches one input shape set at a time")


def _energy_measurable(dev, cfg: RunConfig) -> tuple[bool, str]:
    from infermeter.telemetry import open_monitor

    mon = open_monitor(dev, cfg.power_interval_ms)
    try:
        return mon.energy_available, mon.energy_source
    finally:
        mon.close()


def _sampler(opts: TuneOptions, seed: int, space: SearchSpace):
    """Optuna's multi-objective TPE (default) or NSGA-II; both read each trial's constraints."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if opts.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, space.size() // 4)))
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=max(3, min(10, space.size() // 10)))


def _rows_by_trial(out_dir: Path) -> dict[tuple[int, str], list[dict]]:
    """results.csv rows of the tune, by (trial, stage), in the order written: a screening's (the last
    wins), a confirmation's sessions."""
    from infermeter.results.writer import read_results

    out: dict[tuple[int, str], list[dict]] = {}
    for r in read_results(out_dir / "results.csv"):
        if r.get("trial") not in (None, ""):
            out.setdefault((int(r["trial"]), r.get("stage") or "screen"), []).append(r)
    return out


def _screened(rows: dict, trial: int) -> dict | None:
    got = rows.get((trial, "screen"))
    return got[-1] if got else None


class Tuner:
    def __init__(self, cfg: RunConfig, opts: TuneOptions, gpu_knobs=None):
        from infermeter.sweep import Sweep

        _validate(cfg)
        self.t0 = time.monotonic()  # the budget counts from here: setting up is part of the search
        self.spent_before = 0.0
        self.cfg, self.opts = cfg, opts
        self.notes: list[str] = []
        probe = Sweep(cfg)  # resolves the model, the device and the results folder, as `run` would
        self.dev, self.model, self.out_dir = probe.dev, probe.models[0], probe.out_dir
        self.objectives = list(opts.objectives)
        measurable, source = _energy_measurable(self.dev, cfg)
        if any(o.name == "energy" for o in self.objectives) and not measurable:
            self.objectives = [o for o in self.objectives if o.name != "energy"]
            self._note(f"energy left out of the objectives: {source.removeprefix('unavailable: ')}")
        if not self.objectives:
            raise BadInput("--objectives: nothing left to optimise (energy cannot be measured here)")
        # without an energy reading the idle baseline serves nothing: trials skip it
        self.base = cfg if measurable else RunConfig.from_dict({**cfg.to_dict(), "idle_time_s": 0.0})
        self.space = build_space(cfg, self.model, self.dev.kind)
        for name, why in self.space.left_out.items():
            self._note(f"{name} not searched: {why}")
        if not self.space.engines:
            raise BadInput("no engine asked for can run here: " + "; ".join(f"{k}: {v}" for k, v in self.space.left_out.items()))
        self.knobs = gpu_knobs
        if self.knobs is None and self.dev.kind == "cuda":
            from infermeter.tune.gpu_knobs import open_gpu_knobs

            self.knobs, why = open_gpu_knobs(self.dev.gpu_id, cfg.cache_dir)
            if self.knobs is None:
                self._note(f"GPU power limit and clocks left out of the search: {why}")
        if self.knobs is not None:
            self.space.device_knobs = self.knobs.probe()
            self.notes += self.knobs.notes
        self.prepared: dict = {}
        self.measured: dict[tuple, Measurement] = {}  # point key -> its screening
        self.ended: dict[int, float] = {}  # trial -> seconds spent when its screening ended
        self.after_trial = None  # called with each Measurement once the study holds it (the fleet streams it)
        self.longest = 0.0  # the longest session run: what the budget may be overrun by
        self.pending: list[tuple[dict, dict]] = []  # (params, user attrs) to propose before the sampler does
        self._stuck_noted = self._all_noted = False

    def _note(self, line: str) -> None:
        self.notes.append(line)
        say(line)

    # ---- the study ----------------------------------------------------------------------------------------
    def open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        db = self.out_dir / DB_NAME
        if db.exists() and not self.cfg.resume:
            raise BadInput(f"{self.out_dir} already holds a tune ({DB_NAME}): --resume continues it, or give "
                           "another --results-dir")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 60}})
        names = [o.name for o in self.objectives]
        try:
            old = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        except KeyError:
            old = None
        if old is not None and old.user_attrs.get("objectives") != names:
            raise BadInput(f"--resume: the tune in {self.out_dir} optimises {','.join(old.user_attrs.get('objectives', []))}, "
                           f"not {','.join(names)}")
        seed = self.cfg.seed + (len(old.trials) if old is not None else 0)
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True,
                                    directions=[o.direction for o in self.objectives],
                                    sampler=_sampler(self.opts, seed, self.space))
        if old is None:
            study.set_user_attr("objectives", names)
            study.set_user_attr("spent_s", 0.0)
        # each engine's defaults first (those not measured yet, on a resume), then the sampler's picks
        self.pending += [(self.space.params(p), {"start": True}) for p in self.space.starting_points()]
        self.spent_before = float(study.user_attrs.get("spent_s", 0.0))  # earlier runs of this search
        return study

    def elapsed(self) -> float:
        return self.spent_before + time.monotonic() - self.t0

    def _tell(self, study, trial, m: Measurement, **attrs) -> None:
        """Tell Optuna a measured point: its objective values and its constraints (broken when the check
        failed or a limit is not met); a row without values (failed, skipped) fails the trial."""
        import optuna

        if isinstance(trial, optuna.trial.FrozenTrial):  # a trial a killed tuner left running
            trial = optuna.trial.Trial(study, trial._trial_id)
        for k, v in self.opts.constraints.violations(m.row).items():
            trial.set_constraint(k, v)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        values = objective_values(m.row, self.objectives)
        if values is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, values)

    def recover(self, study) -> None:
        """Trials a killed tuner left RUNNING: told from their row when it was written (never measured
        again), else failed and their point proposed again."""
        import optuna

        rows = _rows_by_trial(self.out_dir)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            point = self.space.point_of(t.params)  # a running trial's user attributes may not be stored yet
            row = _screened(rows, t.number)
            if row is not None and point is not None:
                self._tell(study, t, Measurement(t.number, "screen", point, row, 0.0), recovered=True, point=point)
                self.measured[point_key(point)] = Measurement(t.number, "screen", point, row, 0.0)
            else:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                if point is not None:
                    self.pending.insert(0, (t.params, {"requeued_from": t.number}))
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            # enqueued by a tuner killed before its ask: taken off the queue, proposed again in order
            fixed = study.ask()
            study.tell(fixed.number, state=optuna.trial.TrialState.FAIL)
            self.pending.insert(0, (t.system_attrs.get("fixed_params", {}), {"requeued_from": t.number}))
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                          optuna.trial.TrialState.FAIL)):
            point, row = t.user_attrs.get("point"), _screened(rows, t.number)
            if point is not None and row is not None and "duplicate_of" not in t.user_attrs:
                self.measured[point_key(point)] = Measurement(t.number, "screen", point, row,
                                                              float(t.user_attrs.get("wall_s", 0.0)))
                self.ended[t.number] = float(t.user_attrs.get("ended_s", 0.0))

    def measure_session(self, trials: list[tuple[int, dict]], stage: str, session: int = 1,
                        cells_left: int = 0) -> list[Measurement]:
        """Measure trials of one session (same session_key) in one worker. A confirmation's window is capped
        at an even share of the budget left over the cells still to confirm (cells_left, at least these)."""
        point = trials[0][1]
        if self.knobs is not None:  # device knobs are part of the session key: the same for every trial
            self.knobs.apply(point.get("power_limit_w"), point.get("locked_clocks_mhz"))
        remaining = max(self.opts.budget_s - self.elapsed(), self.opts.screen_time_s)
        ci = self.cfg.target_ci or self.opts.confirm_ci
        ms = run_trials(self.base, trials, stage, self.prepared, session=session, screen_s=self.opts.screen_time_s,
                        target_ci=ci, max_time_s=min(self.cfg.max_time_s, remaining / max(len(trials), cells_left)))
        self.longest = max(self.longest, ms[0].session_s)
        if not self.cfg.quiet:  # progress: one line per trial
            from infermeter.tune.output import config_text

            for m in ms:
                r = m.row
                vals = ", ".join(f"{o.name} {v:.4g}" for o, v in zip(self.objectives,
                                                                      objective_values(r, self.objectives) or [],
                                                                      strict=False))
                why = self.opts.constraints.why_not(r)
                tag = stage if session == 1 else f"{stage} {session}"
                print(f"trial {m.trial:>3} [{tag}] {config_text(m.point)} -> {vals or r.get('status')}"
                      f"{' (infeasible: ' + why + ')' if why else ''} [{m.wall_s:.1f} s of a {m.session_s:.1f} s "
                      f"session of {m.session_trials}; {self.elapsed():.0f} of {self.opts.budget_s:g} s spent]",
                      flush=True)
        return ms

    def _ask(self, study, params: dict | None = None, attrs: dict | None = None):
        """A new trial and its point: the sampler's proposal, or `params`, enqueued right before the ask (the
        queue is otherwise empty, so the ask hands back exactly it)."""
        if params is not None:
            study.enqueue_trial(params, user_attrs=attrs or None)
        trial = study.ask()
        point = self.space.suggest(trial)
        trial.set_user_attr("point", point)
        return trial, point

    def _unmeasured_at_random(self) -> dict:
        import random

        left = [p for p in self.space.points() if point_key(p) not in self.measured]
        return random.Random(self.cfg.seed + len(self.measured)).choice(left)

    def _next_pending(self) -> tuple[dict, dict] | None:
        while self.pending:
            params, attrs = self.pending.pop(0)
            point = self.space.point_of(params)
            if point is not None and point_key(point) not in self.measured:
                return params, attrs
        return None

    #: trials in an engine's first session, before its cost per trial is known
    FIRST_SESSION_TRIALS = 2

    def _trial_cost(self, engine: str):
        """Predicted seconds one more trial of this engine adds to a session, as a function of its batch size:
        the largest share its trials so far spent outside warm-up and window (session start, check, compile,
        first call), plus the screening warm-up and window at that batch size at the lowest throughput the
        engine has shown (a slow engine at a large batch spends far beyond --screen-time-s on its minimum
        requests). None before the engine's first session."""
        from infermeter.tune.objectives import number

        own = [m for m in self.measured.values() if m.point["engine"] == engine and m.wall_s > 0]
        rates = [r for r in (number(m.row, "throughput_items_s") for m in own) if r]
        if not rates:
            return None
        overhead = max(max(0.0, m.wall_s - (number(m.row, "duration_s") or 0.0) - (number(m.row, "warmup_s") or 0.0))
                       for m in own)
        slowest = min(rates)
        warmup, min_requests = screen_requests(self.base)

        def cost(batch: int) -> float:
            per_request = batch / slowest
            window = max(self.opts.screen_time_s, min_requests * per_request)
            return overhead + window + (self.base.warmup_time_s or warmup * per_request)

        return cost

    def _siblings(self, study, trial, point: dict, limit_s: float) -> list:
        """The point's unmeasured siblings (same session, other cheap knobs), starting points and then the
        nearest batch size first, as many as the budget left holds at their predicted cost, each asked as
        its own trial."""
        import math

        key, skey = point_key(point), session_key(point)
        candidates = [p for p in self.space.points() if session_key(p) == skey and point_key(p) != key
                      and point_key(p) not in self.measured]
        cost = self._trial_cost(point["engine"])
        # with the engine's cost known, a starting point still to come goes first (the session then spans both
        # ends of the front); then the nearest batch size and client count
        starts = {point_key(q) for q in (self.space.point_of(params) for params, attrs in self.pending
                                         if attrs.get("start")) if q is not None} if cost is not None else set()
        candidates.sort(key=lambda p: (point_key(p) not in starts, abs(math.log2(p["batch_size"] / point["batch_size"])),
                                       abs(p.get("streams", 1) - point.get("streams", 1)), p["batch_size"]))
        if cost is None:
            candidates = candidates[: self.FIRST_SESSION_TRIALS - 1]
        else:
            left, fitting = limit_s - self.elapsed() - cost(point["batch_size"]), []
            for p in candidates:
                if cost(p["batch_size"]) <= left:
                    left -= cost(p["batch_size"])
                    fitting.append(p)
            candidates = fitting
        out = []
        for p in candidates:
            t, got = self._ask(study, self.space.params(p), {"sibling_of": trial.number})
            if point_key(got) != point_key(p):  # the queue holds only what was enqueued right before
                raise RuntimeError(f"trial {t.number}: asked for {p}, got {got}")
            out.append((t, got))
        return out

    def screen(self, study, limit_s: float) -> int:
        """Propose and measure sessions until `limit_s` seconds are spent or every point is measured; returns
        how many trials it measured."""
        import optuna

        repeats, measured = 0, 0
        size = self.space.size()
        while self.elapsed() < limit_s:
            if len(self.measured) >= size:
                if not self._all_noted:
                    self._note(f"every one of the {size} points was measured")
                    self._all_noted = True
                return measured
            proposal = self._next_pending()
            trial, point = self._ask(study, *proposal) if proposal else self._ask(study)
            key = point_key(point)
            if key in self.measured:  # proposed again: answered from its measurement, nothing re-run
                prev = self.measured[key]
                self._tell(study, trial, prev, duplicate_of=prev.trial)
                repeats += 1
                if repeats >= self.opts.max_repeats:  # the sampler is stuck on what it knows: a fresh point
                    if not self._stuck_noted:
                        self._note(f"the sampler proposed only measured points {repeats} times in a row: an "
                                   "unmeasured point drawn at random is proposed instead whenever that happens")
                        self._stuck_noted = True
                    self.pending.append((self.space.params(self._unmeasured_at_random()), {"random": True}))
                    repeats = 0
                continue
            repeats = 0
            group = [(trial, point)]
            try:
                group += self._siblings(study, trial, point, limit_s)
                ms = self.measure_session([(t.number, p) for t, p in group], "screen")
            except BaseException:
                for t, _ in group:
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                raise
            ended = self.elapsed()
            for (t, p), m in zip(group, ms, strict=True):
                self.measured[point_key(p)] = m
                self.ended[t.number] = ended
                self._tell(study, t, m, wall_s=m.wall_s, ended_s=ended, session_s=m.session_s,
                           session_trials=m.session_trials)
            study.set_user_attr("spent_s", self.elapsed())
            measured += len(ms)
            for m in ms:
                if self.after_trial:
                    self.after_trial(m)
        return measured

    def points(self, rows: dict | None = None) -> list[Point]:
        """Every measured trial, its confirmation's pooled sessions where it has them. rows: _rows_by_trial's,
        when the caller has read them already."""
        rows = _rows_by_trial(self.out_dir) if rows is None else rows
        out = []
        for m in sorted(self.measured.values(), key=lambda m: m.trial):
            row, stage = m.row, "screen"
            confirmed = rows.get((m.trial, "confirm"))
            if confirmed:  # its sessions pooled: their mean, with the interval over them
                row, stage = pooled(confirmed, self.objectives), "confirm"
            out.append(measured_point(m.trial, stage, m.point, row, self.objectives, self.opts.constraints))
        return out

    def confirm(self, study) -> int:
        """Re-measure the screened front with the CI stop in --confirm-sessions separate sessions each, while
        the budget lasts: round after round over the front, the knee's session first in each, so that
        drift over minutes reaches every member's sessions alike. Then the session-level CI stop: a member
        still on the front whose interval over its sessions is wider than --session-ci gets further rounds,
        up to --max-confirm-sessions. Returns how many cells it measured."""
        rows = _rows_by_trial(self.out_dir)
        members = front(self.points(rows), self.objectives)
        first = pick(members, self.objectives, "knee")
        order = [first] + [p for p in members if p is not first] if first else []
        done = {p.trial: len(rows.get((p.trial, "confirm"), [])) for p in order}  # sessions so far (a resume)
        want, most = self.opts.confirm_sessions, self.opts.max_confirm_sessions
        confirmed = 0
        for r in range(1, most + 1):
            if r <= want:
                todo = [p for p in order if done[p.trial] < r]
                cells_left = sum(want - done[p.trial] for p in order)
            else:  # past the minimum: only members still on the front whose sessions disagree
                still = {p.trial: p for p in front(self.points(), self.objectives)}  # their sessions pooled
                todo = [p for p in order if done[p.trial] < r and p.trial in still
                        and self._sessions_disagree(still[p.trial].row)]
                cells_left = len(todo) * (most - r + 1)
            sessions: dict[tuple, list[Point]] = {}  # the knee's session first; a session's members in one worker
            for p in todo:
                sessions.setdefault(session_key(p.config), []).append(p)
            for group in sessions.values():
                if self.elapsed() >= self.opts.budget_s:
                    break
                ms = self.measure_session([(p.trial, p.config) for p in group], "confirm", session=r,
                                          cells_left=cells_left)
                study.set_user_attr("spent_s", self.elapsed())
                confirmed += len(ms)
                cells_left -= len(group)
                for p in group:
                    done[p.trial] += 1
                for m in ms:
                    if self.after_trial:
                        self.after_trial(m)
        none = sum(1 for p in order if done[p.trial] == 0)
        fewer = sum(1 for p in order if 0 < done[p.trial] < want)
        if none or fewer:
            self._note(f"the budget was spent with {none} front member(s) not re-measured and {fewer} re-measured "
                       f"in fewer than {want} sessions (a larger --budget-s with --resume continues)")
        return confirmed

    def _sessions_disagree(self, row: dict) -> bool:
        """Whether a point's pooled sessions (points()' row) leave the interval over them wider than
        --session-ci."""
        between = row.get("ci95_rel_between_sessions")
        return between is not None and between > self.opts.session_ci

    def history(self) -> list[tuple[float, list[Point]]]:
        """The screened points known when each screening trial ended (the hypervolume-against-budget curve)."""
        out, acc = [], []
        for m in sorted(self.measured.values(), key=lambda m: m.trial):
            acc.append(measured_point(m.trial, "screen", m.point, m.row, self.objectives, self.opts.constraints))
            out.append((self.ended.get(m.trial, 0.0), list(acc)))
        return out

    def run(self) -> TuneOutcome:
        study = None
        try:
            study = self.open_study()
            self.recover(study)
            # screen a share of the budget, confirm the front; budget left (the front confirmed quickly):
            # the same again with the same shares of what is left, until it is spent or the space measured
            while True:
                left = self.opts.budget_s - self.elapsed()
                done = self.screen(study, self.elapsed() + left * self.opts.screen_share) + self.confirm(study)
                if self.elapsed() >= self.opts.budget_s or not done:
                    break
        finally:
            if study is not None:
                study.set_user_attr("spent_s", self.elapsed())
            if self.knobs is not None:
                self.knobs.restore()
        pts = self.points()
        more = [p.trial for p in pts if int(p.row.get("confirm_sessions") or 0) > self.opts.confirm_sessions]
        if more:  # across resumes: counted from the sessions in results.csv
            self._note(f"{len(more)} point(s) took more than {self.opts.confirm_sessions} sessions "
                       f"(trials {', '.join(map(str, more))}): their sessions' interval was "
                       f"wider than --session-ci {self.opts.session_ci:g}")
        members = front(pts, self.objectives)
        picked = pick(members, self.objectives, self.opts.pick)
        if picked is None and members:
            self._note(f"--pick {self.opts.pick}: that objective is not measured here; best.yaml holds the knee")
            picked = pick(members, self.objectives, "knee")
        return TuneOutcome(self.out_dir, self.objectives, pts, members, picked, self.space, self.history(),
                           self.elapsed(), self.opts.budget_s, self.notes, self.longest, self.dev.kind,
                           self.cfg.device_label or self.dev.name, self.dev.gpu_id,
                           pick(members, self.objectives, "knee"))


def run_tune(cfg: RunConfig, opts: TuneOptions, gpu_knobs=None, write: bool = True) -> TuneOutcome:
    """Python API: search, then write front.csv, the plots, the HTML page, best.yaml and tune.json."""
    outcome = Tuner(cfg, opts, gpu_knobs).run()
    if write:
        from infermeter.tune.output import write_outputs

        write_outputs(outcome, cfg, opts)
    return outcome

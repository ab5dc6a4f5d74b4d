"""The tuner's own settings (the run settings stay in RunConfig): one object behind the CLI and the Python API."""

from __future__ import annotations

from dataclasses import dataclass, field

from infermeter.errors import BadInput
from infermeter.tune.objectives import PICKS, Constraints, Objective, parse_objectives

SAMPLERS = ("tpe", "nsga2")


@dataclass
class TuneOptions:
    #: wall seconds for the whole search (screening and confirmation, across resumes); one trial may overrun it
    budget_s: float = 900.0
    objectives: list[Objective] = field(default_factory=lambda: parse_objectives("throughput,p99,energy"))
    constraints: Constraints = field(default_factory=Constraints)
    #: which front member best.yaml holds
    pick: str = "knee"
    #: seconds of timing per screened trial (the short window)
    screen_time_s: float = 2.0
    #: the share of the budget spent screening; the rest re-measures the front with the CI stop
    screen_share: float = 0.7
    #: the CI the front's members are re-measured to (--target-ci; the run's own value wins when given)
    confirm_ci: float = 0.02
    #: separate sessions each front member is re-measured in, one round of the front after another: a
    #: member's interval is then the t interval over its sessions' means (run-to-run drift included), never
    #: narrower than one session's own
    confirm_sessions: int = 3
    #: the session-level CI stop: a member whose interval over its sessions is still wider than session_ci
    #: gets another session, up to max_confirm_sessions (None: twice confirm_sessions), while the budget lasts
    session_ci: float = 0.05
    max_confirm_sessions: int | None = None
    #: Optuna's multi-objective TPE or NSGA-II, both with constraints
    sampler: str = "tpe"
    #: after this many proposals in a row of points already measured, an unmeasured one drawn at random
    max_repeats: int = 10

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise BadInput(f"--budget-s: must be positive, got {self.budget_s}")
        if self.pick not in PICKS:
            raise BadInput(f"--pick: unknown {self.pick!r}; choose from {', '.join(PICKS)}")
        if not self.screen_time_s > 0:
            raise BadInput(f"--screen-time-s: must be positive, got {self.screen_time_s}")
        if not 0 < self.screen_share <= 1:
            raise BadInput(f"--screen-share: a fraction in (0, 1], got {self.screen_share}")
        if self.confirm_sessions < 1:
            raise BadInput(f"--confirm-sessions: at least 1, got {self.confirm_sessions}")
        if not self.session_ci > 0:
            raise BadInput(f"--session-ci: must be positive, got {self.session_ci}")
        if self.max_confirm_sessions is None:
            self.max_confirm_sessions = 2 * self.confirm_sessions
        elif self.max_confirm_sessions < self.confirm_sessions:
            raise BadInput(f"--max-confirm-sessions: at least --confirm-sessions ({self.confirm_sessions}), "
                           f"got {self.max_confirm_sessions}")
        if self.sampler not in SAMPLERS:
            raise BadInput(f"--sampler: unknown {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        wanted = {"max-throughput": "throughput", "min-p99": "p99", "min-energy": "energy"}.get(self.pick)
        if wanted and wanted not in [o.name for o in self.objectives]:
            raise BadInput(f"--pick {self.pick}: {wanted} is not among --objectives")

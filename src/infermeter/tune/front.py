"""The non-dominated front of measured points, with confidence intervals as ties, its knee point and its
hypervolume.

Dominance with ties: point A beats B on an objective only when their 95% intervals do not overlap; A
dominates B when it beats B on some objective and B beats A on none: a difference within the intervals is
a tie (two points whose intervals overlap on every objective both stay on the front), and a point whose
only advantages are ties gives way to a front member that is clearly better somewhere. The interval is the row's ci95_rel (the relative
half-width of its mean latency/throughput) applied to each objective's value: the measured spread, the
only one the row has. Only feasible points (check passed, constraints met) are ever on the front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infermeter.tune.objectives import Constraints, Objective, number, objective_values


@dataclass
class Point:
    trial: int
    stage: str  # the stage whose measurement the values come from (confirm wins over screen)
    config: dict
    values: list[float]  # one per objective, in its own direction (throughput as items/s)
    ci_rel: float  # relative 95% half-width (0 where the row has none)
    feasible: bool
    row: dict
    why_infeasible: str | None = None


def measured_point(trial: int, stage: str, config: dict, row: dict, objectives: list[Objective],
                   constraints: Constraints) -> Point:
    """A results row as a point: its objective values (NaN where it has none), its interval, and whether it
    is feasible (a row without values is not: its status says why)."""
    values = objective_values(row, objectives)
    why = constraints.why_not(row)
    if values is None:
        why = why or f"{row.get('status')}: no measurement"
    return Point(trial, stage, config, values or [float("nan")] * len(objectives), ci_of(row), why is None, row, why)


def minimised(points: list[Point], objectives: list[Objective]) -> np.ndarray:
    """Values as an (n, k) array in which smaller is better on every column."""
    signs = np.array([o.sign() for o in objectives])
    return np.array([p.values for p in points], dtype=float).reshape(len(points), len(objectives)) * signs


def strictly_non_dominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of F (minimised) that no other row Pareto-dominates."""
    n = len(F)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        better_eq = np.all(F <= F[i], axis=1)
        better = np.any(F < F[i], axis=1)
        if np.any(better_eq & better):
            mask[i] = False
    return mask


def _clearly_better(a: float, b: float, ha: float, hb: float) -> bool:
    """a (minimised) beats b beyond both intervals."""
    return a + ha < b - hb


def clearly_dominates(fa: np.ndarray, fb: np.ndarray, ha: np.ndarray, hb: np.ndarray) -> bool:
    wins = [_clearly_better(fa[k], fb[k], ha[k], hb[k]) for k in range(len(fa))]
    losses = [_clearly_better(fb[k], fa[k], hb[k], ha[k]) for k in range(len(fa))]
    return any(wins) and not any(losses)


def half_widths(points: list[Point], F: np.ndarray) -> np.ndarray:
    ci = np.array([p.ci_rel for p in points], dtype=float).reshape(-1, 1)
    return np.abs(F) * ci


def front(points: list[Point], objectives: list[Objective]) -> list[Point]:
    """Feasible points that no front member clearly dominates (ties within CI kept), in trial order.

    "Clearly dominates" is not transitive: C may tie B's throughput and beat its p99, while A beats C's
    p99 and ties its throughput but loses to B's throughput beyond both intervals. Removing every point
    some point clearly dominates would then drop B, the fastest, for C, which is off the front itself. So
    points give way only to points that stay: those no remaining point clearly dominates are kept, the
    points they clearly dominate are removed, and so on until nothing changes. Every point left off is
    then clearly dominated by a member; points caught in a cycle of the relation stay, as ties."""
    feas = [p for p in points if p.feasible]
    if not feas:
        return []
    F = minimised(feas, objectives)
    H = half_widths(feas, F)
    n = len(feas)
    beats = [[j != i and clearly_dominates(F[j], F[i], H[j], H[i]) for i in range(n)] for j in range(n)]
    kept = set(range(n))
    while True:
        sure = {i for i in kept if not any(beats[j][i] for j in kept)}
        if not sure:  # every point beaten by another: a cycle; the strict Pareto set is then the front
            return [p for p, m in zip(feas, strictly_non_dominated(F), strict=True) if m]
        gone = {i for i in kept - sure if any(beats[j][i] for j in sure)}
        if not gone:
            return [feas[i] for i in sorted(kept)]
        kept -= gone


def knee(members: list[Point], objectives: list[Objective]) -> Point | None:
    """The front member closest to the ideal point once each objective is scaled to [0, 1] over the front:
    the balanced choice, where giving up a little of one objective no longer buys much of another."""
    if not members:
        return None
    F = minimised(members, objectives)
    lo, hi = F.min(axis=0), F.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.linalg.norm((F - lo) / span, axis=1)
    return members[int(np.argmin(dist))]


def pick(members: list[Point], objectives: list[Objective], how: str) -> Point | None:
    """The member --pick names: the knee, or the best of one objective."""
    if not members:
        return None
    if how == "knee":
        return knee(members, objectives)
    wanted = {"max-throughput": "throughput", "min-p99": "p99", "min-energy": "energy"}[how]
    names = [o.name for o in objectives]
    if wanted not in names:
        return None
    k = names.index(wanted)
    F = minimised(members, objectives)
    return members[int(np.argmin(F[:, k]))]


@dataclass(frozen=True)
class Reference:
    """Where the hypervolume is measured from (minimised values) and the box it is scaled by, so that it
    reads as a fraction. Comparisons (tune against a grid) must use one Reference for both."""

    point: np.ndarray
    scale: np.ndarray


def reference_point(points: list[Point], objectives: list[Objective]) -> Reference:
    """Zero throughput, and 1.1 x the worst feasible value of each cost; throughput is scaled by 1.1 x
    the best feasible throughput."""
    feas = [p for p in points if p.feasible]
    F = minimised(feas, objectives) if feas else np.zeros((0, len(objectives)))
    ref, scale = [], []
    for k, o in enumerate(objectives):
        worst = float(np.abs(F[:, k]).max()) * 1.1 if len(F) else 1.0
        ref.append(0.0 if o.direction == "maximize" else worst)
        scale.append(worst if worst > 0 else 1.0)
    return Reference(np.array(ref), np.array(scale))


def hypervolume(points: list[Point], objectives: list[Objective], ref: Reference) -> float:
    """Hypervolume of the feasible points (minimised) against ref, as a fraction of ref's box."""
    from optuna._hypervolume import compute_hypervolume  # Optuna's exact (WFG / box decomposition) code

    feas = [p for p in points if p.feasible]
    if not feas:
        return 0.0
    F = minimised(feas, objectives) / ref.scale
    r = ref.point / ref.scale
    F = F[np.all(F < r, axis=1)]
    if not len(F):
        return 0.0
    return float(compute_hypervolume(F[strictly_non_dominated(F)], r))


#: what a confirmation's sessions are pooled by: the quantities a row's own ci95_rel describes
_SESSION_CI_COLUMNS = ("throughput_items_s", "latency_ms_mean")


def pooled(rows: list[dict], objectives: list[Objective]) -> dict:
    """One point's separate sessions as one row: each objective the mean of the sessions' values, and
    ci95_rel the wider of the t interval over the sessions' means (throughput and mean latency, as a row's
    own ci95_rel; latency alone in the server scenario, whose rate is the schedule's) and the median of the
    sessions' own intervals. A session's own interval leaves out what differs from one run to the next (a
    VM's neighbours, the process's memory layout); the interval over sessions holds it, so a later run of
    the point lands inside. The last session's row supplies everything else; a session that failed or
    mismatched supplies the whole row instead (the point is then infeasible)."""
    from infermeter.scenarios.stats import mean_ci

    bad = [r for r in rows if r.get("status") != "ok"]
    out = dict(bad[-1] if bad else rows[-1])  # a session that failed or mismatched makes the point so
    out["confirm_sessions"] = len(rows)
    if bad or len(rows) < 2:
        out["ci95_rel_between_sessions"] = None
        return out
    for o in objectives:
        vals = [number(r, o.column) for r in rows]
        out[o.column] = float(np.mean(vals)) if all(v is not None for v in vals) else None
    between = 0.0
    columns = _SESSION_CI_COLUMNS[1:] if rows[-1].get("scenario") == "server" else _SESSION_CI_COLUMNS
    for col in columns:
        vals = [number(r, col) for r in rows]
        if all(v is not None and v > 0 for v in vals):
            mean, half = mean_ci(vals)
            between = max(between, half / mean)
            out[col] = mean
    own = [ci_of(r) for r in rows]
    out["ci95_rel_between_sessions"] = between
    out["ci95_rel"] = max(between, float(np.median(own)))
    return out


def has_interval(row: dict) -> bool:
    """Whether the row's window held enough requests for an interval (ci95_rel finite, not inf)."""
    v = number(row, "ci95_rel")
    return v is not None and 0 <= v < float("inf")


def ci_of(row: dict) -> float:
    """The row's relative 95% half-width for the tie rule. A window with too few requests for an interval
    (ci95_rel inf: a slow point screened briefly) is compared by its values alone: an infinite interval
    would tie it with every point and keep it on every front."""
    return number(row, "ci95_rel") if has_interval(row) else 0.0

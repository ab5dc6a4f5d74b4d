"""The front's arithmetic on generated points: CI ties, dominance, knee and hypervolume (the measured side is
covered end to end in test_tune.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from infermeter.tune.front import (
    Point,
    clearly_dominates,
    front,
    half_widths,
    hypervolume,
    knee,
    minimised,
    reference_point,
    strictly_non_dominated,
)
from infermeter.tune.objectives import OBJECTIVES

OBJ = [OBJECTIVES["throughput"], OBJECTIVES["p99"], OBJECTIVES["energy"]]

positive = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False)
point = st.tuples(positive, positive, positive, st.one_of(st.just(0.0), st.floats(min_value=0, max_value=0.5)),
                  st.booleans())


def make(raw) -> list[Point]:
    return [Point(i, "screen", {"i": i}, [t, p, e], ci, feasible, {}) for i, (t, p, e, ci, feasible) in enumerate(raw)]


@settings(max_examples=200, deadline=None)
@given(st.lists(point, min_size=1, max_size=25))
def test_the_front_holds_exactly_the_points_no_feasible_point_clearly_beats(raw):
    pts = make(raw)
    members = front(pts, OBJ)
    feas = [p for p in pts if p.feasible]
    assert all(p.feasible for p in members)  # an infeasible point is never on it
    if not feas:
        assert members == []
        return
    F = minimised(feas, OBJ)
    H = half_widths(feas, F)
    on = {p.trial for p in members}
    beaten = [any(clearly_dominates(F[j], F[i], H[j], H[i]) for j in range(len(feas)) if j != i)
              for i in range(len(feas))]
    strict = {p.trial for p, m in zip(feas, strictly_non_dominated(F), strict=True) if m}
    if all(beaten):  # a cycle of wide intervals beats every point: the strict Pareto set stands
        assert on == strict
    else:
        assert all(b == (p.trial not in on) for p, b in zip(feas, beaten, strict=True))
    assert members and knee(members, OBJ) in members  # feasible points always leave a front
    if all(p.ci_rel == 0 for p in feas):  # without spread, the front is the strict Pareto set
        assert on == strict


@settings(max_examples=100, deadline=None)
@given(st.lists(point, min_size=1, max_size=20))
def test_hypervolume_is_the_fronts_and_within_the_box(raw):
    pts = make(raw)
    ref = reference_point(pts, OBJ)
    hv = hypervolume(pts, OBJ, ref)
    assert 0.0 <= hv <= 1.0 + 1e-9
    feas = [p for p in pts if p.feasible]
    if feas:  # dominated points add nothing: the strict Pareto set alone has the same hypervolume
        keep = strictly_non_dominated(minimised(feas, OBJ))
        only = [p for p, k in zip(feas, keep, strict=True) if k]
        assert np.isclose(hypervolume(only, OBJ, ref), hv)
        assert hv > 0

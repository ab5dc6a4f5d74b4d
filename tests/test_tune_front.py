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


@settings(max_examples=300, deadline=None)
@given(st.lists(point, min_size=1, max_size=25))
def test_points_give_way_only_to_front_members(raw):
    pts = make(raw)
    members = front(pts, OBJ)
    feas = [p for p in pts if p.feasible]
    assert all(p.feasible for p in members)  # an infeasible point is never on it
    if not feas:
        assert members == []
        return
    F = minimised(feas, OBJ)
    H = half_widths(feas, F)
    on = [p.trial in {m.trial for m in members} for p in feas]
    beats = [[j != i and clearly_dominates(F[j], F[i], H[j], H[i]) for i in range(len(feas))]
             for j in range(len(feas))]
    strict = {p.trial for p, m in zip(feas, strictly_non_dominated(F), strict=True) if m}
    assert members and knee(members, OBJ) in members  # feasible points always leave a front
    if all(any(beats[j][i] for j in range(len(feas))) for i in range(len(feas))):
        assert {m.trial for m in members} == strict  # a cycle of wide intervals beats every point
        return
    for i in range(len(feas)):
        if not any(beats[j][i] for j in range(len(feas))):
            assert on[i]  # nothing beats it: it stays
        if not on[i]:  # left off: a member beats it
            assert any(beats[j][i] and on[j] for j in range(len(feas)))
        else:  # a member beaten by a member is so only in a cycle: its beater is beaten by a member too
            for j in range(len(feas)):
                if beats[j][i] and on[j]:
                    assert any(beats[k][j] and on[k] for k in range(len(feas)))
    if all(p.ci_rel == 0 for p in feas):  # without spread, the front is the strict Pareto set
        assert {m.trial for m in members} == strict


def test_a_point_beaten_only_by_a_point_off_the_front_stays():
    """A beats C's p99 and ties its throughput; C ties B's throughput and beats its p99; B beats A's
    throughput. C gives way to A; B, the fastest, stays: its only beater is off the front."""
    a = Point(0, "confirm", {}, [254.1, 5.0, 1.0], 0.107, True, {})
    b = Point(1, "confirm", {}, [328.3, 17.5, 1.0], 0.094, True, {})
    c = Point(2, "confirm", {}, [286.0, 10.8, 1.0], 0.132, True, {})
    F = minimised([a, b, c], OBJ)
    H = half_widths([a, b, c], F)
    assert clearly_dominates(F[0], F[2], H[0], H[2]) and clearly_dominates(F[2], F[1], H[2], H[1])
    assert not clearly_dominates(F[0], F[1], H[0], H[1])
    assert [p.trial for p in front([a, b, c], OBJ)] == [0, 1]


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

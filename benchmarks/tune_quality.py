"""How good is `infermeter tune` against the exhaustive grid it replaces? One run, side by side:

1. every engine of the sub-space runs once (a few iterations) so both searches start with built artifacts;
2. the exhaustive grid: every point of the stated sub-space measured with the screening window, the way
   `infermeter run` would measure it: one worker per engine session, its batch sizes one cell each;
3. `tune` with a quarter of the grid's wall time (--fraction) less the longest grid session (the one
   session it may overrun), the same window, all of it screening (--screen-share 1: the grid re-measures
   nothing either);
4. the hypervolume of each set of screened points, on one reference point (from both sets together), the
   ratio tune/grid, the time ratio, and how many of the grid front's points the tuner found: measured the
   same configuration, or a point within that grid point's CI on every objective. Beside it, the search
   apart from re-measurement noise: the hypervolume of the configurations the tuner measured, valued by
   the grid's own measurements of them, and how far the two measurements of one configuration differ;
5. side by side: every configuration on either front re-measured in one pass, outside both searches' time,
   in --sessions separate sessions each (round after round, the order reversed each round), every window
   the same length (--side-window-s, after screening's warm-up, as both searches measured); each front's hypervolume at the
   sessions' means, on the same reference point, and per round. Both fronts are then measured under the
   same conditions: a VM whose speed wanders for seconds to minutes lands its slow and fast spells on both
   alike (equal windows give every configuration the same exposure; the CI stop would not), and neither
   front keeps the luck of its screening (a front picked from many short windows holds the points that
   screened high).

    python benchmarks/tune_quality.py [--model mobilenet_v3_large] [--engines onnxruntime,openvino,torch]
        [--batch-sizes 1,4,16] [--size 224] [--screen-time-s 2] [--fraction 0.25] [--sessions 5]
        [--side-window-s 3] [--out DIR]

The sub-space is the tuner's own for these flags (engine x precision x batch size x threads x each
engine's knobs); it is printed with its size. Goals: hypervolume ratio >= 0.95 at a time ratio <= 0.25.
The side-by-side ratio (5) is the one judged against the goal; the ratio as each search screened its points
(4) is printed beside it, with the re-measurement spread that separates them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.tune.front import Point, front, hypervolume, measured_point, minimised, reference_point
from infermeter.tune.objectives import parse_objectives
from infermeter.tune.options import TuneOptions
from infermeter.tune.space import point_key


def _points(measurements, objectives, constraints) -> list[Point]:
    return [measured_point(m.trial, m.stage, m.point, m.row, objectives, constraints) for m in measurements]


def _within_ci(a: Point, b: Point, objectives) -> bool:
    fa, fb = minimised([a], objectives)[0], minimised([b], objectives)[0]
    return all(abs(x - y) <= abs(y) * max(b.ci_rel, 1e-9) + abs(x) * a.ci_rel for x, y in zip(fa, fb, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_large")
    ap.add_argument("--engines", default="onnxruntime,openvino,torch")
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--screen-time-s", type=float, default=2.0)
    ap.add_argument("--fraction", type=float, default=0.25, help="tune's budget as a fraction of the grid's time")
    ap.add_argument("--screen-share", type=float, default=1.0, help="tune's share of its budget spent screening")
    ap.add_argument("--objectives", default="throughput,p99,energy")
    ap.add_argument("--sessions", type=int, default=5, help="side by side: sessions per front configuration")
    ap.add_argument("--side-window-s", type=float, default=3.0, help="side by side: timed seconds of every window")
    ap.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    from infermeter.sweep import run_sweep
    from infermeter.tune.front import pooled
    from infermeter.tune.study import Tuner, run_tune
    from infermeter.tune.trials import Measurement, run_trials, session_key

    out = Path(args.out or tempfile.mkdtemp(prefix="tune-quality-"))
    base = dict(model=args.model, engines=args.engines.split(","), device="cpu", quiet=True,
                batch_sizes=[int(b) for b in args.batch_sizes.split(",")], idle_time_s=0.0,
                input_shapes=[[[1, args.size, args.size, 3]]] if args.model == "mobilenet_v3_large" else None,
                **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    opts = TuneOptions(objectives=parse_objectives(args.objectives), screen_time_s=args.screen_time_s,
                       screen_share=args.screen_share)

    # 1. every engine once: artifacts (ONNX, IR, compiled plans) built before either search is timed
    run_sweep(RunConfig(**base, results_dir=str(out / "warm"), iterations=2, warmup=1, min_iterations=1))

    # 2. the grid
    grid_cfg = RunConfig(**base, results_dir=str(out / "grid"))
    grid_tuner = Tuner(grid_cfg, opts)
    space, objectives = grid_tuner.space, grid_tuner.objectives
    print(f"sub-space: {space.size()} points: " + "; ".join(
        f"{e.engine} {'/'.join(e.precisions)} " + " ".join(f"{k}={'/'.join(map(str, v))}" for k, v in e.knobs.items())
        for e in space.engines.values()) + f"; batch sizes {'/'.join(map(str, space.batch_sizes))}")
    sessions: dict[tuple, list] = {}
    for i, point in enumerate(space.points()):
        sessions.setdefault(session_key(point), []).append((i, point))
    t0 = time.monotonic()
    grid: list[Measurement] = []
    for trials in sessions.values():
        grid += run_trials(grid_tuner.base, trials, "grid", grid_tuner.prepared, screen_s=args.screen_time_s,
                           target_ci=opts.confirm_ci, max_time_s=grid_cfg.max_time_s)
    grid_s = time.monotonic() - t0

    # 3. tune with a fraction of the grid's time
    tune_cfg = RunConfig(**base, results_dir=str(out / "tune"))
    # the tuner may overrun its budget by the session in progress: leave room for the longest grid session
    opts.budget_s = max(args.fraction * grid_s - max(m.session_s for m in grid), args.screen_time_s)
    outcome = run_tune(tune_cfg, opts)

    # 4. the comparison, on one reference point
    grid_pts = _points(grid, objectives, opts.constraints)
    tune_pts = outcome.history[-1][1] if outcome.history else []
    ref = reference_point(grid_pts + tune_pts, objectives)
    hv_grid, hv_tune = hypervolume(grid_pts, objectives, ref), hypervolume(tune_pts, objectives, ref)
    grid_front = front(grid_pts, objectives)
    tuned = {point_key(p.config): p for p in tune_pts if p.feasible}
    found = [g for g in grid_front if point_key(g.config) in tuned
             or any(_within_ci(t, g, objectives) for t in tuned.values())]
    # the search apart from re-measurement noise: the configurations the tuner measured, valued by the grid's
    # own measurement of each (this VM runs one configuration up to 25% apart a minute later)
    grid_by_key = {point_key(g.config): g for g in grid_pts}
    same = [(t, grid_by_key[k]) for k, t in tuned.items() if k in grid_by_key]
    hv_configs = hypervolume([g for _, g in same], objectives, ref)
    configs_found = [g for g in grid_front if point_key(g.config) in tuned]
    spread = sorted(abs(t.values[0] / g.values[0] - 1) for t, g in same if g.values[0])

    # 5. side by side: both fronts' configurations re-measured in one pass, outside either search's time
    tune_front = front(tune_pts, objectives)
    configs = {point_key(p.config): p.config for p in grid_front + tune_front}
    keys = list(configs)
    index = {k: i for i, k in enumerate(keys)}
    by_session: dict[tuple, list] = {}
    for i, k in enumerate(keys):
        by_session.setdefault(session_key(configs[k]), []).append((i, configs[k]))
    order, side_rows = list(by_session.values()), {i: [] for i in range(len(keys))}
    side_base = RunConfig.from_dict({**grid_tuner.base.to_dict(), "results_dir": str(out / "side_by_side")})
    t1 = time.monotonic()
    for r in range(1, args.sessions + 1):
        for trials in (order if r % 2 else order[::-1]):  # reversed every other round: drift falls on all alike
            for m in run_trials(side_base, trials, "screen", grid_tuner.prepared, session=r,
                                screen_s=args.side_window_s, target_ci=opts.confirm_ci, max_time_s=args.side_window_s):
                side_rows[m.trial].append(m.row)
    side_s = time.monotonic() - t1
    side = {k: measured_point(i, "confirm", configs[k], pooled(side_rows[i], objectives), objectives,
                              opts.constraints) for i, k in enumerate(keys)}
    side_grid = [side[point_key(p.config)] for p in grid_front]
    side_tune = [side[point_key(p.config)] for p in tune_front]
    hv_side_grid, hv_side_tune = hypervolume(side_grid, objectives, ref), hypervolume(side_tune, objectives, ref)

    def in_round(members: list[Point], r: int) -> list[Point]:
        """The members as measured in round r alone."""
        out = []
        for p in members:
            i = index[point_key(p.config)]
            out.append(measured_point(i, "screen", p.config, side_rows[i][r], objectives, opts.constraints))
        return out

    per_round = []  # each round's own ratio: both fronts measured within the same minute or two
    for r in range(args.sessions):
        g = hypervolume(in_round(grid_front, r), objectives, ref)
        t = hypervolume(in_round(tune_front, r), objectives, ref)
        per_round.append(t / g if g else None)
    # how the grid front's screening compares with its re-measurement (above 1: the front kept lucky windows)
    luck = sorted(g.values[0] / side[point_key(g.config)].values[0] for g in grid_front
                  if side[point_key(g.config)].values[0])
    result = {
        "model": args.model, "input_size": args.size, "objectives": [o.name for o in objectives],
        "notes": grid_tuner.notes, "space_size": space.size(), "grid_points": len(grid_pts),
        "grid_sessions": len(sessions), "grid_s": grid_s,
        "tune_budget_s": opts.budget_s, "tune_spent_s": outcome.spent_s, "tune_trials": len(tune_pts),
        "time_ratio": outcome.spent_s / grid_s, "hypervolume_grid": hv_grid, "hypervolume_tune": hv_tune,
        "hypervolume_ratio": hv_tune / hv_grid if hv_grid else None,
        "grid_front": len(grid_front), "grid_front_found": len(found),
        "grid_front_configs_measured": len(configs_found),
        "hypervolume_tune_configs_at_grid_values": hv_configs,
        "hypervolume_ratio_configs": hv_configs / hv_grid if hv_grid else None,
        "remeasured_throughput_rel_diff_median": spread[len(spread) // 2] if spread else None,
        "remeasured_throughput_rel_diff_max": spread[-1] if spread else None,
        "side_by_side": {
            "sessions": args.sessions, "seconds": side_s, "configurations": len(keys),
            "hypervolume_grid": hv_side_grid, "hypervolume_tune": hv_side_tune,
            "hypervolume_ratio": hv_side_tune / hv_side_grid if hv_side_grid else None,
            "hypervolume_ratio_per_round": per_round, "window_s": args.side_window_s,
            "grid_front_screened_over_remeasured_median": luck[len(luck) // 2] if luck else None,
            "points": [{"config": p.config, "on_grid_front": any(point_key(g.config) == k for g in grid_front),
                        "on_tune_front": any(point_key(t.config) == k for t in tune_front),
                        **{o.column: v for o, v in zip(objectives, p.values, strict=True)}, "ci95_rel": p.ci_rel,
                        "sessions": len(side_rows[p.trial])} for k, p in side.items()],
        },
        "reference_point": ref.point.tolist(), "results": str(out),
    }
    (out / "tune_quality.json").write_text(json.dumps(result, indent=2))
    print(f"grid: {len(grid_pts)} points in {grid_s:.0f} s, front of {len(grid_front)}")
    print(f"tune: {len(tune_pts)} trials in {outcome.spent_s:.0f} s (budget {opts.budget_s:.0f} s)")
    print(f"hypervolume tune/grid, both fronts re-measured side by side ({len(keys)} configurations x "
          f"{args.sessions} sessions, {side_s:.0f} s): {hv_side_tune:.4f} / {hv_side_grid:.4f} = "
          f"{result['side_by_side']['hypervolume_ratio']:.3f}  (goal >= 0.95)")
    print("  each round's own: " + ", ".join(f"{x:.3f}" if x is not None else "n/a" for x in per_round))
    print(f"  as each search screened its points: {hv_tune:.4f} / {hv_grid:.4f} = {result['hypervolume_ratio']:.3f}")
    if luck:
        print(f"  the grid front's screened throughput over its re-measurement: {luck[len(luck) // 2]:.3f} (median)")
    print(f"  the tuner's configurations at the grid's values: {hv_configs:.4f} / {hv_grid:.4f} = "
          f"{result['hypervolume_ratio_configs']:.3f}  (the search apart from re-measurement noise)")
    if spread:
        print(f"  the same configuration, tuner against grid: throughput differs by {100 * spread[len(spread) // 2]:.1f}% "
              f"(median) and {100 * spread[-1]:.1f}% (max) over {len(spread)} configurations")
    print(f"time tune/grid: {result['time_ratio']:.3f}  (goal <= 0.25)")
    print(f"grid-front points the tuner found (same config or within CI): {len(found)} of {len(grid_front)}; "
          f"configurations measured: {len(configs_found)} of {len(grid_front)}")
    print(f"details: {out / 'tune_quality.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

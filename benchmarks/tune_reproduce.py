"""Does best.yaml reproduce the point `infermeter tune` picked? Runs `infermeter run --config best.yaml` as a
user would, then compares its throughput with the picked trial's, each with its own 95% interval.

    python benchmarks/tune_reproduce.py TUNE_FOLDER [--repeats 1] [--out DIR]

TUNE_FOLDER holds best.yaml, tune_points.csv and tune.json (`<results>/<model>/<device>/`). The verdict is
"within CI" when every run's throughput lies inside the picked trial's interval (a confirmed trial's spans
its separate sessions: see docs/tune.md); whether the two intervals overlap is reported beside it. The
ratio and both intervals are printed and written to tune_reproduce.json in TUNE_FOLDER.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from infermeter.results.writer import read_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--repeats", type=int, default=1, help="runs of best.yaml, one after another")
    ap.add_argument("--out", default=None, help="results folder of the runs (default: a temporary one)")
    args = ap.parse_args()

    folder = args.folder
    summary = json.loads((folder / "tune.json").read_text())
    points = pd.read_csv(folder / "tune_points.csv")
    picked = points[points["trial"] == summary["picked_trial"]]
    if picked.empty:
        print(f"{folder}: no picked trial in tune_points.csv", file=sys.stderr)
        return 2
    picked = picked.iloc[0]
    want, want_ci = float(picked["throughput_items_s"]), float(picked["ci95_rel"])
    sessions = int(picked["sessions"]) if pd.notna(picked.get("sessions")) else 1  # older tunes: no column
    out = Path(args.out or tempfile.mkdtemp(prefix="tune-reproduce-"))
    runs = []
    for i in range(args.repeats):
        res = subprocess.run([sys.executable, "-m", "infermeter", "run", "--config", str(folder / "best.yaml"),
                              "--results-dir", str(out / f"run{i}")], capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return res.returncode
        (row,) = read_results(next((out / f"run{i}").glob("*/*/results.csv")))
        got, got_ci = float(row["throughput_items_s"]), float(row["ci95_rel"])
        inside = abs(got - want) <= want * want_ci
        overlap = abs(got - want) <= want * want_ci + got * got_ci
        runs.append({"throughput_items_s": got, "ci95_rel": got_ci, "ratio": got / want,
                     "inside_picked_ci": inside, "intervals_overlap": overlap, "stop_reason": row["stop_reason"],
                     "latency_ms_p99": float(row["latency_ms_p99"])})
        print(f"run {i}: {got:.1f} items/s ±{100 * got_ci:.1f}% against the picked trial's {want:.1f} ±{100 * want_ci:.1f}%"
              f" ({picked['stage']}, {sessions} session{'s' if sessions > 1 else ''}): ratio {got / want:.3f}; "
              f"{'inside its CI' if inside else 'intervals overlap' if overlap else 'OUTSIDE both intervals'}")
    result = {"picked_trial": int(picked["trial"]), "picked_stage": picked["stage"], "config": picked["config"],
              "picked_sessions": sessions, "picked_throughput_items_s": want, "picked_ci95_rel": want_ci,
              "runs": runs, "within_ci": all(r["inside_picked_ci"] for r in runs),
              "intervals_overlap": all(r["intervals_overlap"] for r in runs), "results": str(out)}
    (folder / "tune_reproduce.json").write_text(json.dumps(result, indent=2))
    print(f"within CI: {result['within_ci']}  (details: {folder / 'tune_reproduce.json'})")
    return 0 if result["within_ci"] else 1


if __name__ == "__main__":
    sys.exit(main())

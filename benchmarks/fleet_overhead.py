"""What does running through Ray cost? The same sweep as `infermeter run` and as `infermeter fleet
--address local` (a one-node Ray cluster on this machine), side by side.

    python benchmarks/fleet_overhead.py [--onnx PATH] [--batch-sizes 1,8] [--seconds 2] [--rounds 2]
                                        [--engines onnxruntime]

For each cell: the fleet's throughput / the local run's throughput (median over rounds; goal >= 0.98:
the task runs the ordinary sweep in its own worker processes, so the measured region is the same).
Start-up overhead: the fleet command's wall time minus the local command's (Ray start, scheduling,
streaming rows back), in seconds. A third side, the local run while an idle one-node Ray cluster is up,
tells the fleet's way of running a sweep apart from what Ray's daemons do to the machine itself (on a
busy VM they changed the local run's throughput as much as the fleet's). Rounds alternate A-B / B-A so slow drift falls on both sides. The model
defaults to a small MLP built here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_mlp(path: Path, features: int = 256, hidden: int = 1024, classes: int = 10, seed: int = 0) -> None:
    """Gemm-ReLU-Gemm with seeded weights and a dynamic batch: enough work per item to time steadily."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / shape[-1] ** 0.5).astype(np.float32), name)

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        [w("w1", features, hidden), w("b1", hidden), w("w2", hidden, classes), w("b2", classes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def sweep(kind: str, model: Path, results: Path, cache: Path, args) -> tuple[float, dict[str, float]]:
    """Run one command; (wall seconds, throughput by cell id)."""
    from infermeter.results.writer import read_results

    cmd = [sys.executable, "-m", "infermeter", "fleet" if kind == "fleet" else "run", str(model), "--engines", args.engines, "--device", "cpu",
           "--batch-sizes", args.batch_sizes, "--time", str(args.seconds), "--warmup-time", "0.5",
           "--idle-time", "0", "--results-dir", str(results), "--cache-dir", str(cache), "--quiet"]
    if kind == "fleet":
        cmd += ["--address", "local", "--no-report"]
    if kind == "run+ray":  # the local run again, while an idle one-node Ray cluster is up on this machine
        import logging

        import ray

        ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR)
    t0 = time.perf_counter()
    # a session of its own for both: Ray's workers run in sessions of their own, and with the kernel's
    # autogroup scheduling a session's share of a busy CPU does not depend on how many processes it holds
    res = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True)
    wall = time.perf_counter() - t0
    if kind == "run+ray":
        ray.shutdown()
    if res.returncode != 0:
        sys.exit(f"{kind} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    rows = [r for p in results.rglob("results.csv") for r in read_results(p)]
    return wall, {r["cell_id"]: float(r["throughput_items_s"]) for r in rows if r["status"] == "ok"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", type=Path, help="model (default: a small MLP built here)")
    p.add_argument("--engines", default="onnxruntime")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        sys.exit('needs Ray: pip install -e ".[fleet]"')
    with tempfile.TemporaryDirectory(prefix="fleet-overhead-") as tmp:
        tmp = Path(tmp)
        model = args.onnx or tmp / "mlp.onnx"
        if not args.onnx:
            build_mlp(model)
        cache = tmp / "cache"
        sweep("run", model, tmp / "warm", cache, args)  # artifacts built once, outside the comparison
        kinds = ("run", "fleet", "run+ray")
        walls: dict[str, list[float]] = {k: [] for k in kinds}
        ratios: dict[str, list[float]] = {}
        background: dict[str, list[float]] = {}
        for i in range(args.rounds):
            tput = {}
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                wall, tput[kind] = sweep(kind, model, tmp / f"{kind.replace('+', '-')}-{i}", cache, args)
                walls[kind].append(wall)
            for cell, local in tput["run"].items():
                if cell in tput["fleet"]:
                    ratios.setdefault(cell, []).append(tput["fleet"][cell] / local)
                if cell in tput["run+ray"]:
                    background.setdefault(cell, []).append(tput["run+ray"][cell] / local)
    print(f"{'cell':40} fleet/local  local-with-Ray-up/local  (throughput, median of {args.rounds})")
    for cell, rs in sorted(ratios.items()):
        print(f"{cell:40} {statistics.median(rs):11.3f}  {statistics.median(background.get(cell, [float('nan')])):.3f}")
    overall = statistics.median([statistics.median(rs) for rs in ratios.values()])
    overhead = statistics.median(walls["fleet"]) - statistics.median(walls["run"])
    print(f"median per-cell ratio: {overall:.3f} (goal >= 0.98)")
    print(f"wall: local {statistics.median(walls['run']):.1f} s, fleet {statistics.median(walls['fleet']):.1f} s; "
          f"start-up overhead {overhead:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

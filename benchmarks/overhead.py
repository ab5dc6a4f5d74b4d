"""What does the harness itself cost? infermeter's offline throughput for onnxruntime on the CPU at
batch 8 against a bare loop on the same session and the same inputs, run the way the engine chose for
this batch size (`session.run`, or IO binding with inputs bound once and outputs pre-allocated), side by side.

    python benchmarks/overhead.py [--model mobilenet_v3_large] [--size 224] [--batch 8] [--seconds 2] [--rounds 5]

The model's artifacts are built first with `infermeter prepare` (in its own process: TensorFlow never
shares a process with the engines). Rounds alternate A-B / B-A so drift falls on both sides; the
median ratio is printed. Goal: >= 0.98.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def bare_step(engine, staged):
    """step(i): one call the way the engine chose (its run_api), through ONNX Runtime's API alone."""
    import onnxruntime as ort

    way = engine.way
    if way.api == "session.run":
        return lambda i: way.session.run(engine.output_names, staged[i % len(staged)])
    bindings = []
    for feed in staged:
        binding = way.session.io_binding()
        for name, arr in feed.items():
            binding.bind_cpu_input(name, arr)
        for name, (shape, dtype) in zip(engine.output_names, way.out_specs):
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype))
        bindings.append(binding)
    return lambda i: way.session.run_with_iobinding(bindings[i % len(bindings)])


def bare_loop(step, batch: int, seconds: float) -> float:
    """items/s of back-to-back step(i) calls, nothing else in the loop."""
    n = 0
    t0 = time.perf_counter()
    while (time.perf_counter() - t0) < seconds:
        step(n)
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_large")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    from infermeter.artifacts import ArtifactStore
    from infermeter.engines import EngineContext, get_engine
    from infermeter.models.base import ModelOptions
    from infermeter.models.registry import resolve_model
    from infermeter.scenarios import Budget, Load, run_scenario

    cache = args.cache_dir or tempfile.mkdtemp(prefix="infermeter-overhead-")
    shape = f"[1,{args.size},{args.size},3]"
    subprocess.run([sys.executable, "-m", "infermeter", "prepare", args.model, "--input-shapes", shape,
                    "--cache-dir", cache], check=True, stdout=subprocess.DEVNULL)
    model = resolve_model(args.model, ModelOptions(input_shapes=[[1, args.size, args.size, 3]]))
    store = ArtifactStore(cache, model.key())
    engine = get_engine("onnxruntime")(EngineContext(device="cpu"))
    engine.prepare(model, store, "fp32", args.batch)
    pool = model.sample_pool(64)
    staged = [engine.stage(model.make_batch(pool, args.batch, i)) for i in range(4)]
    load = Load(clients=engine.make_clients(1), inputs=lambda i: staged[i % len(staged)], batch_size=args.batch)
    budget = Budget(warmup=5, time_s=args.seconds, min_iterations=1)

    step = bare_step(engine, staged)
    bare_loop(step, args.batch, 1.0)  # warm both paths once
    ratios = []
    for r in range(args.rounds):
        order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
        got = {}
        for which in order:
            if which == "harness":
                got[which] = run_scenario("offline", load, budget).throughput_items_s
            else:
                got[which] = bare_loop(step, args.batch, args.seconds)
        ratios.append(got["harness"] / got["bare"])
        print(f"round {r + 1}: infermeter {got['harness']:.1f} items/s, bare {engine.way.name} {got['bare']:.1f} items/s, "
              f"ratio {ratios[-1]:.3f}")
    med = statistics.median(ratios)
    print(f"onnxruntime cpu {args.model} {args.size}x{args.size} batch {args.batch}: median ratio {med:.3f} "
          f"(goal >= 0.98) -> {'met' if med >= 0.98 else 'NOT met'}")
    return 0 if med >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())

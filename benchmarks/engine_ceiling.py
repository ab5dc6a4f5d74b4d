"""How close does infermeter's offline throughput come to what each CPU engine reaches on its own?

    python benchmarks/engine_ceiling.py [--model mobilenet_v3_large] [--input-shape "[1,224,224,3]"]
                                        [--tiny | --onnx PATH] [--batch 8] [--seconds 1] [--rounds 7]
                                        [--threads N] [--engines onnxruntime,openvino] [--cache-dir DIR]

For ONNX Runtime and OpenVINO on the CPU, on one ONNX model (default: infermeter's MobileNetV3-Large
224 export, built by `infermeter prepare` into the artifact store; --tiny: a small conv net built here
with onnx.helper; --onnx for another file), in one process and side by side:

- infermeter: Engine.prepare + offline_clients() + run_scenario("offline", ...), as a sweep runs it;
- bare loops through the engine's own API on the same inputs, configured as infermeter configures it
  ("same config": what the harness itself costs; for ONNX Runtime the way its probe chose), plus the
  engine's other ways to run (ONNX Runtime session.run and IO binding, batch fixed and dynamic; OpenVINO
  start_async/wait and an AsyncInferQueue of several requests with the THROUGHPUT
  hint). The best of them is the ceiling.

Runs alternate A-B / B-A so slow drift falls on both sides. Prints, per engine, the median of the ratios
infermeter / same-config loop and infermeter / ceiling (goal: >= 0.98).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_STAGED = 4  # distinct batches every runner rotates through


def build_tiny_onnx(path: Path, image_hw: int = 64, seed: int = 0) -> None:
    """conv-BN-ReLU x2, global pool, dense head to 10 classes; dynamic batch; seeded weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = []

    def weight(name, *shape, scale=0.1, offset=0.0):
        inits.append(numpy_helper.from_array((offset + rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    nodes = []
    x = "x"
    for i, (cin, cout, stride) in enumerate([(3, 16, 1), (16, 32, 2)]):
        nodes += [
            helper.make_node("Conv", [x, weight(f"w{i}", cout, cin, 3, 3)], [f"c{i}"], pads=[1, 1, 1, 1],
                             strides=[stride, stride]),
            helper.make_node("BatchNormalization", [f"c{i}", weight(f"g{i}", cout, offset=1.0),
                                                    weight(f"b{i}", cout), weight(f"m{i}", cout),
                                                    weight(f"v{i}", cout, scale=0.05, offset=1.0)], [f"n{i}"]),
            helper.make_node("Relu", [f"n{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", weight("wd", 10, 32), weight("bd", 10)], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "ceiling_convnet",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, image_hw, image_hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def timed_loop(step, seconds: float, batch: int, warmup: int = 10) -> float:
    """items/s of back-to-back step(i) calls for at least `seconds`, after `warmup` unmeasured calls."""
    for i in range(warmup):
        step(i)
    calls = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        step(calls)
        calls += 1
        t1 = time.perf_counter()
        if t1 >= deadline:
            return calls * batch / (t1 - t0)


# ---- infermeter -----------------------------------------------------------------------------------------

def infermeter_runner(engine_name: str, model, store, batch: int, threads: int):
    from infermeter.engines import EngineContext, get_engine
    from infermeter.scenarios import Budget, Load, run_scenario

    engine = get_engine(engine_name)(EngineContext("cpu", num_threads=threads))
    engine.prepare(model, store, "fp32", batch)
    engine.activate(batch)  # compiled for this exact shape, as a sweep's cell runs it
    pool = model.sample_pool(N_STAGED * batch)
    staged = [engine.stage(model.make_batch(pool, batch, i)) for i in range(N_STAGED)]
    clients = engine.offline_clients()
    # each client's first call on this thread, one after another, as a sweep's check makes the first call:
    # OpenVINO's Python binding deadlocked here when several threads made their very first call at once
    for client in clients:
        client(staged[0])

    def run(seconds: float) -> float:
        load = Load(clients=clients, inputs=lambda i: staged[i % N_STAGED], batch_size=batch)
        return run_scenario("offline", load, Budget(warmup=10, time_s=seconds)).throughput_items_s

    return engine, run


# ---- bare loops -----------------------------------------------------------------------------------------

def bare_ort_session(onnx_path: str, batch: int, threads: int, fixed: bool):
    """An ONNX Runtime CPU session with infermeter's settings; fixed: the batch dimension overridden to
    `batch` (infermeter's static shapes), else as exported."""
    import onnxruntime as ort

    from infermeter.engines.onnxruntime_engine import symbolic_batch_dims

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if fixed:
        for dim in symbolic_batch_dims(onnx_path):
            opts.add_free_dimension_override_by_name(dim, batch)
    return ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])


def bare_ort_loops(onnx_path: str, feeds: list[dict], batch: int, threads: int) -> dict:
    """name -> step(i): ONNX Runtime's Python ways to run, named as the engine names them (run_api):
    session.run and IO binding (inputs bound once per feed, outputs pre-allocated), each on a session
    with the batch dimension fixed by a free-dimension override and on one with it as exported."""
    import onnxruntime as ort

    steps = {}
    for fixed in (True, False):
        session = bare_ort_session(onnx_path, batch, threads, fixed)
        outputs = [o.name for o in session.get_outputs()]
        bindings = []
        for feed in feeds:
            binding = session.io_binding()
            for name, arr in feed.items():
                binding.bind_cpu_input(name, arr)
            for o in session.get_outputs():
                shape = [batch if not isinstance(d, int) else d for d in o.shape]
                binding.bind_ortvalue_output(o.name, ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32))
            bindings.append(binding)
        tag = "fixed batch" if fixed else "dynamic batch"
        steps[f"session.run, {tag}"] = lambda i, s=session, o=outputs: s.run(o, feeds[i % len(feeds)])
        steps[f"io binding, {tag}"] = lambda i, s=session, b=bindings: s.run_with_iobinding(b[i % len(b)])
    return steps


def onnxruntime_bare(onnx_path: str, feeds: list[dict], batch: int, threads: int, chosen: str) -> dict:
    """name -> run(seconds) -> items/s; "same config" is the way infermeter's probe chose (`chosen`)."""
    return {(f"same config: {name}" if name == chosen else name):
            (lambda seconds, step=step: timed_loop(step, seconds, batch))
            for name, step in bare_ort_loops(onnx_path, feeds, batch, threads).items()}


def openvino_bare(ir_xml: str, feeds: list[dict], batch: int, threads: int, chosen: str) -> dict:
    """name -> run(seconds) -> items/s; "same config" is the hint infermeter's offline probe chose."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(ir_xml)
    model.reshape({port: ov.PartialShape([ov.Dimension(batch), *list(port.get_partial_shape())[1:]])
                   for port in model.inputs})  # the exact shape, as infermeter's static shapes compile it
    base = {props.inference_num_threads: threads, hints.inference_precision: ov.Type.f32}
    latency = core.compile_model(model, "CPU", {**base, hints.performance_mode: hints.PerformanceMode.LATENCY})
    throughput = core.compile_model(model, "CPU", {**base, hints.performance_mode: hints.PerformanceMode.THROUGHPUT})
    request = latency.create_infer_request()

    def sync(seconds):
        return timed_loop(lambda i: request.infer(feeds[i % N_STAGED], share_inputs=True), seconds, batch)

    def start_wait(seconds):
        def step(i):
            request.start_async(feeds[i % N_STAGED], share_inputs=True)
            request.wait()
        return timed_loop(step, seconds, batch)

    def async_queue(seconds):
        n_requests = throughput.get_property(props.optimal_number_of_infer_requests)
        queue = ov.AsyncInferQueue(throughput, n_requests)
        done = [0]
        queue.set_callback(lambda req, userdata: done.__setitem__(0, done[0] + 1))
        for i in range(2 * n_requests):  # warm every request
            queue.start_async(feeds[i % N_STAGED], share_inputs=True)
        queue.wait_all()
        done[0] = 0
        i = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            queue.start_async(feeds[i % N_STAGED], share_inputs=True)  # blocks while every request is busy
            i += 1
        queue.wait_all()
        t1 = time.perf_counter()
        return done[0] * batch / (t1 - t0)

    same = "same config: " if chosen == "LATENCY" else ""
    queue_same = "same config: " if chosen == "THROUGHPUT" else ""
    return {f"{same}start_async/wait (LATENCY)": start_wait, "request.infer (LATENCY)": sync,
            f"{queue_same}AsyncInferQueue (THROUGHPUT)": async_queue}


# ---- comparison -----------------------------------------------------------------------------------------

def compare_engine(name: str, model, store, batch: int, threads: int, seconds: float, rounds: int) -> dict:
    engine, harness = infermeter_runner(name, model, store, batch, threads)
    pool = model.sample_pool(N_STAGED * batch)
    feeds = [model.make_batch(pool, batch, i) for i in range(N_STAGED)]
    if name == "onnxruntime":
        bare = onnxruntime_bare(str(store.get("model.onnx")), feeds, batch, threads,
                                engine.info["run_api"][str(batch)]["chosen"])
    else:
        bare = openvino_bare(engine.info["ir"] + "/model.xml", feeds, batch, threads,
                             engine.info["offline_probe"][str(batch)]["chosen"])
    same_key = next(k for k in bare if k.startswith("same config"))
    ratios_same, ratios_best = [], []
    best_by_variant: dict[str, list[float]] = {k: [] for k in bare}
    harness_runs = []
    for r in range(rounds):
        order = ["harness", *bare] if r % 2 == 0 else [*bare, "harness"]
        got = {}
        for key in order:
            got[key] = harness(seconds) if key == "harness" else bare[key](seconds)
        harness_runs.append(got["harness"])
        for key in bare:
            best_by_variant[key].append(got[key])
        ratios_same.append(got["harness"] / got[same_key])
        ratios_best.append(got["harness"] / max(got[k] for k in bare))
    engine.close()
    return {"engine": name, "infermeter_items_s": statistics.median(harness_runs),
            "variants": {k: statistics.median(v) for k, v in best_by_variant.items()},
            "ratio_same_config": statistics.median(ratios_same), "ratio_ceiling": statistics.median(ratios_best),
            "settings": engine.info}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_large", help="a model infermeter knows (default)")
    ap.add_argument("--input-shape", default=None, help='e.g. "[1,64,64,3]" (default: the model\'s own)')
    ap.add_argument("--tiny", action="store_true", help="a small conv net built here instead of --model")
    ap.add_argument("--onnx", help="an ONNX file instead of --model")
    ap.add_argument("--cache-dir", default=os.environ.get("INFERMETER_CACHE_DIR",
                                                          os.path.join(os.path.expanduser("~"), ".cache", "infermeter")))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="measured seconds per run")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median ratio is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--engines", default="onnxruntime,openvino")
    ap.add_argument("--goal", type=float, default=0.98)
    args = ap.parse_args(argv)

    from infermeter.artifacts import ArtifactStore
    from infermeter.engines import get_engine
    from infermeter.models.onnx_file import OnnxFileModel

    with tempfile.TemporaryDirectory(prefix="engine_ceiling-") as tmp:
        if args.onnx or args.tiny:
            onnx_path = Path(args.onnx) if args.onnx else Path(tmp) / "ceiling_convnet.onnx"
            if not args.onnx:
                build_tiny_onnx(onnx_path)
            model = OnnxFileModel(onnx_path)
            store = ArtifactStore(Path(tmp) / "cache", model.key())
            model.build_artifacts(store, {"onnx"})
        else:  # infermeter's own export of the model, as `infermeter prepare` builds it
            from infermeter.config import RunConfig
            from infermeter.sweep import Sweep, prepare_only

            shapes = [[[int(v) for v in args.input_shape.strip("[] ").split(",")]]] if args.input_shape else None
            cfg = RunConfig(model=args.model, cache_dir=args.cache_dir, device="cpu", quiet=True,
                            input_shapes=shapes, results_dir=str(Path(tmp) / "results"))
            prepare_only(cfg)
            model = Sweep(cfg).models[0]
            store = ArtifactStore(args.cache_dir, model.key())
            onnx_path = store.get("model.onnx")
        print(f"model {model.name} {model.shape_tag()} ({onnx_path}), batch {args.batch}, {args.threads} threads, {args.rounds} rounds of "
              f"{args.seconds:g} s per runner")
        below_goal = False
        for name in args.engines.split(","):
            ok, why = get_engine(name).available()
            if not ok:
                print(f"{name}: skipped ({why})")
                continue
            res = compare_engine(name, model, store, args.batch, args.threads, args.seconds, args.rounds)
            print(f"\n{name}: infermeter offline {res['infermeter_items_s']:.1f} items/s")
            for variant, items_s in res["variants"].items():
                print(f"  bare {variant:<40s} {items_s:10.1f} items/s")
            for label, key in (("vs same-config loop (harness cost)", "ratio_same_config"),
                               ("vs best bare variant (ceiling)", "ratio_ceiling")):
                ratio = res[key]
                flag = "ok" if ratio >= args.goal else f"below goal {args.goal:g}"
                below_goal |= ratio < args.goal
                print(f"  ratio {label:<36s} {ratio:.3f}  {flag}")
    return 1 if below_goal else 0


if __name__ == "__main__":
    sys.exit(main())

"""infermeter against each engine's own benchmarking tool, side by side, on the same model file and shapes.

    python benchmarks/peer_parity.py [--model mobilenet_v3_large] [--batches 1,8] [--seconds 10]
                                     [--rounds 3] [--threads N] [--engines openvino,onnxruntime,...]
                                     [--cache-dir DIR] [--goal 1.0] [--short-of 0.97]

infermeter runs the model as a sweep does (its clean ONNX export; OpenVINO the faster of that graph and its
own TF frontend's conversion of the SavedModel). Each engine's tool gets the graph the engine's own users
would give it: benchmark_app the IR OpenVINO itself converts from the SavedModel (`ov.convert_model`, what
`ovc` does), the other tools the clean ONNX file. For every engine, precision and batch size, in
alternating rounds (A-B, then B-A, so slow drift falls on both sides):

- infermeter: the real sweep (run_sweep, a worker process per run, static shapes), offline scenario for
  throughput; single-stream at batch 1 for latency;
- the engine's own tool on the same file and shape:
  * OpenVINO: benchmark_app (ships with openvino) with -shape [B,...] -hint throughput (offline), and
    -hint latency at batch 1; its reported throughput / median latency are parsed;
  * ONNX Runtime: the best bare loop over its Python API (session.run and IO binding, with the batch
    dimension dynamic and fixed), plus onnxruntime_perf_test where one is on PATH;
  * on a GPU: trtexec --shapes for TensorRT and torch.utils.benchmark over the torch module
    (skipped, with the reason, where absent).

Precisions: fp32 everywhere; bf16 for OpenVINO where the CPU reports BF16 (benchmark_app -infer_precision
bf16, its default on AMX CPUs).

Control (--control, on for models with a torchvision twin): the same architecture from torchvision (other,
seeded weights; the same FLOPs), exported by torch.onnx (its default exporter), run by ONNX Runtime's best
bare loop and by benchmark_app on that ONNX file. The control ratio is infermeter's throughput on its own
graph over the tool's on the control graph: well below 1 means the conversion, not the engine, costs speed.

Prints a table and one ratio per engine, batch and metric: throughput infermeter / tool, latency tool /
infermeter (so >= 1.0 means infermeter is at least as fast). Goal >= 1.0; below --short-of (0.97) the
script exits 1; a control ratio below --control-short-of (0.9) too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infermeter.config import RunConfig

N_STAGED = 4


# ---- infermeter -----------------------------------------------------------------------------------------

def infermeter_run(engine: str, batch: int, scenario: str, args, results: Path, precision: str = "fp32") -> dict:
    """One real sweep of one cell; returns its row."""
    from infermeter.sweep import run_sweep

    cfg = RunConfig(model=args.model, engines=[engine], precisions=[precision], device=args.device,
                    batch_sizes=[batch], scenarios=[scenario], time_s=args.seconds, warmup_time_s=1.0,
                    num_threads=args.threads, cache_dir=args.cache_dir, results_dir=str(results), quiet=True,
                    idle_time_s=0, energy_time_s=0.5, input_shapes=args.input_shapes)
    status, sweep = run_sweep(cfg)
    row = sweep.rows[-1]
    if row["status"] != "ok":
        raise RuntimeError(f"infermeter {engine} b{batch} {scenario}: {row['status']}: {row['error']}")
    return row


# ---- the engines' own tools ----------------------------------------------------------------------------

OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def benchmark_app(model_file: str, shape: list[int], hint: str, seconds: float, precision: str = "fp32") -> dict:
    """OpenVINO's benchmark_app: {"throughput": items/s, "latency_ms": median}."""
    cmd = [sys.executable, "-c", "import sys; from openvino.tools.benchmark.main import main; sys.exit(main())",
           "-m", model_file, "-d", "CPU", "-shape", "[" + ",".join(map(str, shape)) + "]", "-hint", hint,
           "-t", str(max(1, round(seconds))), "-infer_precision", OV_PRECISION[precision]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    thr = re.search(r"Throughput:\s+([\d.]+)\s+FPS", text)
    med = re.search(r"Median:\s+([\d.]+)\s+ms", text)
    if out.returncode != 0 or not thr:
        raise RuntimeError(f"benchmark_app failed: {text.strip().splitlines()[-1] if text.strip() else out.returncode}")
    return {"throughput": float(thr.group(1)), "latency_ms": float(med.group(1)) if med else None,
            "how": f"benchmark_app -m {Path(model_file).parent.name}/{Path(model_file).name} -shape {shape} "
                   f"-hint {hint} -infer_precision {OV_PRECISION[precision]}"}


def openvino_own_ir(store, out_dir: Path) -> str:
    """The IR OpenVINO's own tools make of the model: `ov.convert_model` of the SavedModel (its TF frontend),
    saved with float32 weights; the ONNX file for a model that has no SavedModel (users hand it that)."""
    import openvino as ov

    savedmodel = store.get("savedmodel")
    if savedmodel is None:
        return str(store.get("model.onnx"))
    xml = out_dir / "ov_convert_model" / "model.xml"
    if not xml.exists():
        ov.save_model(ov.convert_model(str(savedmodel)), str(xml), compress_to_fp16=False)
    return str(xml)


# the same architecture in torchvision, for the control graph
TORCHVISION_TWINS = {"mobilenet_v3_large": "mobilenet_v3_large", "resnet50": "resnet50"}


def control_onnx(model_name: str, size: tuple[int, int], out_dir: Path) -> str | None:
    """torchvision's twin of the model (seeded weights), exported by torch.onnx's default exporter with a
    dynamic batch axis; None where the model has no twin or torchvision is missing."""
    twin = TORCHVISION_TWINS.get(model_name)
    if twin is None:
        return None
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    path = out_dir / f"control_{twin}.onnx"
    if not path.exists():
        torch.manual_seed(0)
        module = getattr(torchvision.models, twin)(weights=None).eval()
        example = torch.randn(2, 3, *size)
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=18)
    return str(path)


def onnxruntime_best_loop(onnx_path: str, feeds: list[dict], batch: int, threads: int, seconds: float) -> dict:
    """The best of ONNX Runtime's Python ways to run: session.run and IO binding (outputs pre-allocated),
    each with the batch dimension as exported and fixed by a free-dimension override."""
    from engine_ceiling import bare_ort_loops, timed_loop

    results = {name: timed_loop(step, seconds, batch)
               for name, step in bare_ort_loops(onnx_path, feeds, batch, threads).items()}
    best = max(results, key=results.get)
    return {"throughput": results[best], "latency_ms": batch * 1e3 / results[best], "latency_stat": "mean",
            "how": f"bare loop: {best}", "variants": results}


def onnxruntime_perf_test(onnx_path: str, batch: int, threads: int, seconds: float) -> dict:
    exe = shutil.which("onnxruntime_perf_test")
    if exe is None:
        raise FileNotFoundError("onnxruntime_perf_test is not on PATH")
    from infermeter.engines.onnxruntime_engine import symbolic_batch_dims

    free = ",".join(f"{d}:{batch}" for d in symbolic_batch_dims(onnx_path))
    cmd = [exe, "-e", "cpu", "-x", str(threads), "-t", str(max(1, round(seconds))), "-I", "-S", "1"]
    if free:
        cmd += ["-f", free]
    out = subprocess.run([*cmd, onnx_path, os.devnull], capture_output=True, text=True, timeout=600)
    found = re.search(r"Number of inferences per second:\s*([\d.]+)", out.stdout)
    if not found:
        raise RuntimeError(f"onnxruntime_perf_test gave no throughput (exit {out.returncode})")
    return {"throughput": float(found.group(1)) * batch, "latency_ms": None, "how": "onnxruntime_perf_test"}


def trtexec(onnx_path: str, input_name: str, shape: list[int], seconds: float) -> dict:
    exe = shutil.which("trtexec")
    if exe is None:
        raise FileNotFoundError("trtexec is not on PATH")
    shapes = f"{input_name}:{'x'.join(map(str, shape))}"
    out = subprocess.run([exe, f"--onnx={onnx_path}", f"--shapes={shapes}", f"--duration={max(1, round(seconds))}",
                          "--noTF32"], capture_output=True, text=True, timeout=1200)
    thr = re.search(r"Throughput:\s*([\d.]+)\s*qps", out.stdout)
    med = re.search(r"Latency:.*median = ([\d.]+) ms", out.stdout)
    if not thr:
        raise RuntimeError(f"trtexec gave no throughput (exit {out.returncode})")
    return {"throughput": float(thr.group(1)) * shape[0], "latency_ms": float(med.group(1)) if med else None,
            "how": f"trtexec --shapes={shapes} --noTF32"}


def torch_benchmark(model, store, batch: int, seconds: float) -> dict:
    """torch.utils.benchmark over the same module infermeter's `torch` engine runs, on the GPU."""
    import torch
    import torch.utils.benchmark as tb

    from infermeter.engines import EngineContext, get_engine

    engine = get_engine("torch")(EngineContext("cuda", io="device"))
    engine.prepare(model, store, "fp32", batch)
    args = engine.stage(model.make_batch(model.sample_pool(batch), batch, 0))
    module = engine.module

    def step():
        with torch.inference_mode():
            module(*args)
        torch.cuda.synchronize()

    m = tb.Timer(stmt="step()", globals={"step": step}).blocked_autorange(min_run_time=seconds)
    engine.close()
    return {"throughput": batch / m.median, "latency_ms": m.median * 1e3, "how": "torch.utils.benchmark, inputs resident"}


# ---- the comparison ------------------------------------------------------------------------------------

def tools_for(engine: str, args, model, store, batch: int, mode: str, feeds, precision: str = "fp32") -> dict:
    """name -> callable() -> {"throughput", "latency_ms", "how"}; the engine's own tools for this cell."""
    onnx_path = str(store.get("model.onnx"))
    shape = list(model.input_specs()[0].with_batch(batch))
    if engine == "openvino":
        own_ir = openvino_own_ir(store, Path(args.work_dir))
        return {"benchmark_app": lambda: benchmark_app(own_ir, shape, "throughput" if mode == "throughput" else
                                                       "latency", args.seconds, precision)}
    if engine == "onnxruntime":
        tools = {"bare loop (best)": lambda: onnxruntime_best_loop(onnx_path, feeds, batch, args.threads, args.seconds)}
        if shutil.which("onnxruntime_perf_test"):
            tools["onnxruntime_perf_test"] = lambda: onnxruntime_perf_test(onnx_path, batch, args.threads, args.seconds)
        return tools
    if engine == "tensorrt":
        return {"trtexec": lambda: trtexec(onnx_path, model.input_specs()[0].name, shape, args.seconds)}
    if engine == "torch":
        return {"torch.utils.benchmark": lambda: torch_benchmark(model, store, batch, args.seconds)}
    return {}


def control_tool(engine: str, control: str, batch: int, size: tuple[int, int], args):
    """The engine's own tool on the control graph (NCHW input), or None for engines without a control."""
    shape = [batch, 3, *size]
    if engine == "openvino":
        return lambda: benchmark_app(control, shape, "throughput", args.seconds)
    if engine == "onnxruntime":
        import numpy as np

        rng = np.random.default_rng(0)
        feeds = [{"images": rng.standard_normal(shape).astype(np.float32)} for _ in range(N_STAGED)]
        return lambda: onnxruntime_best_loop(control, feeds, batch, args.threads, args.seconds)
    return None


def bf16_available() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def missing_tool(engine: str, device: str) -> str | None:
    """Why the engine's own tool cannot run here, or None."""
    from infermeter.engines import get_engine

    ok, why = get_engine(engine).available()
    if not ok:
        return why
    if engine == "tensorrt" and shutil.which("trtexec") is None:
        return "trtexec is not on PATH"
    if engine in ("tensorrt", "torch") and device != "cuda":
        return "its peer tool is compared on a GPU only"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v3_large")
    ap.add_argument("--input-shape", default=None, help='e.g. "[1,64,64,3]" (default: the model\'s own)')
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median ratio is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--engines", default="openvino,onnxruntime,tensorrt,torch")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--cache-dir", default=os.environ.get("INFERMETER_CACHE_DIR",
                                                          os.path.join(os.path.expanduser("~"), ".cache", "infermeter")))
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="bf16 applies to OpenVINO on a CPU that reports BF16; other engines run fp32")
    ap.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the torchvision twin exported by torch.onnx (the control graph)")
    ap.add_argument("--goal", type=float, default=1.0)
    ap.add_argument("--short-of", type=float, default=0.97)
    ap.add_argument("--control-short-of", type=float, default=0.9)
    args = ap.parse_args(argv)
    args.input_shapes = [[[int(v) for v in args.input_shape.strip("[] ").split(",")]]] if args.input_shape else None
    batches = [int(b) for b in args.batches.split(",")]

    from infermeter.artifacts import ArtifactStore
    from infermeter.sweep import Sweep, prepare_only

    prep_cfg = RunConfig(model=args.model, cache_dir=args.cache_dir, device=args.device, quiet=True,
                         input_shapes=args.input_shapes, results_dir=tempfile.mkdtemp(prefix="peer_parity-prep-"))
    prepare_only(prep_cfg)
    model = Sweep(prep_cfg).models[0]
    store = ArtifactStore(args.cache_dir, model.key())
    print(f"model {model.name} {model.shape_tag()} ({store.get('model.onnx')}), batches {batches}, "
          f"{args.threads} threads, {args.rounds} rounds of {args.seconds:g} s per side")
    load_before = os.getloadavg()[0]

    rows, controls, short = [], [], False
    precisions = [p for p in args.precisions.split(",") if p]
    with tempfile.TemporaryDirectory(prefix="peer_parity-") as tmp:
        args.work_dir = tmp
        size = tuple(model.input_specs()[0].shape[1:3])
        control = control_onnx(model.name, size, Path(tmp)) if args.control else None
        if args.control and control is None:
            print(f"control: skipped ({model.name} has no torchvision twin here)")
        for engine in args.engines.split(","):
            why = missing_tool(engine, args.device)
            if why:
                print(f"{engine}: skipped ({why})")
                continue
            for precision in precisions:
                if precision != "fp32" and (engine != "openvino" or args.device != "cpu" or not bf16_available()):
                    if engine == "openvino":
                        print(f"{engine} {precision}: skipped (this CPU does not report {precision.upper()})")
                    continue
                for batch in batches:
                    pool = model.sample_pool(N_STAGED * batch)
                    feeds = [model.make_batch(pool, batch, i) for i in range(N_STAGED)]
                    modes = [("throughput", "offline")] + ([("latency", "single-stream")] if batch == 1 else [])
                    for mode, scenario in modes:
                        tools = tools_for(engine, args, model, store, batch, mode, feeds, precision)
                        ctl = (control_tool(engine, control, batch, size, args)
                               if control and mode == "throughput" and precision == "fp32" else None)
                        for tool_name, tool in tools.items():
                            ratios, ours, theirs, ctl_values, how = [], [], [], [], ""
                            for r in range(args.rounds):
                                sides = ["infermeter", "tool"] + (["control"] if ctl else [])
                                order = sides if r % 2 == 0 else sides[::-1]
                                got = {}
                                for side in order:
                                    if side == "infermeter":
                                        got[side] = infermeter_run(engine, batch, scenario, args, Path(tmp) / f"r{r}",
                                                                   precision)
                                    else:
                                        got[side] = tool() if side == "tool" else ctl()
                                row, peer = got["infermeter"], got["tool"]
                                how = peer["how"]
                                if mode == "throughput":
                                    ours.append(row["throughput_items_s"])
                                    theirs.append(peer["throughput"])
                                    ratios.append(ours[-1] / theirs[-1])
                                    if ctl:
                                        ctl_values.append(got["control"]["throughput"])
                                else:
                                    stat = peer.get("latency_stat", "median")  # compare like with like
                                    ours.append(row["latency_ms_mean" if stat == "mean" else "latency_ms_p50"])
                                    theirs.append(peer["latency_ms"])
                                    ratios.append(theirs[-1] / ours[-1])
                            ratio = statistics.median(ratios)
                            short |= ratio < args.short_of
                            rows.append((f"{engine} {precision}", batch, mode, statistics.median(ours), tool_name,
                                         statistics.median(theirs), ratio, how))
                            if ctl_values:
                                c_ratio = statistics.median(o / c for o, c in zip(ours, ctl_values))
                                short |= c_ratio < args.control_short_of
                                controls.append((engine, batch, statistics.median(ours), statistics.median(ctl_values),
                                                 c_ratio, row.get("graph_source") or "", row.get("graph_nodes")))

    unit = {"throughput": "items/s", "latency": "ms, median (mean against a bare loop)"}
    print(f"\n{'engine':<17} {'batch':>5} {'metric':<10} {'infermeter':>12} {'tool':<24} {'tool value':>11} "
          f"{'ratio':>6}  verdict")
    for engine, batch, mode, ours, tool_name, theirs, ratio, how in rows:
        verdict = "meets goal" if ratio >= args.goal else ("close" if ratio >= args.short_of else "FALLS SHORT")
        print(f"{engine:<17} {batch:>5} {mode:<10} {ours:>12.2f} {tool_name:<24} {theirs:>11.2f} {ratio:>6.3f}  "
              f"{verdict} ({unit[mode]}; {how})")
    print(f"\nratio: throughput infermeter/tool, latency tool/infermeter; goal >= {args.goal:g}, "
          f"below {args.short_of:g} falls short. {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if controls:
        print(f"\ncontrol: torchvision's {TORCHVISION_TWINS[model.name]} exported by torch.onnx, same FLOPs; "
              f"ratio = infermeter on its graph / the engine's tool on the control graph (>= {args.control_short_of:g})")
        print(f"{'engine':<12} {'batch':>5} {'infermeter':>12} {'control':>10} {'ratio':>6}  graph infermeter ran")
        for engine, batch, ours, theirs, ratio, source, nodes in controls:
            verdict = "" if ratio >= args.control_short_of else "  CONVERSION COSTS SPEED"
            print(f"{engine:<12} {batch:>5} {ours:>12.2f} {theirs:>10.2f} {ratio:>6.3f}  {source} "
                  f"({nodes} nodes){verdict}")
    busy = max(load_before, os.getloadavg()[0])
    if busy > (os.cpu_count() or 1):  # other work competed for the cores: the ratios are noise, not a verdict
        print(f"warning: 1-minute load average reached {busy:.1f} on {os.cpu_count()} cores during the run; "
              "take the final figures on a quiet machine")
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())

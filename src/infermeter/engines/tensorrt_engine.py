"""TensorRT 10 and 11: an engine built from the ONNX export, cached in the store as a serialized plan.

Static shapes (the default): one plan per batch size, its profile min = opt = max = that batch (as
trtexec --shapes builds it), cached per shape. --shape-mode dynamic: one plan, one optimisation profile:
the model folder's tensorrt_profile where it gives one (a dynamic-shape engine, as the folder's author
sized it), else batch 1..max_batch (opt = max_batch). Buffers are torch CUDA tensors, and each call runs execute_async_v3 on a
CUDA stream, then synchronises that stream.

Precision (read against the TensorRT 10.x and 11.4 Python APIs):
- fp32: BuilderFlag.TF32 cleared (TensorRT sets it by default): IEEE float32. tf32: the flag set.
- fp16, TensorRT 10: the float32 graph with BuilderFlag.FP16 (weak typing; needs nothing more).
- fp16, TensorRT 11: weak typing and BuilderFlag.FP16 are gone and every network is strongly typed, so
  the plan is built from model_fp16.onnx, the graph converted to float16 by onnxruntime.transformers'
  float16 converter (float32 inputs/outputs): that path needs `onnx` and `onnxruntime(-gpu)`.
- int8: explicit quantization from the same QDQ ONNX the onnxruntime engine runs (symmetric int8, made by
  onnxruntime.quantization from the shared calibration set, quantization.py); TensorRT 10 also gets
  BuilderFlag.INT8, TensorRT 11 reads the types from the Q/DQ nodes. Layers without Q/DQ run in fp32.

A plan only runs on the TensorRT version and GPU it was built for, and TensorRT may load a plan built on
another board with no more than a warning: the plan's file name carries a key of the GPU's name and
compute capability, the TensorRT version and every builder setting (plan_cache_key). A cached plan that
still does not deserialize is removed and rebuilt, never reused.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.engines.base import (
    DYNAMIC,
    STAGE_SPLIT_CUDA_EVENTS,
    Engine,
    Stopwatch,
    modules_missing,
    register_engine,
)
from infermeter.models.onnx_graph import FP16_ARTIFACT, convert_to_fp16, feed_names, onnx_path_of

WORKSPACE_BYTES = 4 << 30  # builder scratch memory for tactic selection
SUPPORTED_MAJORS = (10, 11)
#: what the fp16 path of each TensorRT major needs besides tensorrt and torch
FP16_NEEDS = {10: (), 11: ("onnx", "onnxruntime")}
#: distributions that install the `tensorrt` module, newest naming first
TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings")


def installed_trt_version() -> str | None:
    """TensorRT's version from package metadata, without importing it (None when unknown)."""
    for dist in TRT_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def trt_major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def plan_cache_key(gpu_name: str, compute_capability: str, trt_version: str, settings: dict) -> str:
    """Short hash naming a plan: another board, TensorRT version or builder setting gets another plan."""
    ident = {"gpu": gpu_name, "cc": compute_capability, "tensorrt": trt_version, "settings": settings}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _torch_dtype(trt, trt_dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if trt_dtype not in table:
        raise TypeError(f"TensorRT tensor type {trt_dtype} has no torch buffer type here")
    return table[trt_dtype]


def set_trt_math(trt, config, precision: str, fp16_flag: bool) -> dict:
    """TF32 cleared unless tf32 was asked for (TensorRT sets it by default); FP16 by flag on TensorRT 10.
    Returns the flags as the config reports them (run.json)."""
    from infermeter.engines.math_mode import tf32_allowed

    if not hasattr(trt.BuilderFlag, "TF32"):
        if precision in ("fp32", "tf32"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no BuilderFlag.TF32: {precision} cannot be "
                               "promised (infermeter was written against TensorRT 10 and 11)")
        return {"BuilderFlag.TF32": "absent in this TensorRT"}
    if tf32_allowed(precision):
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    mode = {"BuilderFlag.TF32": bool(config.get_flag(trt.BuilderFlag.TF32))}
    if hasattr(trt.BuilderFlag, "FP16"):
        mode["BuilderFlag.FP16"] = bool(config.get_flag(trt.BuilderFlag.FP16))
    return mode


@functools.cache
def _logger():
    """One logger for builder, parser and runtime: TensorRT expects the same one throughout a process."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


@register_engine
class TensorRTEngine(Engine):
    name = "tensorrt"
    family = "tensorrt"
    precisions = {"cuda": ("fp32", "tf32", "fp16", "int8")}
    tunables = {"trt_opt_level": {"cuda": (3, 1, 5)}}  # each level is its own cached plan
    sources = ("onnx",)
    requires = ("tensorrt", "torch", "onnx")  # torch: CUDA buffers and streams; onnx: the graph's input shapes

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        major = trt_major(installed_trt_version())
        if major is not None and major not in SUPPORTED_MAJORS:
            return False, (f"TensorRT {installed_trt_version()} is installed; infermeter supports TensorRT "
                           f"{' and '.join(map(str, SUPPORTED_MAJORS))}")
        return True, ""

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok:
            return ok, why
        if precision == "fp16":
            major = trt_major(installed_trt_version())
            missing = modules_missing(*FP16_NEEDS.get(major, ()))
            if missing:
                return False, (f"not installed: {', '.join(missing)} (TensorRT {major}'s fp16 is built from the "
                               "graph converted to float16 by onnxruntime.transformers)")
        return True, ""

    # ---- build ----------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False: TensorRT buffers need a CUDA device")
        self.trt, self.torch = trt, torch
        self.device = torch.device("cuda:0")
        major = trt_major(trt.__version__)
        if major not in SUPPORTED_MAJORS:
            raise RuntimeError(f"TensorRT {trt.__version__}: infermeter supports TensorRT "
                               f"{' and '.join(map(str, SUPPORTED_MAJORS))}")
        onnx_path = onnx_path_of(artifacts)
        fp16_by_flag = precision == "fp16" and major == 10
        if precision == "fp16" and not fp16_by_flag:  # TensorRT 11: precision lives in the graph
            src = onnx_path
            onnx_path = str(artifacts.build(FP16_ARTIFACT, lambda tmp: convert_to_fp16(src, tmp)))
        qdq_build_s = 0.0
        if precision == "int8":
            from infermeter.quantization import calibration_set, qdq_onnx, qdq_settings, quantization_facts

            calib = calibration_set(model, self.ctx.options.calibration_items)
            onnx_path, built = qdq_onnx(model, artifacts, calib, "s8s8")  # TensorRT takes symmetric int8 Q/DQ only
            qdq_build_s = artifacts.built[Path(onnx_path).name] if built else 0.0
            self.info.update(quantization_facts(calib, "explicit quantization of the onnxruntime.quantization "
                                                "QDQ graph", **qdq_settings("s8s8")))
        from infermeter.models.graph_form import onnx_file_form

        # TensorRT parses the clean ONNX graph (its own tool, trtexec --onnx, is given the same file)
        self.info.update({"graph_source": "onnx", "graph_form": onnx_file_form(onnx_path)})
        self._plan_args = (model, artifacts, onnx_path, precision, fp16_by_flag, major)
        self.max_batch = max_batch
        self.runtime = trt.Runtime(_logger())
        self.activate(max_batch)
        # the first plan's build and load (each plan's, this one too, is in compile_s by its shape)
        self.build_s, self.load_s = self._first_build_s + qdq_build_s, self._first_load_s
        self.info.update({"tensorrt_version": trt.__version__, "precision": precision,
                          "fp16_mode": ("BuilderFlag.FP16 (weak typing, TensorRT 10)" if fp16_by_flag
                                        else "fp16 ONNX graph (strong typing, TensorRT 11)")
                          if precision == "fp16" else "",
                          "shape_mode": self.shape_mode,
                          "math_mode": getattr(self, "_math_mode", "as built earlier (plan from the cache): "
                                               f"BuilderFlag.TF32 {'set' if precision == 'tf32' else 'cleared'}"),
                          "cudnn_algo_search": "TensorRT times its own tactics at build",
                          "io": self.ctx.io, "clients": "one execution context and CUDA stream per client"})

    def activate(self, batch: int) -> None:
        self.batch = batch
        (self.engine, self.context, self.stream, self.min_batch,
         self.max_plan_batch) = self.compiled_for(self.shape_key(batch), self._load_plan)

    def _load_plan(self, key) -> tuple:
        """The plan for this shape key (min = opt = max = the batch with static shapes; batch 1..max_batch
        in dynamic mode), built once into the artifact store and deserialised into an engine with its
        execution context and stream."""
        trt, torch = self.trt, self.torch
        model, artifacts, onnx_path, precision, fp16_by_flag, major = self._plan_args
        profiles = self._profiles(model, onnx_path, key)
        settings = {"precision": precision, "tf32": precision == "tf32", "fp16_flag": fp16_by_flag,
                    "strongly_typed": major >= 11, "workspace_bytes": WORKSPACE_BYTES,
                    "builder_optimization_level": self.ctx.options.trt_opt_level,
                    "profiles": {n: [list(x) for x in p] for n, p in profiles.items()}, "onnx": Path(onnx_path).name}
        gpu_name = torch.cuda.get_device_name(self.device)
        cc = "{}.{}".format(*torch.cuda.get_device_capability(self.device))
        plan_key = plan_cache_key(gpu_name, cc, trt.__version__, settings)
        plan_name = f"tensorrt_{precision}_{plan_key}.plan"
        build_s = 0.0
        for attempt in (1, 2):
            cached = artifacts.get(plan_name) is not None
            plan = artifacts.build(plan_name, lambda tmp: self._build_plan(
                onnx_path, tmp, profiles, precision, fp16_by_flag, major))
            if not cached:
                build_s = artifacts.built[plan_name]
            with Stopwatch() as sw:
                engine = self.runtime.deserialize_cuda_engine(Path(plan).read_bytes())
            if engine is not None:
                break
            if attempt == 2:
                raise RuntimeError(f"TensorRT could not deserialize the plan it just built ({plan})")
            # Built by another TensorRT version or for another GPU: drop it and build afresh.
            Path(plan).unlink()
        if not hasattr(self, "_first_build_s"):
            self._first_build_s, self._first_load_s = build_s, sw.s
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
            self.input_names = [n for n in names if is_input[n]]
            self.output_names = [n for n in names if not is_input[n]]
            self.feed_names = feed_names(self.input_names, model)
            self.dtypes = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in names}
        self.info.setdefault("plans", {})[str(key)] = {
            "plan": str(plan), "profiles": settings["profiles"], "built_s": build_s,
            "plan_cache_key": {"key": plan_key, "gpu": gpu_name, "compute_capability": cc}}
        self.info["profile_max_batch"] = max(hi[0] for _, _, hi in profiles.values())
        return (engine, engine.create_execution_context(), torch.cuda.Stream(self.device),
                max(lo[0] for lo, _, _ in profiles.values()), min(hi[0] for _, _, hi in profiles.values()))

    def profile_shapes(self) -> dict[str, list]:
        """(min, opt, max) of every input in the active plan's profile 0, as TensorRT reports it."""
        return {n: [list(s) for s in self.engine.get_tensor_profile_shape(n, 0)] for n in self.input_names}

    def _profiles(self, model, onnx_path: str, key) -> dict[str, tuple[tuple[int, ...], ...]]:
        """{input: (min, opt, max)}. Static shapes: min = opt = max = the batch, other axes from the input
        spec. Dynamic: the model folder's tensorrt_profile where it gives one (checked to hold max_batch),
        else batch 1..max_batch with opt = max_batch. A graph that fixes its batch keeps it."""
        import onnx

        max_batch = self.max_batch
        given = model.tensorrt_profiles() if hasattr(model, "tensorrt_profiles") else None
        graph = onnx.load(onnx_path, load_external_data=False).graph
        init = {i.name for i in graph.initializer}
        shapes = {i.name: tuple(d.dim_value if d.HasField("dim_value") else -1
                                for d in i.type.tensor_type.shape.dim) for i in graph.input if i.name not in init}
        spec_of = feed_names(list(shapes), model)
        specs = {s.name: s for s in model.input_specs()}
        out = {}
        for name, shape in shapes.items():
            given_p = given.get(spec_of[name]) if given is not None else None
            if given_p is not None and key == DYNAMIC:
                lo, opt, hi = (tuple(int(v) for v in p) for p in given_p)
                if shape[0] < 0 and hi[0] < max_batch:
                    raise RuntimeError(f"the model's tensorrt_profile for {spec_of[name]} stops at batch {hi[0]}, "
                                       f"below the largest batch size asked for ({max_batch})")
                self.info["profile_source"] = "model folder's tensorrt_profile"
                out[name] = (lo, opt, hi)
                continue
            try:
                rest = self._fixed_dims(name, shape, specs.get(spec_of[name]))
            except RuntimeError:
                if given_p is None:
                    raise
                rest = tuple(int(v) for v in given_p[1][1:])  # the folder profile's opt shape past the batch
            if shape[0] > 0:
                low = opt = high = shape[0]
            elif key == DYNAMIC:
                low, opt, high = 1, max_batch, max_batch
            else:
                low = opt = high = key
            out[name] = ((low, *rest), (opt, *rest), (high, *rest))
            self.info["profile_source"] = ("min = opt = max = the cell's batch (static shapes)" if key != DYNAMIC
                                           else "batch 1..max batch, opt = max")
        return out

    def _build_plan(self, onnx_path: str, out: Path, profiles: dict, precision: str, fp16_flag: bool,
                    major: int) -> None:
        trt = self.trt
        builder = trt.Builder(_logger())
        # TensorRT 10: explicit batch is the only mode, weak typing unless asked; 11: strongly typed always
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, _logger())
        if not parser.parse_from_file(onnx_path):  # from the file, so external weights are found
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.ctx.options.trt_opt_level is not None:  # --trt-opt-level (the plan's cache key includes it)
            config.builder_optimization_level = self.ctx.options.trt_opt_level
        self._math_mode = set_trt_math(trt, config, precision, fp16_flag)
        if precision == "int8" and major == 10 and hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ scales, no calibrator
            self._math_mode["BuilderFlag.INT8"] = True
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
        with open(out, "wb") as fh:
            fh.write(serialized)

    @staticmethod
    def _fixed_dims(name: str, onnx_shape: tuple, spec) -> tuple[int, ...]:
        """Non-batch dims: from the ONNX where fixed, else from the model's input spec."""
        rest = []
        for axis, dim in enumerate(onnx_shape[1:], start=1):
            if dim < 0 and spec is not None and len(spec.shape) == len(onnx_shape) and spec.shape[axis] > 0:
                dim = spec.shape[axis]
            if dim < 0:
                raise RuntimeError(f"input {name} axis {axis} is dynamic in the ONNX and in the model's input "
                                   "spec; give --input-shapes so TensorRT can build a profile")
            rest.append(int(dim))
        return tuple(rest)

    # ---- inference ------------------------------------------------------------------------------
    def stage(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Engine-typed tensors: on the GPU with --io device, else pinned host memory."""
        torch = self.torch
        staged = {}
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[self.feed_names[name]])).to(self.dtypes[name])
            staged[name] = t.to(self.device) if self.ctx.io == "device" else t.pin_memory()
        torch.cuda.synchronize()
        return staged

    def _enqueue(self, context, stream, staged: dict) -> list:
        """Copy inputs in (when on the host), enqueue the engine on `stream`; returns device outputs."""
        torch = self.torch
        with torch.cuda.stream(stream):
            on_device = {n: t.to(self.device, non_blocking=True) for n, t in staged.items()}
            for name, t in on_device.items():
                batch = t.shape[0]
                if not self.min_batch <= batch <= self.max_plan_batch:
                    raise ValueError(f"batch {batch} is outside the engine's profile "
                                     f"{self.min_batch}..{self.max_plan_batch}")
                context.set_input_shape(name, tuple(t.shape))
                context.set_tensor_address(name, t.data_ptr())
            outputs = []
            for name in self.output_names:
                out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device)
                context.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see its log)")
        return outputs

    def _run_to_host(self, context, stream, staged: dict) -> list[np.ndarray]:
        outputs = self._enqueue(context, stream, staged)
        with self.torch.cuda.stream(stream):
            host = [o.to("cpu", non_blocking=True) for o in outputs]
        stream.synchronize()
        return [h.numpy() for h in host]

    def infer(self, inputs: Any) -> list[np.ndarray]:
        return self._run_to_host(self.context, self.stream, inputs)

    def make_clients(self, n: int):
        # An execution context serves one thread at a time: every client gets its own, with its own stream.
        clients = [functools.partial(self._run_to_host, self.context, self.stream)]
        for _ in range(n - 1):
            clients.append(functools.partial(self._run_to_host, self.engine.create_execution_context(),
                                             self.torch.cuda.Stream(self.device)))
        return clients

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float]:
        torch = self.torch
        host = {n: torch.from_numpy(np.ascontiguousarray(inputs[self.feed_names[n]])).to(self.dtypes[n]).pin_memory()
                for n in self.input_names}
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.cuda.stream(self.stream):
            events[0].record()
            on_device = {n: t.to(self.device, non_blocking=True) for n, t in host.items()}
            events[1].record()
        outputs = self._enqueue(self.context, self.stream, on_device)
        with torch.cuda.stream(self.stream):
            events[2].record()
            _ = [o.to("cpu", non_blocking=True) for o in outputs]
            events[3].record()
        self.stream.synchronize()
        return {"h2d_ms": events[0].elapsed_time(events[1]), "compute_ms": events[1].elapsed_time(events[2]),
                "d2h_ms": events[2].elapsed_time(events[3]), "stage_split_method": STAGE_SPLIT_CUDA_EVENTS}

    def close(self) -> None:
        self.context = self.engine = self.runtime = None
        self.by_shape.clear()

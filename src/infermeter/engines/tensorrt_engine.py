"""TensorRT (10.x API): an engine built from the ONNX export, cached in the store as a serialized plan.

One optimisation profile covers batch 1..max_batch (opt = max_batch). Buffers are torch CUDA tensors,
and each call runs execute_async_v3 on a CUDA stream, then synchronises that stream.

fp16: TensorRT 10 builds the fp32 graph with BuilderFlag.FP16. TensorRT 11 removed that flag (every
network is strongly typed), so there the fp16 plan is built from model_fp16.onnx, the graph converted
to float16 (float32 inputs/outputs), the same artifact onnxruntime's fp16 uses.

A plan only runs on the TensorRT version and GPU model it was built for; a cached plan that does not
deserialize is removed and rebuilt, never reused.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.engines.base import Engine, Stopwatch, register_engine
from infermeter.engines.onnx_common import FP16_ARTIFACT, convert_to_fp16, feed_names, onnx_path_of

WORKSPACE_BYTES = 4 << 30  # builder scratch memory for tactic selection


def _torch_dtype(trt, trt_dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if trt_dtype not in table:
        raise TypeError(f"TensorRT tensor type {trt_dtype} has no torch buffer type here")
    return table[trt_dtype]


@functools.cache
def _logger():
    """One logger for builder, parser and runtime: TensorRT expects the same one throughout a process."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


@register_engine
class TensorRTEngine(Engine):
    name = "tensorrt"
    family = "tensorrt"
    precisions = {"cuda": ("fp32", "fp16")}
    sources = ("onnx",)
    requires = ("tensorrt", "torch")  # torch provides the CUDA buffers and streams

    # ---- build ----------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False: TensorRT buffers need a CUDA device")
        self.trt, self.torch = trt, torch
        self.device = torch.device("cuda:0")
        self.max_batch = max_batch
        plan_name = f"tensorrt_{precision}_b{max_batch}.plan"
        onnx_path = onnx_path_of(artifacts)
        fp16_by_flag = precision == "fp16" and hasattr(trt.BuilderFlag, "FP16")
        if precision == "fp16" and not fp16_by_flag:  # TensorRT 11+: precision lives in the graph
            src = onnx_path
            onnx_path = str(artifacts.build(FP16_ARTIFACT, lambda tmp: convert_to_fp16(src, tmp)))

        self.runtime = trt.Runtime(_logger())
        self.build_s = 0.0
        for attempt in (1, 2):
            cached = artifacts.get(plan_name) is not None
            plan = artifacts.build(plan_name, lambda tmp: self._build_plan(
                onnx_path, tmp, model, max_batch, fp16_by_flag))
            if not cached:
                self.build_s = artifacts.built[plan_name]
            with Stopwatch() as sw:
                self.engine = self.runtime.deserialize_cuda_engine(Path(plan).read_bytes())
            if self.engine is not None:
                break
            if attempt == 2:
                raise RuntimeError(f"TensorRT could not deserialize the plan it just built ({plan})")
            # Built by another TensorRT version or for another GPU: drop it and build afresh.
            Path(plan).unlink()
        self.load_s = sw.s

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.feed_names = feed_names(self.input_names, model)
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self.info.update({"tensorrt_version": trt.__version__, "plan": str(plan), "precision": precision,
                          "fp16_mode": ("BuilderFlag.FP16" if fp16_by_flag else "fp16 ONNX graph (strong typing)")
                          if precision == "fp16" else "", "profile_max_batch": max_batch,
                          "io": self.ctx.io, "clients": "one execution context and CUDA stream per client"})

    def _build_plan(self, onnx_path: str, out: Path, model, max_batch: int, fp16_flag: bool) -> None:
        trt = self.trt
        builder = trt.Builder(_logger())
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, _logger())
        if not parser.parse_from_file(onnx_path):  # from the file, so external weights are found
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        specs = {s.name: s for s in model.input_specs()}
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        spec_of = feed_names([t.name for t in inputs], model)
        for tensor in inputs:
            shape = tuple(tensor.shape)
            rest = self._fixed_dims(tensor.name, shape, specs.get(spec_of[tensor.name]))
            if shape[0] > 0:  # the graph fixes its batch size: the profile can only be that size
                low = high = shape[0]
            else:
                low, high = 1, max_batch
            profile.set_shape(tensor.name, (low, *rest), (high, *rest), (high, *rest))
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
                if not 1 <= batch <= self.max_batch:
                    raise ValueError(f"batch {batch} is outside the engine's profile 1..{self.max_batch}")
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
                "d2h_ms": events[2].elapsed_time(events[3])}

    def close(self) -> None:
        self.context = self.engine = self.runtime = None

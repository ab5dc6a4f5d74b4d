"""ONNX Runtime: `onnxruntime` runs the model's ONNX export on the CPU or CUDA execution provider;
`onnxruntime-trt` on the TensorRT execution provider (CUDA EP for the nodes TensorRT does not take).

fp16 on the CUDA EP runs a converted copy of the graph (float16 weights and compute, float32 inputs and
outputs), built once into the artifact store as model_fp16.onnx; the TensorRT EP builds its own fp16
engine from the float32 graph (trt_fp16_enable). int8 on the CPU runs the static QDQ graph that
onnxruntime.quantization makes from the shared calibration set (quantization.py).

Math mode (engines/math_mode.py): the CUDA EP gets use_tf32=0 for fp32 (1 for tf32) and
cudnn_conv_algo_search=EXHAUSTIVE, read back from the session into run.json. The TensorRT EP has no
TF32 option, so TensorRT's default (TF32 on) applies: `onnxruntime-trt` offers tf32, never fp32.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.engines.base import (
    DYNAMIC,
    STAGE_SPLIT_HOST_CLOCK,
    Engine,
    modules_missing,
    register_engine,
)
from infermeter.engines.onnx_common import FP16_ARTIFACT, convert_to_fp16, feed_names, onnx_path_of
from infermeter.errors import EngineUnavailable

GPU_PACKAGE_HINT = ("install onnxruntime-gpu alone (`pip uninstall onnxruntime` first: with both packages "
                    "installed only the CPU providers remain)")


def symbolic_batch_dims(onnx_path: str) -> list[str]:
    """The names of the graph inputs' symbolic batch dimensions (axis 0 as a dim_param); [] when the
    batch axes are fixed or unnamed, or onnx is not installed to read them."""
    if modules_missing("onnx"):
        return []
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    names = []
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name not in initializers and dims and dims[0].dim_param and dims[0].dim_param not in names:
            names.append(dims[0].dim_param)
    return names


@register_engine
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    family = "onnxruntime"
    precisions = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "tf32", "fp16")}
    sources = ("onnx",)
    requires = ("onnxruntime",)
    no_path = {"bf16": "ONNX Runtime has no bf16 conversion of a graph and its CPU/CUDA providers few bf16 kernels",
               "int8": "the QDQ int8 graph runs on NVIDIA GPUs through the tensorrt engine (explicit quantization)"}
    #: the execution provider that must be active on cuda
    gpu_provider = "CUDAExecutionProvider"

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok or device != "cuda":
            return ok, why
        ok, why = cls.available()
        if not ok:
            return ok, why
        if precision == "fp16" and cls.gpu_provider == "CUDAExecutionProvider" and modules_missing("onnx"):
            return False, "not installed: onnx (needed to convert the graph to fp16)"
        import onnxruntime

        if cls.gpu_provider not in onnxruntime.get_available_providers():
            return False, (f"onnxruntime has no {cls.gpu_provider} (available: "
                           f"{', '.join(onnxruntime.get_available_providers())}); {GPU_PACKAGE_HINT}")
        return True, ""

    # ---- session --------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import onnxruntime as ort

        src = onnx_path_of(artifacts)
        self.build_s = 0.0
        use_trt = self.ctx.device == "cuda" and self.gpu_provider == "TensorrtExecutionProvider"
        if precision == "int8":
            from infermeter.quantization import QDQ_SETTINGS, calibration_set, qdq_onnx, quantization_facts

            calib = calibration_set(model, self.ctx.options.calibration_items)
            src, built = qdq_onnx(model, artifacts, calib)
            self.build_s = artifacts.built[Path(src).name] if built else 0.0
            self.info.update(quantization_facts(calib, "onnxruntime.quantization.quantize_static", **QDQ_SETTINGS))
        if precision == "fp16" and not use_trt:  # the TensorRT EP makes its own fp16 engine from the fp32 graph
            cached = artifacts.get(FP16_ARTIFACT) is not None
            fp32_src = src
            src = str(artifacts.build(FP16_ARTIFACT, lambda tmp: convert_to_fp16(fp32_src, tmp)))
            self.build_s = 0.0 if cached else artifacts.built[FP16_ARTIFACT]

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.ctx.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = self._providers(precision, artifacts, use_trt)

        self._src, self._opts, self._provider_list = src, opts, providers
        self._batch_dims = symbolic_batch_dims(src) if self.shape_mode == "static" else []
        self.info["shapes"] = (
            f"one session per batch size, the batch dimension ({', '.join(self._batch_dims)}) fixed by "
            "SessionOptions.add_free_dimension_override_by_name (as onnxruntime_perf_test -f does): with every "
            "shape known, ORT plans memory and folds shape computations once, so fixing it can only remove work"
            if self._batch_dims else "one session for every batch size (the graph's batch axis as exported)")
        self.activate(max_batch)
        self.load_s = self.active_compile_s  # the first session's creation is the model's load
        active = self.session.get_providers()
        if self.ctx.device == "cuda":
            self.info.update(self._math_facts(precision))
        else:
            self.info["math_mode"] = "ieee-fp32 (CPU)"

        self.input_names = [i.name for i in self.session.get_inputs()]
        self.feed_names = feed_names(self.input_names, model)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.use_io_binding = self.ctx.device == "cuda" and self.ctx.io == "device"
        self.info.update({
            "onnxruntime_version": ort.__version__, "model_file": src, "providers": active,
            "intra_op_num_threads": self.ctx.threads, "inter_op_num_threads": 1,
            "graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL",
            "io_binding": self.use_io_binding, "precision": precision,
            "concurrency": "make_clients shares one session; InferenceSession.run is thread-safe"})

    def _session_for(self, key):
        """An InferenceSession for this shape key: the batch fixed to `key`, or as exported (DYNAMIC)."""
        import onnxruntime as ort

        opts = self._opts
        if key != DYNAMIC and self._batch_dims:
            opts = ort.SessionOptions()  # options are copied field by field: the overrides are per session
            for attr in ("graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads",
                         "execution_mode"):
                setattr(opts, attr, getattr(self._opts, attr))
            for dim in self._batch_dims:
                opts.add_free_dimension_override_by_name(dim, int(key))
        session = ort.InferenceSession(self._src, sess_options=opts, providers=self._provider_list)
        wanted = self._provider_list[0]
        wanted = wanted[0] if isinstance(wanted, tuple) else wanted
        active = session.get_providers()
        if wanted not in active:  # ORT falls back to the CPU silently; a mislabelled cell is worse than none
            raise EngineUnavailable(f"onnxruntime did not enable {wanted} (active providers: {', '.join(active)})")
        return session

    def activate(self, batch: int) -> None:
        self.batch = batch
        self.session = self.compiled_for(self.shape_key(batch), self._session_for)

    def session_input_shapes(self) -> dict[str, list]:
        """The input shapes of the session serving now, as ORT reports them."""
        return {i.name: list(i.shape) for i in self.session.get_inputs()}

    def _providers(self, precision: str, artifacts, use_trt: bool) -> list:
        if self.ctx.device != "cuda":
            return ["CPUExecutionProvider"]
        from infermeter.engines.math_mode import CUDNN_ALGO_SEARCH, tf32_allowed

        # The worker sets CUDA_VISIBLE_DEVICES, so the chosen GPU is always device 0 here.
        cuda_opts = {"device_id": 0, "use_tf32": int(tf32_allowed(precision)),
                     "cudnn_conv_algo_search": CUDNN_ALGO_SEARCH.upper()}
        providers: list = [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
        if use_trt:
            import onnxruntime as ort

            from infermeter.device import gpu_name_and_capability
            from infermeter.engines.tensorrt_engine import installed_trt_version, plan_cache_key

            # the EP's engine cache in a folder per board, compute capability, versions and settings, so
            # an engine built on another GPU is never picked up
            name, cc = gpu_name_and_capability(self.ctx.gpu_id or 0)
            key = plan_cache_key(name, cc, f"onnxruntime {ort.__version__}, tensorrt {installed_trt_version()}",
                                 {"precision": precision, "trt_fp16_enable": precision == "fp16"})
            trt_opts = {"device_id": 0, "trt_fp16_enable": precision == "fp16",
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(artifacts.root / f"ort_trt_cache_{precision}_{key}")}
            providers.insert(0, ("TensorrtExecutionProvider", trt_opts))
        return providers

    def _math_facts(self, precision: str) -> dict:
        """The providers' effective options as the session reports them (run.json)."""
        opts = self.session.get_provider_options()
        cuda = opts.get("CUDAExecutionProvider", {})
        facts = {"provider_options": opts,
                 "cudnn_algo_search": f"cudnn_conv_algo_search={cuda.get('cudnn_conv_algo_search')}"}
        if self.gpu_provider == "TensorrtExecutionProvider":
            trt = opts.get("TensorrtExecutionProvider", {})
            facts["math_mode"] = {"tensorrt_ep": "TensorRT default (TF32 on; the EP has no TF32 option)",
                                  "trt_fp16_enable": trt.get("trt_fp16_enable"),
                                  "cuda_ep_use_tf32": cuda.get("use_tf32")}
        else:
            facts["math_mode"] = {"cuda_ep_use_tf32": cuda.get("use_tf32")}
        return facts

    # ---- inference ------------------------------------------------------------------------------
    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        arrays = {name: np.ascontiguousarray(inputs[key]) for name, key in self.feed_names.items()}
        if not self.use_io_binding:
            return arrays
        import onnxruntime as ort

        # Resident copies on the GPU, bound per call; outside the timed region by design (--io device).
        return {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in arrays.items()}

    def infer(self, inputs: Any) -> list[np.ndarray]:
        if not self.use_io_binding:
            return self.session.run(self.output_names, inputs)
        binding = self.session.io_binding()  # one binding per call, so concurrent clients never share one
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")  # results land on the host, ready when run returns
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
        """h2d / compute / d2h on CUDA, each a synchronous ORT call timed on the host clock from pageable
        memory (ORT exposes no CUDA events): not the CUDA-event split torch and TensorRT report, and the
        row names the method (stage_split_method)."""
        if self.ctx.device != "cuda":
            return None
        import onnxruntime as ort

        t0 = time.perf_counter()
        on_gpu = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(inputs[key]), "cuda", 0)
                  for name, key in self.feed_names.items()}
        t1 = time.perf_counter()
        binding = self.session.io_binding()
        for name, value in on_gpu.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)  # the CUDA EP synchronises its stream at the end of a run
        t2 = time.perf_counter()
        binding.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        return {"h2d_ms": (t1 - t0) * 1e3, "compute_ms": (t2 - t1) * 1e3, "d2h_ms": (t3 - t2) * 1e3,
                "stage_split_method": STAGE_SPLIT_HOST_CLOCK}

    def close(self) -> None:
        self.session = None
        self.by_shape.clear()


@register_engine
class OnnxRuntimeTensorRTEngine(OnnxRuntimeEngine):
    """ONNX Runtime's TensorRT execution provider, as many deployments run ORT on NVIDIA GPUs."""

    name = "onnxruntime-trt"
    # TF32 cannot be turned off through the TensorRT EP: fp32 would be a false name
    precisions = {"cuda": ("tf32", "fp16")}
    gpu_provider = "TensorrtExecutionProvider"

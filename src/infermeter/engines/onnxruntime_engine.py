"""ONNX Runtime: the model's ONNX export on the CPU execution provider, or CUDA (optionally TensorRT) on a GPU.

fp16 on CUDA runs a converted copy of the graph (float16 weights and compute, float32 inputs and
outputs), built once into the artifact store as model_fp16.onnx.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from infermeter.engines.base import Engine, Stopwatch, modules_missing, register_engine
from infermeter.engines.onnx_common import FP16_ARTIFACT, convert_to_fp16, feed_names, onnx_path_of
from infermeter.errors import EngineUnavailable


@register_engine
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    family = "onnxruntime"
    precisions = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
    sources = ("onnx",)
    requires = ("onnxruntime",)

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok or device != "cuda":
            return ok, why
        ok, why = cls.available()
        if not ok:
            return ok, why
        if precision == "fp16" and modules_missing("onnx"):
            return False, "not installed: onnx (needed to convert the graph to fp16)"
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return False, ("onnxruntime has no CUDAExecutionProvider (the CPU-only package is installed; "
                           "install onnxruntime-gpu instead)")
        return True, ""

    # ---- session --------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import onnxruntime as ort

        src = onnx_path_of(artifacts)
        self.build_s = 0.0
        use_trt = self.ctx.device == "cuda" and self.ctx.options.ort_tensorrt
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

        with Stopwatch() as sw:
            self.session = ort.InferenceSession(src, sess_options=opts, providers=providers)
        self.load_s = sw.s
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        active = self.session.get_providers()
        if wanted not in active:  # ORT falls back to the CPU silently; a mislabelled cell is worse than none
            raise EngineUnavailable(f"onnxruntime did not enable {wanted} (active providers: {', '.join(active)})")

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

    def _providers(self, precision: str, artifacts, use_trt: bool) -> list:
        if self.ctx.device != "cuda":
            return ["CPUExecutionProvider"]
        # The worker sets CUDA_VISIBLE_DEVICES, so the chosen GPU is always device 0 here.
        providers: list = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
        if use_trt:
            trt_opts = {"device_id": 0, "trt_fp16_enable": precision == "fp16",
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(artifacts.root / f"ort_trt_cache_{precision}")}
            providers.insert(0, ("TensorrtExecutionProvider", trt_opts))
        return providers

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
        """h2d / compute / d2h on CUDA, each a synchronous ORT call timed on the host clock."""
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
        return {"h2d_ms": (t1 - t0) * 1e3, "compute_ms": (t2 - t1) * 1e3, "d2h_ms": (t3 - t2) * 1e3}

    def close(self) -> None:
        self.session = None

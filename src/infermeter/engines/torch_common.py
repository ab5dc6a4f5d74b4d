"""What the PyTorch engines (torch eager, TorchScript, torch.compile) share: loading the module, inputs,
outputs, CUDA streams and the math settings.

The module is the model's own torch source when it has one (`model.load_torch`), otherwise the ONNX
export converted by onnx2torch (that conversion is `build_s`). Inputs are passed positionally in the
order of the module's forward parameters when they carry the input names, else in ONNX/spec order.

bf16 runs the fp32 module under torch.autocast(bfloat16) on the CPU and the GPU (torch and
torch-compile).

Memory format: for a module with 2-D convolutions fed 4-D float inputs, each activated batch size runs a
short interleaved probe of the module and its inputs as they are (contiguous, NCHW) against a
channels_last copy (NHWC, the layout oneDNN and cuDNN convolutions prefer), each as the engine runs it
(eager, traced, compiled), and keeps the faster. The probe is part of that batch size's compile_s; the
choice and the medians are in info["memory_format"]. Inputs are converted to channels_last inside the
timed call, as a user holding NCHW data would.

On CUDA the module lives on cuda:0 (the worker sets CUDA_VISIBLE_DEVICES). `stage` gives resident
device tensors with --io device, else pinned host tensors that `infer` copies inside the timed call.
`infer` returns host numpy arrays after the device is synchronised.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.engines.base import STAGE_SPLIT_CUDA_EVENTS, Engine, Stopwatch, modules_missing
from infermeter.models.onnx_graph import feed_names, onnx_input_names, onnx_path_of

CONTIGUOUS, CHANNELS_LAST = "contiguous", "channels_last"
#: the memory-format probe: interleaved rounds (one call of each format) until PROBE_S seconds have passed,
#: at least PROBE_MIN_ROUNDS and at most PROBE_MAX_ROUNDS, after PROBE_WARM unmeasured calls of each
PROBE_S, PROBE_MIN_ROUNDS, PROBE_MAX_ROUNDS, PROBE_WARM = 0.5, 3, 30, 2
MEMORY_FORMAT_RULE = (f"probed at each batch size's activation where the module has 2-D convolutions and a 4-D float "
                      f"input: contiguous vs channels_last (module and inputs) as the engine runs them, "
                      f"{PROBE_WARM} unmeasured calls each, then interleaved rounds of one call each (at least "
                      f"{PROBE_MIN_ROUNDS}, until {PROBE_S:g} s or {PROBE_MAX_ROUNDS} rounds); the lower median wins")


def _torch_has_cuda_build() -> bool:
    """Whether the installed torch is a CUDA build, from its files: importing torch here would make
    `infermeter list` pay for a torch import in the parent process."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return any(lib.glob("libtorch_cuda*"))


def _flatten_outputs(out) -> list:
    """Tensor / tuple / list / dict (HF ModelOutput too) -> flat list of tensors, in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # ModelOutput is an OrderedDict subclass
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _flatten_outputs(item)]
    raise TypeError(f"the torch module returned {type(out).__name__}, not tensors")


def set_torch_math(torch, precision: str, cuda: bool) -> dict:
    """TF32 only for tf32 (matmuls through cuBLAS, convolutions through cuDNN, and the float32 matmul
    precision inductor reads); cuDNN benchmarks every algorithm at a shape's first call. The legacy
    switches exist in every torch this supports (2.4 ... 2.14); mixing them with the newer
    fp32_precision API is an error in torch >= 2.9, so only they are used. Returns run.json facts."""
    from infermeter.engines.math_mode import CUDNN_ALGO_SEARCH, tf32_allowed

    tf32 = tf32_allowed(precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.benchmark = True
    mode = {"cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if not cuda:
        return {"math_mode": "ieee-fp32 (CPU)" if precision == "fp32" else precision}
    return {"math_mode": mode, "cudnn_algo_search": f"{CUDNN_ALGO_SEARCH} (torch.backends.cudnn.benchmark="
                                                    f"{torch.backends.cudnn.benchmark})"}


class TorchEngineBase(Engine):
    family = "torch"
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
    sources = ("torch", "onnx")
    requires = ("torch",)
    no_path = {"int8": "torch's int8 path is PT2E + Inductor: use the torch-compile engine"}

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok:
            return ok, why
        if "torch" not in model.sources and modules_missing("onnx2torch", "onnx"):
            return False, (f"not installed: {', '.join(modules_missing('onnx2torch', 'onnx'))} "
                           f"(needed to convert the ONNX model {model.name} to torch)")
        if device == "cuda" and not _torch_has_cuda_build():
            return False, "the installed torch is a CPU-only build (no libtorch_cuda)"
        return True, ""

    # ---- session --------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import torch

        torch.set_num_threads(self.ctx.threads)
        if self.ctx.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False although a CUDA device was chosen")
        self.device = torch.device("cuda:0" if self.ctx.device == "cuda" else "cpu")
        self.half = precision == "fp16"
        self.precision = precision
        self.model, self.max_batch = model, max_batch  # examples for the shapes activate() compiles
        self.info.update(set_torch_math(torch, precision, self.device.type == "cuda"))
        self.build_s = 0.0

        if "torch" not in model.sources:
            import onnx2torch  # imported before the clock starts: library import is not model loading

            from infermeter.engines.onnx2torch_converters import register
            from infermeter.engines.onnx2torch_passes import fold_all
            from infermeter.engines.onnx_normalize import converter_error, import_optimizer, normalised_graph

            import_optimizer()
            self.info["onnx2torch_converters_added"] = register()

        with Stopwatch() as load:
            if "torch" in model.sources:
                module = model.load_torch(artifacts)
                self.arg_names = self._ordered_names(module, [s.name for s in model.input_specs()])
                source = "model.load_torch"
            else:
                onnx_path = onnx_path_of(artifacts)
                with Stopwatch() as conv:
                    graph, self.info["onnx_normalised"] = normalised_graph(onnx_path)
                    try:
                        module = onnx2torch.convert(graph)
                    except Exception as e:
                        raise RuntimeError(converter_error("onnx2torch", e)) from e
                    self.info.update(fold_all(module))
                self.build_s = conv.s
                # positional in ONNX graph order, each taken from the input dict under the model's name for it
                self.arg_names = list(feed_names(onnx_input_names(onnx_path), model).values())
                source = f"onnx2torch {importlib.metadata.version('onnx2torch')} from {onnx_path}"
            module = module.eval().to(self.device)
            if self.half:
                module = module.half()
            for p in module.parameters():
                p.requires_grad_(False)
        self.module = module
        from infermeter.models.graph_form import fx_graph_form

        self.info["graph_source"] = "torch-module" if "torch" in model.sources else "onnx2torch"
        self.info["graph_form"] = fx_graph_form(module)
        normalised = self.info.get("onnx_normalised") or ""
        if normalised.startswith("not normalised"):  # the converter ran on the graph as it was
            self.info["passes_failed"] = [f"onnx normalisation for onnx2torch: {normalised}"]
        self.formats = {CONTIGUOUS: module}  # memory format -> module in it (channels_last made at its probe)
        self.active_format = CONTIGUOUS
        self.probe_formats = self._has_conv_4d(module, model) and precision != "int8"
        self.info["ingestion"] = {"path": "the model's own torch source" if "torch" in model.sources
                                  else "onnx2torch of model.onnx",
                                  "memory_format": MEMORY_FORMAT_RULE if self.probe_formats else
                                  "contiguous (not probed: " + ("the int8 program is exported as it is)"
                                                                if precision == "int8" else
                                                                "no 2-D convolution on a 4-D float input)")}

        fixed_batch = model.input_specs()[0].shape[0]
        self.fixed_batch = fixed_batch if fixed_batch > 0 else None
        trace_batch = self.fixed_batch or min(2, max_batch)  # >1 keeps the batch axis general
        example = self.stage(model.make_batch(model.sample_pool(trace_batch), trace_batch, 0))
        with Stopwatch() as build:
            self.fn = self._build_callable(module, self._device_args(example))
        self.load_s = load.s - self.build_s  # the onnx2torch conversion counts as build, not load
        self.build_s += build.s
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.info.update({"torch_version": torch.__version__, "source": source, "device": str(self.device),
                          "num_threads": torch.get_num_threads(), "precision": precision,
                          "input_order": list(self.arg_names), "io": self.ctx.io,
                          "autocast": "bfloat16" if precision == "bf16" else None,
                          "clients": "one CUDA stream per client" if self.device.type == "cuda"
                          else "clients share infer (intra-op threads are global)"})
        if precision == "bf16" and self.device.type == "cpu":
            from infermeter.device import BF16_FLAGS, cpu_flags

            # native: the CPU's bfloat16 instructions; else oneDNN emulates bf16 (AVX512 without BF16) or
            # autocast falls back to its reference kernels
            self.info["cpu_bf16"] = {"native": sorted(cpu_flags() & set(BF16_FLAGS)),
                                     "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}

    @staticmethod
    def _has_conv_4d(module, model) -> bool:
        """Whether channels_last can matter: the module has a 2-D convolution and a 4-D float input."""
        import torch

        inputs_4d = any(len(s.shape) == 4 and "float" in s.dtype for s in model.input_specs())
        return inputs_4d and any(isinstance(m, torch.nn.Conv2d) for m in module.modules())

    def _format_module(self, fmt: str):
        """The module in memory format `fmt` (the channels_last copy made at its first use)."""
        if fmt not in self.formats:
            import copy

            import torch

            self.formats[fmt] = copy.deepcopy(self.module).to(memory_format=torch.channels_last)
        return self.formats[fmt]

    def probe_memory_format(self, key, batch: int, callables: dict) -> tuple:
        """(callable, format) of the faster of `callables` (format -> what the engine runs in it) on a
        batch of `batch` items: PROBE_WARM unmeasured calls of each, then interleaved rounds, the order
        reversed every other round. Recorded in info["memory_format"][key]."""
        import statistics
        import time

        staged = self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0))

        def run(fmt: str) -> None:
            self.fn, self.active_format = callables[fmt], fmt
            self._run_to_host(staged)

        with Stopwatch() as sw:
            for fmt in callables:
                for _ in range(PROBE_WARM):
                    run(fmt)
            times: dict[str, list[float]] = {fmt: [] for fmt in callables}
            rounds, t0 = 0, time.perf_counter()
            while rounds < PROBE_MAX_ROUNDS and (rounds < PROBE_MIN_ROUNDS or time.perf_counter() - t0 < PROBE_S):
                for fmt in (list(callables) if rounds % 2 == 0 else list(callables)[::-1]):
                    t = time.perf_counter()
                    run(fmt)
                    times[fmt].append(time.perf_counter() - t)
                rounds += 1
        medians = {fmt: statistics.median(ts) * 1e3 for fmt, ts in times.items()}
        best = min(callables, key=lambda fmt: medians[fmt])  # ties: contiguous, listed first
        self.info.setdefault("memory_format", {})[str(key)] = {
            "chosen": best, "batch": batch, "probe_median_ms": {k: round(v, 4) for k, v in medians.items()},
            "probe_rounds": rounds, "probe_s": round(sw.s, 3)}
        self.fn, self.active_format = callables[best], best
        return callables[best], best

    @staticmethod
    def _ordered_names(module, names: list[str]) -> list[str]:
        """Names in the order of forward's parameters when forward names them all, else as given."""
        try:
            params = list(inspect.signature(module.forward).parameters)
        except (TypeError, ValueError):
            return names
        if set(names) <= set(params):
            return [p for p in params if p in names]
        return names

    def _build_callable(self, module, example_args: tuple):
        return module

    def _autocast(self):
        """bf16: torch.autocast on the module's device; otherwise nothing."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ---- inputs and outputs --------------------------------------------------------------------------
    def stage(self, inputs: dict[str, np.ndarray]) -> tuple:
        """Positional tensors: on the device with --io device, else pinned host memory (CUDA) / plain (CPU)."""
        return self._tensors(inputs, resident=self.ctx.io == "device")

    def _tensors(self, inputs: dict[str, np.ndarray], resident: bool) -> tuple:
        import torch

        tensors = []
        for name in self.arg_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name]))
            if self.half and t.is_floating_point():
                t = t.half()  # integer inputs (token ids, masks) stay as they are
            if self.device.type == "cuda":
                t = t.to(self.device) if resident else t.pin_memory()
            tensors.append(t)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return tuple(tensors)

    def _device_args(self, staged: tuple) -> tuple:
        args = tuple(t.to(self.device, non_blocking=True) for t in staged)
        if self.active_format == CHANNELS_LAST:
            import torch

            args = tuple(a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 and a.is_floating_point()
                         else a for a in args)
        return args

    def _run_to_host(self, staged: tuple, stream=None) -> list[np.ndarray]:
        import torch

        with torch.inference_mode(), self._autocast():
            outs = _flatten_outputs(self.fn(*self._device_args(staged)))
            if self.precision == "bf16":  # numpy has no bfloat16; the cast is exact
                outs = [o.float() if o.dtype == torch.bfloat16 else o for o in outs]
            if self.device.type != "cuda":
                return [o.numpy() for o in outs]
            host = [o.to("cpu", non_blocking=True) for o in outs]
        if stream is None:
            torch.cuda.synchronize()
        else:
            stream.synchronize()
        return [h.numpy() for h in host]

    def infer(self, inputs: Any) -> list[np.ndarray]:
        return self._run_to_host(inputs)

    def make_clients(self, n: int):
        if self.device.type != "cuda":
            return [self.infer] * n
        import torch

        def client(stream, staged):
            with torch.cuda.stream(stream):
                return self._run_to_host(staged, stream)

        return [functools.partial(client, torch.cuda.Stream(self.device)) for _ in range(n)]

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
        """h2d / compute / d2h milliseconds from CUDA events around each phase (from pinned host memory)."""
        if self.device.type != "cuda":
            return None
        import torch

        host = self._tensors(inputs, resident=False)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.inference_mode(), self._autocast():
            events[0].record()
            args = self._device_args(host)
            events[1].record()
            outs = _flatten_outputs(self.fn(*args))
            events[2].record()
            _ = [o.to("cpu", non_blocking=True) for o in outs]
            events[3].record()
        torch.cuda.synchronize()
        return {"h2d_ms": events[0].elapsed_time(events[1]), "compute_ms": events[1].elapsed_time(events[2]),
                "d2h_ms": events[2].elapsed_time(events[3]), "stage_split_method": STAGE_SPLIT_CUDA_EVENTS}

    def reset_allocator_peak(self) -> None:
        if self.device.type == "cuda":
            import torch

            # blocks cached for earlier, larger shapes (the held-out pass runs at the largest batch) would
            # stay in NVML's process memory: released, the cell's device_mem_peak_mb is its own
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocator_peak_mb(self) -> float | None:
        """torch's caching allocator: the peak of memory held by tensors (NVML's figure adds the context
        and the allocator's cache on top)."""
        if self.device.type != "cuda":
            return None
        import torch

        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def close(self) -> None:
        self.fn = self.module = self.formats = None

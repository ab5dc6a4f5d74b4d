"""PyTorch engines: eager (`torch`), `torchscript` (trace + freeze + optimize_for_inference, once per
batch size with static shapes, once for all in dynamic mode) and `torch-compile`.

The module is the model's own torch source when it has one (`model.load_torch`), otherwise the ONNX
export converted by onnx2torch (that conversion is `build_s`). Inputs are passed positionally in the
order of the module's forward parameters when they carry the input names, else in ONNX/spec order.

bf16 runs the fp32 module under torch.autocast(bfloat16) on the CPU and the GPU (torch and
torch-compile). int8 (torch-compile on the CPU): PT2E quantization with the X86InductorQuantizer on the
shared calibration set (torchao.quantization.pt2e where installed, else torch.ao.quantization in older
torch; settings in pt2e_recipe, reduce_range where oneDNN has no VNNI), then torch.compile with Inductor
freezing, the path torch documents for x86 int8 inference.

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
import warnings
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
from infermeter.engines.onnx_common import feed_names, onnx_input_names, onnx_path_of

RECOMPILE_LIMIT = 64  # compiled shapes per code object TorchDynamo keeps before falling back to eager


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


def pt2e_api():
    """(prepare_pt2e, convert_pt2e, x86_inductor_quantizer module, where from): torchao's maintained copy,
    else the one torch itself shipped before 2.14."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torchao {importlib.metadata.version('torchao')}"
    except ImportError:
        import torch
        import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torch.ao {torch.__version__}"


def pt2e_recipe() -> dict:
    """The X86InductorQuantizer's settings, as recorded in run.json and hashed into the saved program's
    name: its default static config (HistogramObserver on uint8 per-tensor activations, per-channel
    symmetric int8 weights), with reduce_range (7-bit activations) where oneDNN runs int8 without VNNI, as
    get_default_x86_inductor_quantization_config advises for CPUs without VNNI
    (quantization.onednn_int8_saturates)."""
    from infermeter.quantization import onednn_int8_saturates

    reduce_range = onednn_int8_saturates()
    return {"config": "get_default_x86_inductor_quantization_config (static)",
            "activations": f"uint8 per-tensor affine, 0..{127 if reduce_range else 255}, HistogramObserver",
            "weights": "int8 per-channel symmetric, PerChannelMinMaxObserver", "reduce_range": reduce_range}


def pt2e_missing() -> str:
    """Why PT2E int8 cannot run here ('' when it can), without importing torch."""
    if not modules_missing("torchao"):
        return ""
    torch_dir = importlib.util.find_spec("torch")
    if torch_dir and torch_dir.submodule_search_locations and \
            (Path(next(iter(torch_dir.submodule_search_locations))) / "ao/quantization/quantize_pt2e.py").exists():
        return ""
    return "not installed: torchao (PT2E quantization moved out of torch 2.14; the torch extra has it)"


class _TorchEngineBase(Engine):
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

            from infermeter.engines.onnx_normalize import converter_error, import_optimizer, normalised_graph

            import_optimizer()

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
                    self.info["reshapes_folded"] = fold_constant_reshapes(module)
                    self.info["pads_folded"] = fold_constant_pads(module)
                    self.info["squeezes_folded"] = fold_constant_squeeze_axes(module)
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
            from infermeter.quantization import BF16_FLAGS, cpu_flags

            # native: the CPU's bfloat16 instructions; else oneDNN emulates bf16 (AVX512 without BF16) or
            # autocast falls back to its reference kernels
            self.info["cpu_bf16"] = {"native": sorted(cpu_flags() & set(BF16_FLAGS)),
                                     "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}

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
        return tuple(t.to(self.device, non_blocking=True) for t in staged)

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

            torch.cuda.reset_peak_memory_stats(self.device)

    def allocator_peak_mb(self) -> float | None:
        """torch's caching allocator: the peak of memory held by tensors (NVML's figure adds the context
        and the allocator's cache on top)."""
        if self.device.type != "cuda":
            return None
        import torch

        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def close(self) -> None:
        self.fn = self.module = None


@register_engine
class TorchEagerEngine(_TorchEngineBase):
    name = "torch"


@register_engine
class TorchScriptEngine(_TorchEngineBase):
    name = "torchscript"
    precisions = {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16")}
    no_path = {"int8": "torch's int8 path is PT2E + Inductor: use the torch-compile engine",
               "bf16": "a traced and frozen TorchScript graph is not run under autocast here; bf16 runs on the torch "
                       "and torch-compile engines"}

    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        super().prepare(model, artifacts, precision, max_batch)
        self.info.update(traced_input_shapes={}, optimize_for_inference={})
        self.activate(max_batch)

    def _build_callable(self, module, example_args: tuple):
        return module  # traced per shape at activation

    def activate(self, batch: int) -> None:
        """Trace, freeze and optimize for this batch size (static) or once for all (dynamic, traced at a
        batch of 2 so the batch axis stays general), timed into compile_s."""
        self.batch = batch
        self.fn = self.compiled_for(self.shape_key(batch), self._trace_shape)

    def _trace_shape(self, key):
        batch = self.fixed_batch or (min(2, self.max_batch) if key == DYNAMIC else key)
        example = self._device_args(self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0)))
        self.info["traced_input_shapes"][str(key)] = [str(tuple(t.shape)) for t in example]
        fn, self.info["optimize_for_inference"][str(key)] = self._trace(self.module, example)
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        return fn

    @staticmethod
    def _trace(module, example_args: tuple):
        """(the traced, frozen and, where it runs, optimized module; how optimize_for_inference went)."""
        import torch

        # TorchScript is deprecated in recent torch; the FutureWarnings would repeat in every worker log.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(module, example_args, strict=False, check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", FutureWarning)
                optimized = torch.jit.optimize_for_inference(frozen)
                optimized(*example_args)  # some graphs fail only when run after the rewrite
        except Exception as e:  # keep the frozen graph, and say why in info
            return frozen, f"not applied: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return optimized, "applied"


@register_engine
class TorchCompileEngine(_TorchEngineBase):
    name = "torch-compile"
    precisions = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
    no_path = {"int8": "the X86InductorQuantizer targets x86 CPUs; int8 on NVIDIA GPUs runs through the tensorrt "
                       "engine"}

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if ok and precision == "int8" and pt2e_missing():
            return False, pt2e_missing()
        return ok, why

    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        self.model, self.artifacts = model, artifacts
        super().prepare(model, artifacts, precision, max_batch)

    def _build_callable(self, module, example_args: tuple):
        import torch

        self.graphs: dict = {}  # shape key -> graphs TorchDynamo compiled at its activation
        self.info["graphs_compiled"] = {}
        if self.precision == "int8":
            return self._int8_callable(module, example_args)
        mode = self.ctx.options.compile_mode or ("max-autotune" if self.device.type == "cuda" else "default")
        static = self.shape_mode == "static"
        # static: dynamic=False specialises every graph to its input shape, so automatic dynamic shapes
        # never turns the second batch size into a dynamic-batch graph; each batch size is its own compile,
        # and the recompile limit must not stop a sweep's batch sizes from getting theirs.
        torch._dynamo.config.automatic_dynamic_shapes = not static
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        self.info.update({"compile_mode": mode, "dynamic": not static})
        if not static:
            self.info["dynamic_note"] = ("one dynamic graph for batch sizes >= 2; batch 1 gets its own graph "
                                         "(TorchDynamo specialises sizes 0 and 1)")
        return torch.compile(module, mode=mode, dynamic=not static)

    def activate(self, batch: int) -> None:
        """Compile for this shape now (torch.compile compiles at the first call), so the compile is timed
        into compile_s, not into the first measured call."""
        self.batch = batch
        if self.shape_mode == "dynamic" and batch == 1:
            key = 1  # TorchDynamo specialises batch 1 even in a dynamic graph
        else:
            key = self.shape_key(batch)
        self.compiled_for(key, self._compile_shape)

    def _compile_shape(self, key):
        from torch._dynamo.utils import counters

        batch = max(2, self.max_batch) if key == DYNAMIC else key
        staged = self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0))
        before = counters["stats"]["unique_graphs"]
        self._run_to_host(staged)
        self.graphs[key] = counters["stats"]["unique_graphs"] - before
        self.info["graphs_compiled"][str(key)] = self.graphs[key]
        return key

    def _int8_callable(self, module, example_args: tuple):
        """PT2E: export, insert the X86InductorQuantizer's observers, calibrate, convert, compile with
        freezing. The quantized program is saved in the store (torch.export.save), keyed by the
        calibration set's hash, so a later run only loads and compiles it."""
        import torch
        import torch._inductor.config as inductor_config

        from infermeter.quantization import calibration_set, quantization_facts, recipe_tag

        calib = calibration_set(self.model, self.ctx.options.calibration_items)
        prepare_pt2e, convert_pt2e, xiq, origin = pt2e_api()
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic = tuple({0: batch} for _ in example_args)
        recipe = pt2e_recipe()
        name = f"torch_int8_pt2e_x86inductor_{recipe_tag(recipe)}_{calib.sha256[:16]}.pt2"

        def build(tmp: Path) -> None:
            exported = torch.export.export(module, example_args, dynamic_shapes=dynamic).module()
            quantizer = xiq.X86InductorQuantizer().set_global(
                xiq.get_default_x86_inductor_quantization_config(reduce_range=recipe["reduce_range"]))
            prepared = prepare_pt2e(exported, quantizer)
            with torch.no_grad():
                for item in calib.items:  # one item per call, as the calibration set is defined
                    prepared(*self._device_args(self._tensors(item, resident=False)))
            converted = convert_pt2e(prepared)
            torch.export.save(torch.export.export(converted, example_args, dynamic_shapes=dynamic), str(tmp))

        path = self.artifacts.build(name, build)  # its time is part of build_s (prepare times this call)
        quantized = torch.export.load(str(path)).module()
        inductor_config.freezing = True  # constant-folds and prepacks the int8 weights
        self.info.update(quantization_facts(calib, f"PT2E ({origin}) X86InductorQuantizer", **recipe),
                         compile_mode="default", inductor_freezing=True, int8_program=str(path))
        return torch.compile(quantized)


def fold_constant_reshapes(gm) -> int:
    """Replace onnx2torch Reshape modules whose target shape is a stored constant by a plain
    torch.reshape with that shape. onnx2torch builds the shape with torch.Size(tensor), which
    TorchDynamo cannot trace (torch.compile fails on every tf2onnx export with a Flatten); the folded
    graph computes the same function. Shapes containing 0 ("copy this dim") are left alone."""
    import torch
    from onnx2torch.node_converters.reshape import OnnxReshape

    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), OnnxReshape):
            continue
        data, const = node.args[0], _constant_of(gm, node.args[1])
        if const is None:
            continue
        shape = [int(v) for v in const.reshape(-1).tolist()]
        if 0 in shape:
            continue
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(torch.reshape, (data, tuple(shape)))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)


def _recompiled(gm, folded: int) -> int:
    """After a fold pass: drop what it left dead and regenerate the module's code (only if it changed)."""
    if folded:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return folded


def _constant_of(gm, node):
    """The tensor behind a get_attr node, else None."""
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def fold_constant_pads(gm) -> int:
    """Replace onnx2torch's OnnxPadDynamic whose pads (and fill value) are stored constants by a plain
    F.pad with those pads. It reads the pads with .tolist() at run time, which torch.export turns into
    data-dependent sizes that PT2E quantization cannot reason about; the folded graph computes the same."""
    import torch.nn.functional as F
    from onnx2torch.node_converters.pad import (
        OnnxPadDynamic,
        _onnx_padding_to_torch,
        _torch_padding_to_mode_format,
    )

    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), OnnxPadDynamic):
            continue
        mode = gm.get_submodule(node.target).mode
        pads = _constant_of(gm, node.args[1]) if len(node.args) > 1 else None
        if pads is None or len(node.args) > 3:
            continue
        value = 0.0
        if len(node.args) == 3 and node.args[2] is not None:
            const = _constant_of(gm, node.args[2])
            if const is None:
                continue
            value = float(const.reshape(-1)[0])
        torch_pads = _torch_padding_to_mode_format(_onnx_padding_to_torch([int(v) for v in pads.reshape(-1).tolist()]),
                                                   mode)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(F.pad, (node.args[0], tuple(torch_pads)), {"mode": mode, "value": value})
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)


def fold_constant_squeeze_axes(gm) -> int:
    """Replace onnx2torch's (Un)squeeze with axes as an input (opset 13+) by torch.(un)squeeze with the
    stored axes. It sorts the axes tensor and reads each with .item() at run time, which torch.export
    turns into data-dependent sizes (PT2E quantization of a ResNet50 export stops there); the folded
    graph computes the same."""
    import torch
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes

    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 2:
            continue
        module = gm.get_submodule(node.target)
        if not isinstance(module, (OnnxSqueezeDynamicAxes, OnnxUnsqueezeDynamicAxes)):
            continue
        axes = _constant_of(gm, node.args[1])
        if axes is None or axes.numel() == 0:
            continue
        axes = [int(a) for a in axes.reshape(-1).tolist()]
        with gm.graph.inserting_after(node):
            if isinstance(module, OnnxSqueezeDynamicAxes):
                new = gm.graph.call_function(torch.squeeze, (node.args[0], tuple(axes)))
            else:  # ONNX Unsqueeze inserts at the listed output positions, in ascending order
                new = node.args[0]
                for a in sorted(axes):
                    new = gm.graph.call_function(torch.unsqueeze, (new, a))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)

"""The `torch-compile` engine: torch.compile (Inductor) per batch size, or one dynamic graph.

int8 (on the CPU): PT2E quantization with the X86InductorQuantizer on the shared calibration set
(quantization.pt2e_api / pt2e_recipe), then torch.compile with Inductor freezing, the path torch
documents for x86 int8 inference.
"""

from __future__ import annotations

from pathlib import Path

from infermeter.engines.base import DYNAMIC, register_engine
from infermeter.engines.torch_common import CHANNELS_LAST, CONTIGUOUS, TorchEngineBase

RECOMPILE_LIMIT = 64  # compiled shapes per code object TorchDynamo keeps before falling back to eager


@register_engine
class TorchCompileEngine(TorchEngineBase):
    name = "torch-compile"
    precisions = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
    no_path = {"int8": "the X86InductorQuantizer targets x86 CPUs; int8 on NVIDIA GPUs runs through the tensorrt "
                       "engine"}
    # CUDA graphs (reduce-overhead) serve only a GPU
    tunables = {"compile_mode": {"cpu": ("default", "max-autotune-no-cudagraphs"),
                                 "cuda": ("default", "reduce-overhead", "max-autotune")}}

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        from infermeter.quantization import pt2e_missing

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
        self.compiled = {CONTIGUOUS: torch.compile(module, mode=mode, dynamic=not static)}  # memory format ->
        return self.compiled[CONTIGUOUS]

    def _compiled(self, fmt: str):
        """torch.compile of the module in memory format `fmt` (made at its first use)."""
        if fmt not in self.compiled:
            import torch

            self.compiled[fmt] = torch.compile(self._format_module(fmt), mode=self.info["compile_mode"],
                                               dynamic=self.info["dynamic"])
        return self.compiled[fmt]

    def activate(self, batch: int) -> None:
        """Compile for this shape now (torch.compile compiles at the first call), so the compile is timed
        into compile_s, not into the first measured call. Where the memory format is probed, the module is
        compiled in both formats and the faster serves this shape (the probe is part of compile_s)."""
        self.batch = batch
        if self.shape_mode == "dynamic" and batch == 1:
            key = 1  # TorchDynamo specialises batch 1 even in a dynamic graph
        else:
            key = self.shape_key(batch)
        self.fn, self.active_format = self.compiled_for(key, self._compile_shape)

    def _compile_shape(self, key):
        from torch._dynamo.utils import counters

        batch = max(2, self.max_batch) if key == DYNAMIC else key
        staged = self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0))
        before = counters["stats"]["unique_graphs"]
        if not self.probe_formats:
            self._run_to_host(staged)
            result = (self.fn, self.active_format)
        else:
            for fmt in (CONTIGUOUS, CHANNELS_LAST):
                self.fn, self.active_format = self._compiled(fmt), fmt
                self._run_to_host(staged)  # compiles this format's graph
            result = self.probe_memory_format(key, batch, {fmt: self.compiled[fmt] for fmt in self.compiled})
        self.graphs[key] = counters["stats"]["unique_graphs"] - before
        self.info["graphs_compiled"][str(key)] = self.graphs[key]
        return result

    def _int8_callable(self, module, example_args: tuple):
        """PT2E: export, insert the X86InductorQuantizer's observers, calibrate, convert, compile with
        freezing. The quantized program is saved in the store (torch.export.save), keyed by the
        calibration set's hash, so a later run only loads and compiles it."""
        import torch
        import torch._inductor.config as inductor_config

        from infermeter.quantization import (
            calibration_set,
            pt2e_api,
            pt2e_recipe,
            quantization_facts,
            recipe_tag,
        )

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

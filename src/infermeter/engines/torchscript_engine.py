"""The `torchscript` engine: the module traced, frozen and optimized for inference (torch.jit), once
per batch size with static shapes, once for all in dynamic mode."""

from __future__ import annotations

import warnings

from infermeter.engines.base import DYNAMIC, register_engine
from infermeter.engines.torch_common import CHANNELS_LAST, CONTIGUOUS, TorchEngineBase


@register_engine
class TorchScriptEngine(TorchEngineBase):
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
        batch of 2 so the batch axis stays general), timed into compile_s; where the memory format is
        probed, both formats are traced and the faster kept (the probe is part of compile_s)."""
        self.batch = batch
        self.fn, self.active_format = self.compiled_for(self.shape_key(batch), self._trace_shape)

    def _trace_shape(self, key):
        batch = self.fixed_batch or (min(2, self.max_batch) if key == DYNAMIC else key)
        traced = {}
        for fmt in ((CONTIGUOUS, CHANNELS_LAST) if self.probe_formats else (CONTIGUOUS,)):
            self.active_format = fmt  # the example's inputs in this format
            example = self._device_args(self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0)))
            self.info["traced_input_shapes"][str(key)] = [str(tuple(t.shape)) for t in example]
            traced[fmt], optimized = self._trace(self._format_module(fmt), example)
            self.info["optimize_for_inference"].setdefault(str(key), {})[fmt] = optimized
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        if not self.probe_formats:
            self.info["optimize_for_inference"][str(key)] = self.info["optimize_for_inference"][str(key)][CONTIGUOUS]
            return traced[CONTIGUOUS], CONTIGUOUS
        probe_batch = self.fixed_batch or (self.max_batch if key == DYNAMIC else key)
        return self.probe_memory_format(key, probe_batch, traced)

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

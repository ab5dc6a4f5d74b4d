"""The `torch` engine: the module run eagerly (see torch_common for loading, inputs and precisions)."""

from __future__ import annotations

from infermeter.engines.base import register_engine
from infermeter.engines.torch_common import CHANNELS_LAST, CONTIGUOUS, TorchEngineBase


@register_engine
class TorchEagerEngine(TorchEngineBase):
    name = "torch"

    def activate(self, batch: int) -> None:
        """Nothing to compile; where the memory format is probed, this batch size's probe (timed into its
        compile_s) picks the module that serves it."""
        self.batch = batch
        if self.probe_formats:
            self.fn, self.active_format = self.compiled_for(batch, self._probe)

    def _probe(self, batch: int):
        return self.probe_memory_format(batch, batch, {fmt: self._format_module(fmt) for fmt in (CONTIGUOUS,
                                                                                                   CHANNELS_LAST)})

"""The `torch` engine: the module run eagerly (see torch_common for loading, inputs and precisions)."""

from __future__ import annotations

from infermeter.engines.base import register_engine
from infermeter.engines.torch_common import TorchEngineBase


@register_engine
class TorchEagerEngine(TorchEngineBase):
    name = "torch"

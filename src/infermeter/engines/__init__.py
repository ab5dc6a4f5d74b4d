"""Engine registry. Importing an engine module registers it and imports no framework."""

from __future__ import annotations

import importlib

from infermeter.engines.base import ENGINES, Engine, EngineContext, EngineOptions, register_engine
from infermeter.errors import BadInput

# The engine modules; each registers its engines with @register_engine.
_FAMILIES = ("tensorflow", "keras_engine", "onnxruntime_engine", "torch_eager", "torchscript_engine",
             "torch_compile_engine", "tensorrt_engine", "openvino_engine")

ENGINE_ORDER = ("tf", "tf-xla", "keras", "keras-xla", "onnxruntime", "torch", "torchscript", "torch-compile",
                "tensorrt", "openvino")


def load_all() -> dict[str, type[Engine]]:
    for mod in _FAMILIES:
        try:
            importlib.import_module(f"infermeter.engines.{mod}")
        except ModuleNotFoundError as e:  # a family module not written yet must not hide the others
            if e.name != f"infermeter.engines.{mod}":
                raise
    return dict(sorted(ENGINES.items(), key=lambda kv: (ENGINE_ORDER.index(kv[0]) if kv[0] in ENGINE_ORDER else 99, kv[0])))


def get_engine(name: str) -> type[Engine]:
    engines = load_all()
    if name not in engines:
        raise BadInput(f"unknown engine {name!r}; choose from {', '.join(engines)}")
    return engines[name]


__all__ = ["ENGINES", "Engine", "EngineContext", "EngineOptions", "register_engine", "load_all", "get_engine"]

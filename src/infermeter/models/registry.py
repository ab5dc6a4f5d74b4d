"""Model registry: built-in names and aliases, ONNX files and user model folders."""

from __future__ import annotations

import importlib
from pathlib import Path

from infermeter.errors import BadInput
from infermeter.models.base import Model, ModelOptions

# name -> "module:Class"; modules import their framework lazily.
BUILTIN = {
    "mobilenet_v3_large": "infermeter.models.keras_apps:MobileNetV3Large",
    "resnet50": "infermeter.models.keras_apps:ResNet50",
    "bert_base_sentiment": "infermeter.models.bert_sentiment:BertBaseSentiment",
}


def _load(target: str) -> type[Model]:
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)


def builtin_models() -> dict[str, type[Model]]:
    out = {}
    for name, target in BUILTIN.items():
        try:
            out[name] = _load(target)
        except ModuleNotFoundError as e:
            if e.name != target.split(":")[0]:
                raise  # a real import error inside the module must not hide as "unknown model"
        except AttributeError:
            continue
    return out


def canonical_name(name: str) -> str | None:
    low = name.lower()
    for n, cls in builtin_models().items():
        if low == n or low in (a.lower() for a in cls.aliases):
            return n
    return None


def resolve_model(spec: str, options: ModelOptions | None = None) -> Model:
    """'mobilenet_v3_large' / 'MobileNetV3L' / 'path/model.onnx' / 'path/model_folder' -> Model."""
    options = options or ModelOptions()
    name = canonical_name(spec)
    if name is not None:
        return builtin_models()[name](options)
    p = Path(spec)
    if spec.lower().endswith(".onnx") or p.is_file():
        from infermeter.models.onnx_file import OnnxFileModel

        return OnnxFileModel(p, options)
    if p.is_dir():
        from infermeter.models.plugin import PluginModel

        return PluginModel(p, options)
    known = ", ".join(builtin_models())
    raise BadInput(f"unknown model {spec!r}: not a built-in ({known}), an .onnx file or a model folder")

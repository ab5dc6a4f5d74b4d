"""The engine contract: typed options from the run config, one GPU requirement check, shared ONNX helpers."""

import ast
import dataclasses
from pathlib import Path

import pytest

from infermeter.config import RunConfig
from infermeter.device import nvml_gpus
from infermeter.engines import EngineContext, EngineOptions, load_all

ENGINES_DIR = Path(__file__).resolve().parents[1] / "src" / "infermeter" / "engines"


class _OnnxModel:  # what Engine.supports reads from a model
    name = "any"
    sources = ("onnx", "keras", "torch")


def test_engine_options_come_from_the_run_config_and_are_frozen():
    cfg = RunConfig(device="cpu")
    opts = EngineOptions.from_config(cfg, streams=3)
    assert opts.streams == 3
    for f in dataclasses.fields(EngineOptions):
        if hasattr(cfg, f.name) and f.name != "streams":
            assert getattr(opts, f.name) == getattr(cfg, f.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.streams = 4
    with pytest.raises(ValueError, match="streams"):
        EngineOptions(streams=0)
    ctx = EngineContext("cpu", options=opts)
    assert not hasattr(ctx, "extra") and ctx.options.streams == 3


def test_the_gpu_requirement_is_checked_in_one_place():
    """Only the base engine asks NVML for a GPU; what it answers is what every engine on cuda says."""
    callers = [p.name for p in ENGINES_DIR.glob("*.py")
               if p.name != "base.py" and "nvml_gpus" in {n.id for n in ast.walk(ast.parse(p.read_text()))
                                                          if isinstance(n, ast.Name)}]
    assert callers == []
    has_gpu = bool(nvml_gpus()[0])
    for name, cls in load_all().items():
        if "cuda" not in cls.precisions:
            continue
        ok, why = cls.supports(_OnnxModel(), cls.precisions["cuda"][0], "cuda")
        if not has_gpu:
            assert not ok and "needs an NVIDIA GPU" in why, (name, why)
        if set(cls.precisions) == {"cuda"} and not has_gpu:
            assert "needs an NVIDIA GPU" in cls.available()[1] or "not installed" in cls.available()[1]


def test_engines_share_the_onnx_helpers_from_one_module():
    """feed_names / onnx_path_of / the fp16 copy live in models/onnx_graph.py; no engine imports them from another."""
    for p in ENGINES_DIR.glob("*.py"):
        imported = {n.module for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ImportFrom)}
        assert "infermeter.engines.onnxruntime_engine" not in imported, p.name

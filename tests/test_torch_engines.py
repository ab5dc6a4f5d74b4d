"""torch (eager), torchscript and torch-compile engines on tiny seeded models, checked against float64."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _tiny_models import TinyCNN, TinyCNNOnnxOnly, build_store, reference_float64, run_clients_concurrently

from infermeter.check import assert_informative, compare
from infermeter.device import nvml_gpus
from infermeter.engines import EngineContext, get_engine
from infermeter.models.base import InputSpec, Model

torch = pytest.importorskip("torch")
HAS_GPU = bool(nvml_gpus()[0])


@pytest.fixture(scope="module", params=[TinyCNN, TinyCNNOnnxOnly], ids=["torch-source", "onnx2torch"])
def tiny(request, tmp_path_factory):
    if request.param is TinyCNNOnnxOnly:
        pytest.importorskip("onnx2torch")
    model = request.param()
    store = build_store(model, tmp_path_factory.mktemp("artifacts"))
    inputs = model.check_inputs()
    reference = reference_float64(model, inputs)
    assert_informative(reference)
    return model, store, inputs, reference


def prepared(name: str, model, store, device: str = "cpu", precision: str = "fp32", **ctx):
    engine = get_engine(name)(EngineContext(device, num_threads=2, **ctx))
    engine.prepare(model, store, precision, max_batch=8)
    return engine


@pytest.mark.parametrize("name", ["torch", "torchscript"])
def test_cpu_engine_matches_reference_and_serves_two_clients(tiny, name):
    model, store, inputs, reference = tiny
    engine = prepared(name, model, store)
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "fp32")
    assert result.status == "pass", result.detail
    expected_source = "model.load_torch" if "torch" in model.sources else "onnx2torch"
    assert engine.info["source"].startswith(expected_source)
    assert engine.info["num_threads"] == 2
    if "torch" not in model.sources:
        assert engine.build_s > 0  # the onnx2torch conversion is reported as build time
    for start, stop, out in run_clients_concurrently(engine, engine.make_clients(2), inputs):
        check = compare(reference[start:stop], out, "fp32")
        assert check.status == "pass", f"rows {start}:{stop}: {check.detail}"


def test_torch_compile_cpu_compiles_at_first_call_and_matches(tmp_path):
    model = TinyCNN()
    store = build_store(model, tmp_path)
    inputs = model.check_inputs()
    reference = reference_float64(model, inputs)
    engine = prepared("torch-compile", model, store)
    assert engine.info["compile_mode"] == "default"
    # One batch shape throughout (rows 0..3, twice), so the clients never trigger a recompilation.
    first_rows = {k: v[:4] for k, v in inputs.items()}
    staged = engine.stage(first_rows)
    t0 = time.perf_counter()
    first = engine.to_numpy(engine.infer(staged))  # compilation happens here, not in prepare
    t1 = time.perf_counter()
    engine.infer(staged)
    t2 = time.perf_counter()
    assert t1 - t0 > 5 * (t2 - t1)
    assert compare(reference[:4], first, "fp32").status == "pass"
    doubled = {k: np.concatenate([v, v]) for k, v in first_rows.items()}
    for _, _, out in run_clients_concurrently(engine, engine.make_clients(2), doubled, rounds=2):
        check = compare(reference[:4], out, "fp32")
        assert check.status == "pass", check.detail


@pytest.mark.parametrize("name", ["torch", "torchscript", "torch-compile"])
def test_ingestion_path_and_memory_format_are_probed_and_recorded(tiny, name):
    """A conv model: the path the module came by, and per activated batch size the probe of contiguous vs
    channels_last, whose faster format serves it and whose time is part of the compile."""
    from infermeter.engines import torch_common as tc

    model, store, inputs, reference = tiny
    engine = prepared(name, model, store)
    ingestion = engine.info["ingestion"]
    assert ingestion["path"] == ("the model's own torch source" if "torch" in model.sources
                                 else "onnx2torch of model.onnx")
    assert ingestion["memory_format"] == tc.MEMORY_FORMAT_RULE
    assert engine.info["graph_source"] == ("torch-module" if "torch" in model.sources else "onnx2torch")
    form = engine.info["graph_form"]  # the module's own calls, counted from its fx graph or module tree
    assert form["nodes"] > 0 and form["ops"].get("Conv2d", 0) > 0 and form["transposes"] == 0
    batch = 5  # no other torch-compile test compiles TinyCNN at 5: TorchDynamo's cache outlives an engine
    engine.activate(batch)
    probe = engine.info["memory_format"][str(batch)]
    medians = probe["probe_median_ms"]
    assert set(medians) == {tc.CONTIGUOUS, tc.CHANNELS_LAST} and all(v > 0 for v in medians.values())
    assert probe["chosen"] == engine.active_format == min(medians, key=medians.get)
    assert probe["probe_rounds"] >= tc.PROBE_MIN_ROUNDS and engine.active_compile_s >= probe["probe_s"] > 0
    rows = {k: v[:batch] for k, v in inputs.items()}
    result = compare(reference[:batch], engine.to_numpy(engine.infer(engine.stage(rows))), "fp32")
    assert result.status == "pass", result.detail
    if name == "torch":  # the format not chosen computes the same function too
        other = tc.CHANNELS_LAST if engine.active_format == tc.CONTIGUOUS else tc.CONTIGUOUS
        engine.fn, engine.active_format = engine._format_module(other), other
        result = compare(reference[:batch], engine.to_numpy(engine.infer(engine.stage(rows))), "fp32")
        assert result.status == "pass", (other, result.detail)


class TwoInputModel(Model):
    """forward(scale, ids) while the specs list ids first: the engine must pass inputs by forward's names;
    integer ids must stay integers."""

    name = "two_input"
    sources = ("torch",)
    task = "generic"

    def input_specs(self):
        return [InputSpec("ids", "int64", (-1, 6)), InputSpec("scale", "float32", (-1, 1))]

    def sample_pool(self, n):
        rng = np.random.default_rng(7)
        return [{"ids": rng.integers(0, 20, (1, 6)), "scale": rng.uniform(0.5, 2, (1, 1)).astype(np.float32)}
                for _ in range(n)]

    def table(self) -> np.ndarray:
        return np.random.default_rng(3).standard_normal((20, 4)).astype(np.float32)

    def load_torch(self, store):
        table = torch.from_numpy(self.table())

        class ScaledBag(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = torch.nn.Embedding.from_pretrained(table)

            def forward(self, scale, ids):
                return self.embedding(ids).sum(dim=1) * scale

        return ScaledBag()


@pytest.mark.parametrize("name", ["torch", "torchscript"])
def test_inputs_follow_forward_parameter_names(tmp_path, name):
    from infermeter.artifacts import ArtifactStore

    model = TwoInputModel()
    inputs = model.check_inputs()
    reference = model.table().astype(np.float64)[inputs["ids"]].sum(axis=1) * inputs["scale"]
    engine = prepared(name, model, ArtifactStore(tmp_path, model.key()))
    assert engine.info["input_order"] == ["scale", "ids"]
    assert engine.info["ingestion"]["memory_format"].startswith("contiguous (not probed: no 2-D convolution")
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "fp32", task="generic")
    assert result.status == "pass", result.detail


def test_unsupported_combinations_say_why():
    model = TinyCNN()
    for name in ("torch", "torchscript", "torch-compile"):
        engine_cls = get_engine(name)
        assert engine_cls.available() == (True, "")
        ok, why = engine_cls.supports(model, "fp16", "cpu")
        assert not ok and "fp16" in why
        if not HAS_GPU:
            ok, why = engine_cls.supports(model, "fp32", "cuda")
            assert not ok and why
        assert engine_cls.supports(TinyCNNOnnxOnly(), "fp32", "cpu") == (True, "")


# ---- GPU (skipped without one) ----------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch", "torchscript"])
@pytest.mark.parametrize("precision,io", [("fp32", "host"), ("fp16", "host"), ("fp16", "device")])
def test_cuda_engine_matches_reference(tiny, name, precision, io):
    model, store, inputs, reference = tiny
    engine = prepared(name, model, store, "cuda", precision, gpu_id=0, io=io)
    staged = engine.stage(inputs)
    assert staged[0].is_cuda == (io == "device") and (io == "device" or staged[0].is_pinned())
    out = engine.to_numpy(engine.infer(staged))
    assert isinstance(out, np.ndarray)
    result = compare(reference, out, precision)
    assert result.status == "pass", result.detail

    timings = engine.staged_timings(inputs)
    assert timings.pop("stage_split_method").startswith("CUDA events")
    assert set(timings) == {"h2d_ms", "compute_ms", "d2h_ms"}
    assert all(v >= 0 for v in timings.values()) and timings["compute_ms"] > 0
    t0 = time.perf_counter()
    for _ in range(5):
        engine.infer(engine.stage(inputs))
    wall_ms = (time.perf_counter() - t0) * 1e3 / 5
    assert sum(timings.values()) < 20 * wall_ms  # the event split is of the order of a real call

    for start, stop, got in run_clients_concurrently(engine, engine.make_clients(2), inputs):
        check = compare(reference[start:stop], got, precision)
        assert check.status == "pass", check.detail

    engine.reset_allocator_peak()
    engine.infer(engine.stage(inputs))
    assert engine.allocator_peak_mb() > 0  # the activations of a real call passed through torch's allocator

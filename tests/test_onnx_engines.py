"""ONNX Runtime, OpenVINO and TensorRT engines on a tiny seeded CNN, checked against float64 torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _tiny_models import TinyCNN, build_store, reference_float64, run_clients_concurrently

from infermeter.artifacts import ArtifactStore
from infermeter.check import assert_informative, compare
from infermeter.device import nvml_gpus
from infermeter.engines import EngineContext, EngineOptions, get_engine
from infermeter.errors import EngineUnavailable

pytest.importorskip("torch")  # builds the tiny model and its float64 reference
HAS_GPU = bool(nvml_gpus()[0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = TinyCNN()
    store = build_store(model, tmp_path_factory.mktemp("artifacts"))
    inputs = model.check_inputs()
    reference = reference_float64(model, inputs)
    assert_informative(reference)  # distinct classes across inputs, or the comparisons prove nothing
    return model, store, inputs, reference


def prepared(name: str, tiny, precision: str = "fp32", **ctx):
    model, store, _, _ = tiny
    engine_cls = get_engine(name)
    ok, why = engine_cls.available()
    if not ok:
        pytest.skip(why)
    engine = engine_cls(EngineContext("cpu", num_threads=2, **ctx))
    engine.prepare(model, store, precision, max_batch=8)
    return engine


def test_onnxruntime_cpu_matches_reference(tiny):
    _, _, inputs, reference = tiny
    engine = prepared("onnxruntime", tiny)
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "fp32")
    assert result.status == "pass", result.detail
    assert engine.info["providers"][0] == "CPUExecutionProvider"
    assert engine.info["intra_op_num_threads"] == 2
    assert engine.load_s > 0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_openvino_cpu_matches_reference(tiny, precision):
    model, _, inputs, reference = tiny
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")  # what this CPU reports decides
    ok, why = get_engine("openvino").supports(model, precision, "cpu")
    assert ok == (precision.upper() in caps), (precision, caps, why)
    if not ok:
        assert "OPTIMIZATION_CAPABILITIES" in why  # fp16 on a CPU without FP16 capability must say so
        pytest.skip(why)
    engine = prepared("openvino", tiny, precision)
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), precision)
    assert result.status == "pass", result.detail
    assert engine.info["inference_precision"] == {"fp32": "f32", "fp16": "f16"}[precision]
    assert engine.info["performance_hint"] == "LATENCY" and engine.info["num_streams"] == 1


def test_openvino_reuses_cached_ir(tiny):
    model, store, _, _ = tiny
    first = prepared("openvino", tiny)
    again = prepared("openvino", tiny)
    assert store.get("openvino_ir") is not None
    assert again.build_s == 0.0 and again.info["ir"] == first.info["ir"]


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_two_clients_concurrently_give_correct_outputs(tiny, name):
    _, _, inputs, reference = tiny
    engine = prepared(name, tiny)
    engine.activate(len(reference) // 2)  # the clients run halves of the check inputs
    clients = engine.make_clients(2)
    assert len(clients) == 2
    calls = run_clients_concurrently(engine, clients, inputs)
    assert len(calls) == 12
    for start, stop, out in calls:
        result = compare(reference[start:stop], out, "fp32")
        assert result.status == "pass", f"rows {start}:{stop}: {result.detail}"
    if name == "openvino":
        assert engine.info["num_streams"] == 2 and engine.info["performance_hint"] == "THROUGHPUT"


def test_openvino_streams_hint_avoids_recompiling(tiny):
    engine = prepared("openvino", tiny, options=EngineOptions(streams=2))
    engine.activate(8)
    engine.infer(engine.stage(tiny[2]))  # compiled for the streams hint the worker passed
    engine.make_clients(2)
    assert engine.info["num_streams"] == 2
    assert len(engine.compile_s) == 1  # the clients run on that compiled model: no second compile


def test_onnxruntime_fp16_artifact_is_float16_and_close(tiny):
    """The fp16 graph onnxruntime (and TensorRT 11) use on CUDA: float16 weights, float32 inputs and
    outputs, outputs within fp16 tolerance (run here on the CPU provider, which has fp16 kernels)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from infermeter.engines.onnx_common import FP16_ARTIFACT, convert_to_fp16

    _, store, inputs, reference = tiny
    path = store.build(FP16_ARTIFACT, lambda tmp: convert_to_fp16(str(store.get("model.onnx")), tmp))
    graph = onnx.load(str(path)).graph
    float_inits = {i.data_type for i in graph.initializer if i.data_type in (onnx.TensorProto.FLOAT,
                                                                             onnx.TensorProto.FLOAT16)}
    assert float_inits == {onnx.TensorProto.FLOAT16}
    assert {i.type.tensor_type.elem_type for i in graph.input} == {onnx.TensorProto.FLOAT}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, inputs)[0]
    assert out.dtype == np.float32
    fp16_check = compare(reference, out, "fp16")
    assert fp16_check.status == "pass", fp16_check.detail
    assert fp16_check.max_abs_err > 1e-5  # really computed in half precision, not a float32 copy


def test_unsupported_combinations_say_why(tiny):
    model = tiny[0]
    ort = get_engine("onnxruntime")
    ok, why = ort.supports(model, "fp16", "cpu")
    assert not ok and "fp16" in why
    if not HAS_GPU:
        for name in ("onnxruntime", "openvino"):
            for precision in ("fp32", "fp16"):
                ok, why = get_engine(name).supports(model, precision, "cuda")
                assert not ok and why, (name, precision)


def test_tensorrt_is_unavailable_here_with_a_reason():
    trt = get_engine("tensorrt")
    ok, why = trt.available()
    if ok:
        pytest.skip("TensorRT and a GPU are present")
    assert "tensorrt" in why or "GPU" in why
    ok, why = trt.supports(TinyCNN(), "fp32", "cpu")
    assert not ok and "cpu" in why


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_missing_onnx_artifact_is_a_clear_error(tmp_path, name):
    engine_cls = get_engine(name)
    if not engine_cls.available()[0]:
        pytest.skip(engine_cls.available()[1])
    empty = ArtifactStore(tmp_path, "no-export")
    with pytest.raises(EngineUnavailable, match="model.onnx"):
        engine_cls(EngineContext("cpu", num_threads=1)).prepare(TinyCNN(), empty, "fp32", 8)


def test_engine_modules_import_no_framework():
    code = ("import sys, infermeter.engines as e; e.load_all(); "
            "print(','.join(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'onnx', 'tensorflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


# ---- GPU (skipped without one) ----------------------------------------------------------------------
gpu = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU: " + (nvml_gpus()[1] or "none"))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision,io", [("fp32", "host"), ("fp16", "device")])
def test_onnxruntime_cuda_matches_reference(tiny, precision, io):
    model, store, inputs, reference = tiny
    ok, why = get_engine("onnxruntime").supports(model, precision, "cuda")
    if not ok:
        pytest.skip(why)
    engine = get_engine("onnxruntime")(EngineContext("cuda", gpu_id=0, io=io))
    engine.prepare(model, store, precision, max_batch=8)
    assert engine.info["providers"][0] == "CUDAExecutionProvider"
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), precision)
    assert result.status == "pass", result.detail
    timings = engine.staged_timings(inputs)
    assert timings.pop("stage_split_method")  # ORT's host-clock split and TensorRT's CUDA events say so
    assert all(v >= 0 for v in timings.values()) and timings["compute_ms"] > 0


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_reference(tiny, precision):
    model, store, inputs, reference = tiny
    engine_cls = get_engine("tensorrt")
    ok, why = engine_cls.available()
    if not ok:
        pytest.skip(why)
    engine = engine_cls(EngineContext("cuda", gpu_id=0))
    engine.prepare(model, store, precision, max_batch=8)
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), precision)
    assert result.status == "pass", result.detail
    for start, stop, out in run_clients_concurrently(engine, engine.make_clients(2), inputs):
        assert compare(reference[start:stop], out, precision).status == "pass"
    timings = engine.staged_timings(inputs)
    assert timings.pop("stage_split_method")  # ORT's host-clock split and TensorRT's CUDA events say so
    assert all(v >= 0 for v in timings.values()) and timings["compute_ms"] > 0

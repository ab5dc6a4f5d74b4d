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


def test_onnxruntime_runs_the_way_its_probe_chose(tiny):
    """On the CPU each batch size runs the fastest of the probed ways, recorded in run_api; every way
    gives session.run's outputs bit for bit, and IO binding clients running at once on different inputs
    each get their own outputs."""
    import threading

    from _tiny_models import rows

    from infermeter.engines.onnxruntime_engine import IO_BINDING, SESSION_RUN

    _, _, inputs, _ = tiny
    engine = prepared("onnxruntime", tiny)
    half = len(next(iter(inputs.values()))) // 2
    engine.activate(half)
    candidates = engine.candidates[half]
    facts = engine.info["run_api"][str(half)]
    assert engine.way in candidates and facts["chosen"] == engine.way.name
    assert set(facts["probe_median_ms"]) == {way.name for way in candidates}
    assert all(ms > 0 for ms in facts["probe_median_ms"].values()) and facts["probe_rounds"] >= 3
    assert {way.api for way in candidates} == {SESSION_RUN, IO_BINDING}  # its outputs can be pre-allocated
    assert 0 < facts["probe_s"] <= engine.active_compile_s  # a one-off cost of the batch size's compile

    halves = [engine.stage(rows(inputs, 0, half)), engine.stage(rows(inputs, half, 2 * half))]
    expected = [engine.way.session.run(None, dict(h)) for h in halves]
    for got, want in zip(engine.infer(halves[0]), expected[0]):  # the check's path: the chosen way
        np.testing.assert_array_equal(got, want)
    for way in candidates:  # every candidate, whichever won on this machine
        for staged in halves:
            want = way.session.run(None, dict(staged))
            for got in (way.infer(staged), way.clients(1)[0](staged)):
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(g, w)
        if way.api != IO_BINDING:
            continue
        clients = way.clients(2)
        assert not np.shares_memory(clients[0].outputs[0], clients[1].outputs[0])
        want = [way.session.run(None, dict(h)) for h in halves]
        barrier, failures = threading.Barrier(2), []

        def work(k, clients=clients, want=want, barrier=barrier, failures=failures):
            barrier.wait(timeout=60)
            for _ in range(50):  # each client on its own half, both at once
                got = clients[k](halves[k])
                if not all(np.array_equal(g, w) for g, w in zip(got, want[k])):
                    failures.append(k)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, f"{way.name}: client outputs mixed up"
        assert all(clients[k].serial in halves[k].bindings for k in range(2))  # inputs bound once, kept


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
    from infermeter.models.onnx_graph import FP16_ARTIFACT, convert_to_fp16

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


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.engines(n)) for n in ("onnxruntime", "openvino")])
def test_missing_onnx_artifact_is_a_clear_error(tmp_path, name):
    engine_cls = get_engine(name)
    empty = ArtifactStore(tmp_path, "no-export")
    with pytest.raises(EngineUnavailable, match="model.onnx"):
        engine_cls(EngineContext("cpu", num_threads=1)).prepare(TinyCNN(), empty, "fp32", 8)


def test_engine_modules_import_no_framework():
    code = ("import sys, infermeter.engines as e; e.load_all(); "
            "print(','.join(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'onnx', 'tensorflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


# ---- GPU (the gpu marker skips without one: conftest.py) ------------------------------------------------
@pytest.mark.gpu
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
@pytest.mark.engines("tensorrt")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_reference(tiny, precision):
    model, store, inputs, reference = tiny
    engine_cls = get_engine("tensorrt")
    engine = engine_cls(EngineContext("cuda", gpu_id=0))
    engine.prepare(model, store, precision, max_batch=8)
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), precision)
    assert result.status == "pass", result.detail
    for start, stop, out in run_clients_concurrently(engine, engine.make_clients(2), inputs):
        assert compare(reference[start:stop], out, precision).status == "pass"
    timings = engine.staged_timings(inputs)
    assert timings.pop("stage_split_method")  # ORT's host-clock split and TensorRT's CUDA events say so
    assert all(v >= 0 for v in timings.values()) and timings["compute_ms"] > 0

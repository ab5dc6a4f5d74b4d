"""int8 and bf16: calibration sets, quantized engines gated against float64, wrong quantization caught,
and skipped rows derived from what this machine reports."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest
from _tiny_models import TinyCNN, TinyCNNOnnxOnly, build_store, reference_float64

from infermeter.check import compare
from infermeter.config import RunConfig
from infermeter.device import cpu_has_bf16, cpu_has_vnni
from infermeter.engines import EngineContext, EngineOptions, get_engine, load_all
from infermeter.errors import BadInput
from infermeter.models.base import ModelOptions
from infermeter.models.keras_apps import MobileNetV3Large, ResNet50
from infermeter.quantization import input_sets, item_hash, qdq_artifact_name

CALIB = 16
HELD = 24


def _check_hashes(model) -> set[str]:
    batch = model.check_inputs()
    k = len(next(iter(batch.values())))
    return {item_hash({n: a[i:i + 1] for n, a in batch.items()}) for i in range(k)}


def test_calibration_and_heldout_sets_are_real_photo_crops_disjoint_from_the_check_inputs():
    model = MobileNetV3Large(ModelOptions(input_shapes=[[1, 64, 64, 3]]))
    cal, held = input_sets(model, CALIB, HELD)
    assert (len(cal), len(held)) == (CALIB, HELD)
    check = _check_hashes(model)
    cal_items = {item_hash(it) for it in cal.items}
    held_items = {item_hash(it) for it in held.items}
    assert len(cal_items) == CALIB and len(held_items) == HELD  # distinct crops
    assert not (cal_items & check) and not (held_items & check) and not (cal_items & held_items)
    first = cal.items[0]["images"]
    assert first.shape == (1, 64, 64, 3) and first.std() > 10  # a photo, not a constant image
    again, _ = input_sets(model, CALIB, HELD)
    assert again.sha256 == cal.sha256  # deterministic, so the artifact key is stable
    other, _ = input_sets(MobileNetV3Large(ModelOptions(input_shapes=[[1, 64, 64, 3]], seed=1)), CALIB, HELD)
    assert other.sha256 != cal.sha256
    assert cal.facts() == {"items": CALIB, "sha256": cal.sha256, "disjoint_from_check_inputs": True}


def test_a_pool_that_repeats_a_check_input_is_refused():
    class Repeating(TinyCNN):
        def sample_pool(self, n):
            return super().sample_pool(1) * n  # every item the same

    with pytest.raises(BadInput, match="repeat a check input"):
        input_sets(Repeating(), CALIB, HELD)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    model = TinyCNNOnnxOnly()
    store = build_store(model, tmp_path_factory.mktemp("artifacts"))
    inputs = model.check_inputs()
    return model, store, inputs, reference_float64(model, inputs)


def _prepared(name: str, model, store, precision: str):
    cls = get_engine(name)
    for ok, why in (cls.available(), cls.supports(model, precision, "cpu")):
        if not ok:
            pytest.skip(f"{name} {precision}: {why}")
    engine = cls(EngineContext("cpu", num_threads=2, options=EngineOptions(calibration_items=CALIB)))
    engine.prepare(model, store, precision, max_batch=8)
    return engine


def test_onnxruntime_int8_passes_the_gate_and_is_cached_by_calibration_hash(tiny):
    model, store, inputs, reference = tiny
    cal, _ = input_sets(model, CALIB, 1)
    engine = _prepared("onnxruntime", model, store, "int8")
    assert engine.build_s > 0
    assert engine.info["calibration_set"]["sha256"] == cal.sha256
    assert engine.info["calibration_set"]["items"] == CALIB
    flavour = engine.info["quantization"]["flavour"]
    assert flavour == ("u8s8-r7" if platform.machine().lower() in ("x86_64", "amd64") and not cpu_has_vnni()
                       else "u8s8")  # ONNX Runtime's x86 format: uint8 activations, 7-bit weights without VNNI
    assert engine.info["quantization"]["activation_type"] == "QUInt8"
    assert engine.info["model_file"].endswith(qdq_artifact_name(cal, flavour))
    assert cal.sha256[:16] in engine.info["model_file"]
    assert engine.info["quantization"]["per_channel"] and engine.info["quantization"]["calibrate_method"]
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail
    again = _prepared("onnxruntime", model, store, "int8")  # cache hit: nothing rebuilt
    assert again.build_s == 0.0 and again.info["model_file"] == engine.info["model_file"]


def test_a_qdq_scale_off_by_ten_is_caught_by_the_int8_gate(tiny, tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model, store, inputs, reference = tiny
    engine = _prepared("onnxruntime", model, store, "int8")
    proto = onnx.load(engine.info["model_file"])
    inits = {i.name: i for i in proto.graph.initializer}
    # The scale of the first activation that a DequantizeLinear reads back (Q and DQ share it in QDQ form):
    # 10x too small clips that activation at a tenth of its calibrated range.
    dq = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear"
              and numpy_helper.to_array(inits[n.input[1]]).ndim == 0 and n.input[0] not in inits)
    scale = inits[dq.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) / 10, scale.name))
    wrong = tmp_path / "wrong.onnx"
    onnx.save(proto, str(wrong))
    sess = ort.InferenceSession(str(wrong), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: inputs["pixels"]})[0]
    result = compare(reference, got, "int8")
    assert result.status == "mismatch" and "SNR" in result.detail
    right = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert right.status == "pass" and right.snr_db > result.snr_db + 10


SMALL = [[1, 96, 96, 3]]  # the built-in Keras models at 96x96: seconds per engine on 2 cores


@pytest.fixture(scope="module")
def keras_small(tmp_path_factory):
    """cls -> (model, store, check inputs, float64 reference) of a built-in Keras model at 96x96 with its
    synthetic weights, each built once for this module."""
    from infermeter.artifacts import ArtifactStore
    from infermeter.models.reference import read_reference

    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("keras_small")
    built: dict = {}

    def get(cls):
        if cls not in built:
            model = cls(ModelOptions(input_shapes=SMALL))
            store = ArtifactStore(root, model.key())
            # Keras/TensorFlow build the artifacts in their own process, as in a sweep's worker: TensorFlow
            # loaded first makes a later import of triton's native module (torch.compile tests) crash the
            # test process.
            code = ("import sys; from infermeter.artifacts import ArtifactStore; from infermeter.models.base import "
                    f"ModelOptions; from infermeter.models.keras_apps import {cls.__name__} as M; "
                    f"m = M(ModelOptions(input_shapes={SMALL})); "
                    "m.build_artifacts(ArtifactStore(sys.argv[1], m.key()), {'onnx', 'reference'})")
            subprocess.run([sys.executable, "-c", code, str(root)], check=True, timeout=900)
            built[cls] = (model, store, *read_reference(store))
        return built[cls]

    return get


@pytest.mark.parametrize("cls", [MobileNetV3Large, ResNet50], ids=["mobilenet_v3_large", "resnet50"])
def test_synthetic_keras_weights_keep_their_answers_under_int8(cls, keras_small):
    """The built-in models' synthetic weights are informative and still tell inputs apart after ONNX Runtime's
    QDQ int8 (the reason they are shaped as they are): the gate passes against the float64 reference, and
    held-out top-1 agreement with fp32 is well above what a wrong quantization gives."""
    from infermeter.check import assert_informative
    from infermeter.quantization import heldout_accuracy

    model, store, inputs, reference = keras_small(cls)
    assert assert_informative(reference)["reference_distinct_top1"] >= 4
    engine = _prepared("onnxruntime", model, store, "int8")
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail
    _, held = input_sets(model, CALIB, 64)
    accuracy = heldout_accuracy(engine, model, store, held, max_batch=8)
    assert accuracy.top1_agreement_fp32 >= 0.85, accuracy


def test_openvino_int8_runs_int8_layers_and_passes_the_gate(tiny):
    pytest.importorskip("openvino")
    model, store, inputs, reference = tiny
    engine = _prepared("openvino", model, store, "int8")
    assert engine.info["calibration_set"]["sha256"] == input_sets(model, CALIB, 1)[0].sha256
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail
    assert engine.info["int8_layers"] > 0  # read from the model compiled for these inputs' shape


@pytest.mark.parametrize("name", ["openvino", "torch-compile"])
def test_mobilenet_v3_int8_passes_the_gate_with_the_recipe_for_this_cpu(name, keras_small):
    """MobileNetV3-Large (hard-swish, squeeze-excite, depthwise convolutions: the hard case for int8 after
    training) passes the int8 gate on OpenVINO (NNCF) and torch-compile (PT2E), with the 7-bit remedy of
    each quantizer exactly where oneDNN's int8 kernels saturate (no VNNI here, or oneDNN capped below it),
    and the recipe in the cached artifact's name."""
    from infermeter.quantization import heldout_accuracy, onednn_int8_saturates, recipe_tag

    model, store, inputs, reference = keras_small(MobileNetV3Large)
    engine = _prepared(name, model, store, "int8")
    recipe = engine.info["quantization"]
    saturates = onednn_int8_saturates()
    if name == "openvino":
        assert recipe["preset"] == "MIXED"  # hard-swish and squeeze-excite multiply computed tensors
        assert recipe["overflow_fix"] == ("ENABLE" if saturates else "DISABLE")
        artifact = engine.info["ir"]
    else:
        assert recipe["reduce_range"] is saturates
        assert ("0..127" if saturates else "0..255") in recipe["activations"]
        artifact = engine.info["int8_program"]
    assert recipe_tag({k: v for k, v in recipe.items() if k != "method"}) in artifact  # another recipe can never reuse this artifact
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail
    _, held = input_sets(model, CALIB, 64)
    accuracy = heldout_accuracy(engine, model, store, held, max_batch=8)
    assert accuracy.top1_agreement_fp32 >= 0.85 and accuracy.snr_db >= 12, accuracy


def test_onednn_saturation_follows_the_cpu_and_onednn_isa_cap(monkeypatch):
    from infermeter.quantization import ONEDNN_ISAS_WITHOUT_VNNI, onednn_int8_saturates

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert onednn_int8_saturates() is (x86 and not cpu_has_vnni())
    for cap in ONEDNN_ISAS_WITHOUT_VNNI:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap.lower())
        assert onednn_int8_saturates() is x86
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert onednn_int8_saturates() is (x86 and not cpu_has_vnni())


def test_openvino_bf16_runs_in_bf16_where_the_cpu_has_native_bf16(tiny):
    """Where the CPU reports AVX512-BF16 or AMX-BF16, OpenVINO must offer bf16, compile in it and pass the
    bf16 gate; on a CPU without them the row is skipped with OpenVINO's capabilities as the reason."""
    pytest.importorskip("openvino")
    model, store, inputs, reference = tiny
    ok, why = get_engine("openvino").supports(model, "bf16", "cpu")
    if cpu_has_bf16():
        assert ok, why
    elif not ok:
        assert "BF16" in why and "OPTIMIZATION_CAPABILITIES" in why
        pytest.skip(f"this CPU has no native bf16 ({why})")
    engine = _prepared("openvino", model, store, "bf16")
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "bf16")
    assert engine.info["inference_precision"] == "bf16"  # read back from the compiled model
    assert result.status == "pass", result.detail
    assert result.rel_err > compare(reference, reference.astype(np.float32), "fp32").rel_err  # really reduced


@pytest.mark.parametrize("name", ["torch", "torch-compile"])
def test_torch_bf16_on_a_cpu_with_native_bf16_passes_and_says_so(tiny, name):
    """torch's autocast bf16 records whether the CPU computes bf16 natively; where it does (AVX512-BF16 or
    AMX-BF16) oneDNN must report bf16 support and the gate must pass. Skipped on a CPU without them (there
    autocast still runs, emulated, as test_torch_bf16_autocast_passes_the_bf16_gate checks)."""
    pytest.importorskip("torch")
    if not cpu_has_bf16():
        pytest.skip("this CPU reports neither avx512_bf16 nor amx_bf16")
    model = TinyCNN()
    _, store, inputs, reference = tiny
    engine = _prepared(name, model, store, "bf16")
    assert engine.info["cpu_bf16"]["native"] and engine.info["cpu_bf16"]["mkldnn_bf16_supported"]
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "bf16")
    assert result.status == "pass", result.detail


def test_torch_bf16_autocast_passes_the_bf16_gate(tiny):
    pytest.importorskip("torch")
    model = TinyCNN()
    _, store, inputs, reference = tiny
    engine = _prepared("torch", model, store, "bf16")
    assert engine.info["autocast"] == "bfloat16"
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "bf16")
    assert result.status == "pass", result.detail
    assert result.rel_err > compare(reference, reference.astype(np.float32), "fp32").rel_err  # really reduced


def test_skipped_rows_follow_what_this_machine_reports():
    from infermeter.plan import plan

    cfg = RunConfig(engines=["all"], precisions=["fp32", "bf16", "int8"], batch_sizes=[1], device="cpu")
    model = MobileNetV3Large(ModelOptions(input_shapes=[[1, 64, 64, 3]]))
    groups = {(g.engine, g.precision): g for g in plan(cfg, [model], "cpu")}
    engines = load_all()
    for name in ("tf", "keras", "torchscript", "onnxruntime"):
        if name in engines and engines[name].available()[0]:
            assert groups[(name, "bf16")].skip_reason, name
    if engines["tf"].available()[0]:
        assert "int8" in groups[("tf", "int8")].skip_reason
    if engines["torchscript"].available()[0]:
        assert "torch-compile" in groups[("torchscript", "int8")].skip_reason
    if engines["openvino"].available()[0]:
        from infermeter.engines.openvino_engine import _device_facts

        caps = _device_facts("CPU")[1]
        for precision, cap in (("bf16", "BF16"), ("int8", "INT8")):
            reason = groups[("openvino", precision)].skip_reason
            if cap in caps:
                assert reason is None, reason
            else:
                assert cap in reason and "OPTIMIZATION_CAPABILITIES" in reason
    auto = {g.precision for g in plan(RunConfig(engines=["onnxruntime"], batch_sizes=[1], device="cpu"), [model], "cpu")}
    assert auto == {"fp32"}  # int8 and bf16 only when asked: they build calibrated artifacts


def test_torch_compile_int8_pt2e_passes_the_gate_and_reuses_the_saved_program(tiny):
    pytest.importorskip("torch")
    model, store, inputs, reference = tiny
    engine = _prepared("torch-compile", model, store, "int8")
    assert "X86InductorQuantizer" in engine.info["quantization"]["method"] and engine.info["inductor_freezing"]
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail
    again = _prepared("torch-compile", model, store, "int8")
    assert again.info["int8_program"] == engine.info["int8_program"]
    assert input_sets(model, CALIB, 1)[0].sha256[:16] in again.info["int8_program"]


def test_int8_through_the_sweep_and_the_report(tmp_path):
    """A sweep over fp32 and int8 records the calibration set in run.json and agreement/SNR in every int8 row;
    the report plots speed against agreement and leaves out int8 cells below --min-agreement."""
    import json

    import torch

    from infermeter.analysis.load import load_results
    from infermeter.analysis.report import best_by_batch, build_report, report_main
    from infermeter.results.writer import read_results
    from infermeter.sweep import run_sweep

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(1),
                              torch.nn.LazyLinear(10)).eval()
    net(torch.zeros(1, 3, 16, 16))
    path = tmp_path / "small.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    cfg = RunConfig(model=str(path), engines=["onnxruntime", "tf"], precisions=["fp32", "int8"], batch_sizes=[1, 4],
                    device="cpu", iterations=6, warmup=1, min_iterations=1, idle_time=0, quiet=True,
                    calibration_items=CALIB, heldout_items=HELD, results_dir=str(tmp_path / "results"),
                    cache_dir=str(tmp_path / "cache"))
    status, s = run_sweep(cfg)
    rows = read_results(s.out_dir / "results.csv")
    int8 = [r for r in rows if r["engine"] == "onnxruntime" and r["precision"] == "int8"]
    assert len(int8) == 2 and all(r["status"] == "ok" for r in int8), [r["error"] for r in int8]
    for r in int8:
        assert int(r["heldout_items"]) == HELD and 0 <= float(r["top1_agreement_fp32"]) <= 1 and float(r["snr_db"]) > 0
    assert all(r["top1_agreement_fp32"] is None for r in rows if r["precision"] == "fp32")
    assert {r["status"] for r in rows if r["engine"] == "tf"} == {"skipped"}
    info = json.loads((s.out_dir / "run.json").read_text())
    settings = next(v["settings"] for k, v in info["engines"].items() if k.startswith("onnxruntime/int8"))
    model = __import__("infermeter.models.registry", fromlist=["resolve_model"]).resolve_model(
        str(path), ModelOptions(input_shapes=None))
    assert settings["calibration_set"] == {"items": CALIB, "sha256": input_sets(model, CALIB, 1)[0].sha256,
                                           "disjoint_from_check_inputs": True}
    assert settings["heldout_set"]["items"] == HELD

    df = load_results([str(s.out_dir)])
    agreement = min(float(r["top1_agreement_fp32"]) for r in int8)
    strict = best_by_batch(df, min_agreement=1.0 + 1e-9)  # no int8 cell can compete
    assert not strict["by throughput"].str.contains("int8").any()
    loose = best_by_batch(df, min_agreement=agreement)  # every int8 cell competes
    assert (loose.iloc[:, -1] == "–").all()
    written = build_report([str(s.out_dir)], tmp_path / "report", min_agreement=0.99)
    assert any(k.startswith("plot:speed_vs_agreement") for k in written)
    assert report_main([str(s.out_dir)], str(tmp_path / "r2"), min_agreement=1.5) == 2
    assert status == 0


def _gpu_engine(name: str, model, precision: str):
    cls = get_engine(name)
    for ok, why in (cls.available(), cls.supports(model, precision, "cuda")):
        if not ok:
            pytest.skip(f"{name} {precision} on cuda: {why}")
    return cls(EngineContext("cuda", gpu_id=0, options=EngineOptions(calibration_items=CALIB)))


@pytest.mark.gpu
def test_tensorrt_int8_from_the_shared_qdq_graph_passes_the_gate(tiny):
    model, store, inputs, reference = tiny
    engine = _gpu_engine("tensorrt", model, "int8")
    engine.prepare(model, store, "int8", max_batch=8)
    assert engine.info["calibration_set"]["sha256"] == input_sets(model, CALIB, 1)[0].sha256
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "int8")
    assert result.status == "pass", result.detail


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch", "torch-compile"])
def test_torch_bf16_autocast_on_the_gpu_passes_the_bf16_gate(tiny, name):
    _, store, inputs, reference = tiny
    model = TinyCNN()
    engine = _gpu_engine(name, model, "bf16")
    engine.prepare(model, store, "bf16", max_batch=8)
    assert engine.info["autocast"] == "bfloat16"
    result = compare(reference, engine.to_numpy(engine.infer(engine.stage(inputs))), "bf16")
    assert result.status == "pass", result.detail

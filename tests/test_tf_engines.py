"""TF/TF-XLA/Keras/Keras-XLA engines on a small MobileNetV3-Large against the float64 reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from infermeter.artifacts import ArtifactStore
from infermeter.check import compare
from infermeter.device import nvml_gpus
from infermeter.engines import EngineContext, get_engine, load_all
from infermeter.errors import EngineUnavailable
from infermeter.models.base import ModelOptions
from infermeter.models.keras_apps import INPUT_NAME, MobileNetV3Large
from infermeter.models.reference import read_reference

ENGINES = ("tf", "tf-xla", "keras", "keras-xla")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (an optional engine family)")
    cache = tmp_path_factory.mktemp("cache")
    model = MobileNetV3Large(ModelOptions(input_shapes=[[1, 64, 64, 3]]))
    store = ArtifactStore(cache, model.key())
    model.build_artifacts(store, {"keras", "reference"})  # engines build their own derived formats if missing
    inputs, outputs = read_reference(store.path("reference.npz"))
    return model, store, inputs, outputs, str(cache)


def prepared(name, setup, device="cpu", precision="fp32", io="host"):
    model, store, _, _, cache = setup
    engine = get_engine(name)(EngineContext(device, num_threads=2, io=io, cache_dir=cache))
    engine.prepare(model, store, precision, max_batch=8)
    return engine


def test_engines_registered_with_their_contract():
    engines = load_all()
    for name in ENGINES:
        cls = engines[name]
        assert cls.available() == (True, "")
        assert cls.sources == ("keras",)
        assert cls.precisions == {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16")}
        assert cls.supports(MobileNetV3Large(), "fp32", "cpu") == (True, "")
        assert cls.supports(MobileNetV3Large(), "fp16", "cpu")[0] is False
    assert engines["tf"].family == engines["tf-xla"].family == "tensorflow"


def test_importing_engines_imports_no_framework():
    code = ("import sys, infermeter.engines as e; e.load_all(); "
            "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", ENGINES)
def test_engine_matches_float64_reference(name, setup):
    _, store, inputs, reference, _ = setup
    engine = prepared(name, setup)
    assert engine.info["xla"] is name.endswith("-xla")
    assert engine.info["device"] == "/CPU:0" and engine.info["inter_op_threads"] in (0, 1)
    assert engine.info["math_mode"] == {"tensor_float_32_execution": False}  # fp32 = IEEE, read back from TF
    assert engine.load_s > 0 and engine.build_s >= 0
    assert engine.info["artifact_cached"] is (engine.build_s == 0.0)
    assert store.valid("savedmodel" if name.startswith("tf") else "model.keras")
    out = engine.infer(engine.stage(inputs))
    result = compare(reference, engine.to_numpy(out), "fp32")
    assert result.status == "pass", f"{name}: {result.detail}"
    # one item alone gives that item's row (static shapes: batch 1 is its own trace)
    engine.activate(1)
    single = engine.to_numpy(engine.infer(engine.stage({INPUT_NAME: inputs[INPUT_NAME][5:6]})))
    assert single.shape == (1, reference.shape[1])
    assert compare(reference[5:6], single, "fp32", task="generic").status == "pass"
    engine.close()


def test_device_resident_inputs_give_the_same_outputs(setup):
    import tensorflow as tf

    _, _, inputs, reference, _ = setup
    engine = prepared("keras", setup, io="device")
    staged = engine.stage(inputs)
    assert isinstance(staged[INPUT_NAME], tf.Tensor)
    assert compare(reference, engine.to_numpy(engine.infer(staged)), "fp32").status == "pass"


def test_cuda_without_gpu_says_why(setup):
    if nvml_gpus()[0]:
        pytest.skip("a GPU is present")
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU")
    with pytest.raises(EngineUnavailable, match="sees no GPU"):
        prepared("tf", setup, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
@pytest.mark.parametrize("name", ENGINES)
def test_engine_on_gpu(name, precision, setup):
    import tensorflow as tf

    _, _, inputs, reference, _ = setup
    engine = prepared(name, setup, device="cuda", precision=precision, io="device")
    assert engine.info["device"] == "/GPU:0"
    staged = engine.stage(inputs)
    assert "GPU" in staged[INPUT_NAME].device
    out = engine.infer(staged)
    assert isinstance(next(iter(out.values())) if isinstance(out, dict) else out, np.ndarray)
    result = compare(reference, engine.to_numpy(out), precision)
    assert result.status == "pass", f"{name} {precision}: {result.detail}"
    assert engine.info["math_mode"] == {"tensor_float_32_execution": precision == "tf32"}
    if precision == "fp16":
        assert "mixed_float16" in engine.info["fp16"]
        assert result.max_abs_err > compare(reference, reference.astype(np.float32), "fp32").max_abs_err
    assert tf.config.list_physical_devices("GPU")

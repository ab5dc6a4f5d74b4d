"""Keras-source models: photo inputs, input shapes, informative synthetic weights, artifacts and their reuse."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from infermeter.artifacts import ArtifactStore
from infermeter.check import assert_informative, compare
from infermeter.errors import BadInput, UninformativeReference
from infermeter.models.base import ModelOptions
from infermeter.models.images import BUNDLED_PHOTOS, photo_pool
from infermeter.models.keras_apps import MobileNetV3Large, ResNet50, keras_cache_dir
from infermeter.models.keras_calibration import SYNTHETIC_RECIPE
from infermeter.models.keras_export import INPUT_NAME, OUTPUT_NAME
from infermeter.models.reference import read_reference
from infermeter.models.registry import resolve_model

SMALL = [[1, 64, 64, 3]]


def small(cls, **kw):
    return cls(ModelOptions(input_shapes=SMALL, **kw))


# ---- photographs ------------------------------------------------------------------------------------
def test_photo_pool_is_real_distinct_deterministic_and_prefix_stable():
    pool = photo_pool(10, 40, 56, seed=3)
    assert pool.shape == (10, 40, 56, 3) and pool.dtype == np.float32
    assert pool.min() >= 0 and pool.max() <= 255 and pool.std() > 10  # real pictures, not blank
    flat = pool.reshape(10, -1)
    assert len({row.tobytes() for row in flat}) == 10
    np.testing.assert_array_equal(pool, photo_pool(10, 40, 56, seed=3))
    np.testing.assert_array_equal(pool[:4], photo_pool(4, 40, 56, seed=3))
    other = photo_pool(10, 40, 56, seed=4)
    n_photos = len(BUNDLED_PHOTOS)
    np.testing.assert_array_equal(pool[:n_photos], other[:n_photos])  # first pass: centred crops
    assert not np.array_equal(pool[n_photos:], other[n_photos:])  # later: seeded crops


def test_photo_pool_from_user_image(tmp_path):
    import skimage.data
    from PIL import Image

    path = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(path)
    pool = photo_pool(5, 32, 32, seed=0, image_path=str(path))
    assert len({p.tobytes() for p in pool}) == 5
    # item 0 is the centred crop: compare with a crop + resize done here
    img = skimage.data.coffee()
    h, w = img.shape[:2]
    side = min(h, w)
    crop = img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    expected = np.asarray(Image.fromarray(crop).resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(pool[0], expected)


def test_bad_image_path_is_one_line_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        photo_pool(2, 32, 32, image_path=str(tmp_path / "missing.jpg"))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(BadInput) as err:
        photo_pool(2, 32, 32, image_path=str(junk))
    assert "\n" not in str(err.value)


# ---- shapes, names, preprocessing ---------------------------------------------------------------------
def test_registry_names_and_aliases():
    assert isinstance(resolve_model("MobileNetV3L"), MobileNetV3Large)
    assert isinstance(resolve_model("mobilenetv3l"), MobileNetV3Large)
    assert isinstance(resolve_model("resnet50"), ResNet50)


def test_input_shapes_nhwc_nchw_and_rejections():
    assert MobileNetV3Large().input_specs()[0].shape == (-1, 224, 224, 3)
    nhwc = MobileNetV3Large(ModelOptions(input_shapes=[[1, 96, 128, 3]])).input_specs()[0]
    nchw = MobileNetV3Large(ModelOptions(input_shapes=[[1, 3, 96, 128]])).input_specs()[0]
    assert nhwc == nchw and nhwc.shape == (-1, 96, 128, 3) and nhwc.name == INPUT_NAME
    for shapes, why in (([[1, 64, 64]], "rank 3"), ([[1, 64, 64, 1]], "3 colour channels"),
                        ([[1, 16, 16, 3]], "at least 32x32"), ([[1, 64, 64, 3], [1, 8]], "one input")):
        with pytest.raises(BadInput, match=why):
            ResNet50(ModelOptions(input_shapes=shapes)).input_specs()


def test_sample_pool_matches_specs_and_is_distinct():
    model = small(MobileNetV3Large)
    pool = model.sample_pool(9)
    assert all(set(p) == {INPUT_NAME} and p[INPUT_NAME].shape == (1, 64, 64, 3) for p in pool)
    assert len({p[INPUT_NAME].tobytes() for p in pool}) == 9
    assert model.check_inputs()[INPUT_NAME].shape == (8, 64, 64, 3)


def test_resnet_preprocessing_equals_keras():
    import keras

    model = small(ResNet50)
    raw = photo_pool(3, 64, 64, seed=0)
    ours = np.concatenate([p[INPUT_NAME] for p in model.sample_pool(3)])
    theirs = np.asarray(keras.applications.resnet50.preprocess_input(raw.copy()))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_inputs_need_no_framework():
    code = ("import sys; from infermeter.models.registry import resolve_model; "
            "from infermeter.models.base import ModelOptions; "
            "m = resolve_model('resnet50', ModelOptions(input_shapes=[[1,32,32,3]])); m.sample_pool(2); m.key(); "
            "bad = [x for x in ('tensorflow', 'keras', 'torch') if x in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---- weights ----------------------------------------------------------------------------------------------
def test_uncalibrated_random_weights_are_refused_and_calibrated_ones_pass():
    model = small(MobileNetV3Large)
    x = model.check_inputs()[INPUT_NAME]
    raw = np.asarray(model.make_keras(calibrate=False)(x, training=False))
    with pytest.raises(UninformativeReference):
        assert_informative(raw)
    calibrated = np.asarray(model.make_keras()(x, training=False))
    facts = assert_informative(calibrated)
    # the nearest-prototype classifier: the check views land on several of its prototypes' classes
    assert facts["reference_distinct_top1"] >= 3
    assert model.weights_id() == f"synthetic:0:{SYNTHETIC_RECIPE}"


def test_resnet50_synthetic_weights_are_informative():
    model = small(ResNet50)
    out = np.asarray(model.make_keras()(model.check_inputs()[INPUT_NAME], training=False))
    assert assert_informative(out)["reference_distinct_top1"] >= 4


def test_weights_file_is_loaded_and_bad_files_are_bad_input(tmp_path):
    source = small(MobileNetV3Large, seed=7).make_keras()
    path = tmp_path / "mine.weights.h5"
    source.save_weights(str(path))
    model = small(MobileNetV3Large, weights=str(path))
    assert model.weights_id() == str(path) and model.weights_source()[0] == "file"
    x = model.check_inputs()[INPUT_NAME]
    np.testing.assert_allclose(np.asarray(model.make_keras()(x, training=False)),
                               np.asarray(source(x, training=False)), rtol=0, atol=1e-6)
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(BadInput) as err:
        small(MobileNetV3Large, weights=str(corrupt)).make_keras()
    assert "\n" not in str(err.value)
    with pytest.raises(BadInput, match="does not exist"):
        small(MobileNetV3Large, weights=str(tmp_path / "none.h5")).make_keras()


def test_keras_cache_is_used_only_at_the_pretrained_size(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_cache_dir() == tmp_path / "models"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / ResNet50.cache_file).write_bytes(b"stand-in")
    assert ResNet50().weights_id() == f"keras-cache:{ResNet50.cache_file}"
    assert small(ResNet50).weights_id() == f"synthetic:0:{SYNTHETIC_RECIPE}"
    assert MobileNetV3Large().weights_id() == f"synthetic:0:{SYNTHETIC_RECIPE}"  # its file is absent


# ---- artifacts ----------------------------------------------------------------------------------------------
KINDS = {"keras", "savedmodel", "onnx", "reference"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    model = small(MobileNetV3Large)
    store = ArtifactStore(cache, model.key())
    facts = model.build_artifacts(store, KINDS)
    return model, store, facts


def test_artifacts_built_once_and_reused(built):
    model, store, facts = built
    assert set(store.built) == {"model.keras", "savedmodel", "model.onnx", "reference.npz"}
    assert facts["onnx_opset"] == 17 and facts["onnx_exporter"].startswith("tf2onnx")
    assert facts["reference_dtype"] == "float64" and facts["weights"] == f"synthetic:0:{SYNTHETIC_RECIPE}"
    mtimes = {p.name: p.stat().st_mtime_ns for p in store.root.iterdir()}
    again = ArtifactStore(store.root.parent, model.key())
    facts2 = model.build_artifacts(again, KINDS)
    assert again.built == {}  # nothing rebuilt
    assert {p.name: p.stat().st_mtime_ns for p in again.root.iterdir()} == mtimes
    assert facts2["onnx_opset"] == facts["onnx_opset"]


def test_cached_onnx_and_reference_serve_a_machine_without_tensorflow(built, tmp_path):
    """A GPU box with torch and ONNX Runtime but no TensorFlow runs a Keras model from its carried
    model.onnx and reference.npz: nothing is rebuilt, and TensorFlow is never imported."""
    import shutil

    model, store, _ = built
    carried = ArtifactStore(tmp_path, model.key())
    for name in ("model.onnx", "reference.npz"):
        for f in (name, name + ".sha256"):
            shutil.copy(store.path(f), carried.path(f))
    code = ("import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; "  # any import raises
            "from infermeter.artifacts import ArtifactStore; from infermeter.models.base import ModelOptions; "
            "from infermeter.models.keras_apps import MobileNetV3Large; "
            "m = MobileNetV3Large(ModelOptions(input_shapes=[[1, 64, 64, 3]])); "
            "s = ArtifactStore(sys.argv[1], m.key()); facts = m.build_artifacts(s, {'onnx', 'reference'}); "
            "assert s.built == {}, s.built; assert facts['reference_dtype'] == 'float64'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    assert sorted(p.name for p in carried.root.iterdir() if not p.name.startswith(".")) == [
        "model.onnx", "model.onnx.sha256", "reference.npz", "reference.npz.sha256"]


def test_reference_is_float64_informative_and_matches_the_keras_model(built):
    model, store, _ = built
    inputs, outputs = read_reference(store.path("reference.npz"))
    expected_inputs = model.check_inputs()
    assert set(inputs) == set(expected_inputs)
    np.testing.assert_array_equal(inputs[INPUT_NAME], expected_inputs[INPUT_NAME])
    assert outputs.dtype == np.float64 and outputs.shape == (8, 1000)
    assert_informative(outputs)
    float32_out = np.asarray(model.load_keras(store)(inputs[INPUT_NAME], training=False))
    result = compare(outputs, float32_out, "fp32")
    assert result.status == "pass", result.detail
    assert result.max_abs_err > 0  # really computed in another precision


def test_onnx_export_matches_reference_with_dynamic_batch(built):
    import onnxruntime as ort

    _, store, _ = built
    inputs, outputs = read_reference(store.path("reference.npz"))
    session = ort.InferenceSession(str(store.path("model.onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert session.get_inputs()[0].shape[0] == "batch"
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    result = compare(outputs, session.run(None, inputs)[0], "fp32")
    assert result.status == "pass", result.detail
    one = session.run(None, {INPUT_NAME: inputs[INPUT_NAME][3:4]})[0]
    assert compare(outputs[3:4], one, "fp32", task="generic").status == "pass"


def test_savedmodel_has_dynamic_batch_serving_signature(built):
    import tensorflow as tf

    _, store, _ = built
    inputs, outputs = read_reference(store.path("reference.npz"))
    loaded = tf.saved_model.load(str(store.path("savedmodel")))
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1][INPUT_NAME]
    assert spec.shape[0] is None
    got = next(iter(signature(**{INPUT_NAME: tf.constant(inputs[INPUT_NAME][:2])}).values())).numpy()
    assert compare(outputs[:2], got, "fp32").status == "pass"


@pytest.mark.skipif(os.environ.get("INFERMETER_FULL_SIZE") != "1", reason="224x224 build is slow; set INFERMETER_FULL_SIZE=1")
def test_default_size_builds_reference(tmp_path):
    model = MobileNetV3Large()
    store = ArtifactStore(tmp_path, model.key())
    model.build_artifacts(store, {"keras", "reference"})
    assert_informative(read_reference(store.path("reference.npz"))[1])


# ---- the graph handed to the engines ------------------------------------------------------------------------
def _graph(path):
    import onnx

    return onnx.load(str(path))


def assert_clean_graph(proto):
    """What an expert exporter hands over: no Transpose but one at the input, hard-swish and hard-sigmoid
    as ONNX ops, no BatchNorm and no per-channel Mul left after a convolution."""
    import onnx

    nodes = list(proto.graph.node)
    ops = [n.op_type for n in nodes]
    transposes = [i for i, op in enumerate(ops) if op == "Transpose"]
    assert len(transposes) <= 1, f"{len(transposes)} Transposes"
    if transposes:
        assert transposes[0] < ops.index("Conv"), "the one Transpose is not at the input"
        perm = list(onnx.helper.get_attribute_value(next(a for a in nodes[transposes[0]].attribute if a.name == "perm")))
        assert perm == [0, 3, 1, 2]
    assert "BatchNormalization" not in ops and "Clip" not in ops and "Div" not in ops
    produced_by = {out: n for n in nodes for out in n.output}
    initializers = {i.name for i in proto.graph.initializer}
    for n in nodes:
        if n.op_type == "Mul" and any(produced_by.get(i) is not None and produced_by[i].op_type == "Conv"
                                      for i in n.input):
            assert not any(i in initializers for i in n.input), f"a constant Mul after a Conv: {n.name}"
    return ops


def test_mobilenet_export_is_clean_and_says_how(built):
    _, store, facts = built
    ops = assert_clean_graph(_graph(store.path("model.onnx")))
    assert ops.count("HardSwish") > 0 and ops.count("HardSigmoid") > 0
    form = facts["onnx_graph_form"]
    assert form["nodes"] == len(ops) and form["transposes"] == ops.count("Transpose")
    assert form["ops"]["HardSwish"] == ops.count("HardSwish")
    passes = facts["onnx_passes"]
    assert passes["failed"] == [] and passes["converter"].startswith("tf2onnx")
    assert any("HardSwish" in p for p in passes["applied"]) and any("affine" in p for p in passes["applied"])


def test_resnet50_export_is_clean(tmp_path):
    model = ResNet50(ModelOptions(input_shapes=[[1, 32, 32, 3]]))
    store = ArtifactStore(tmp_path, model.key())
    facts = model.build_artifacts(store, {"onnx", "reference"})
    ops = assert_clean_graph(_graph(store.path("model.onnx")))
    assert ops.count("Conv") == 53 and facts["onnx_passes"]["failed"] == []


def test_failed_optimizer_pass_stops_a_builtin_build_in_one_line(tmp_path, monkeypatch):
    """Without the repair, tf2onnx's transpose optimizer really fails on MobileNetV3 (hard-swish's scalar
    Add after a Conv): the build stops with one line naming the pass, and no graph is cached."""
    import contextlib

    from infermeter.models import keras_export

    monkeypatch.setattr(keras_export, "_repaired_transpose_optimizer", contextlib.nullcontext)
    model = small(MobileNetV3Large, seed=5)
    store = ArtifactStore(tmp_path, model.key())
    with pytest.raises(keras_export.ExportError) as err:
        model.build_artifacts(store, {"onnx"})
    assert "optimize_transpose" in str(err.value) and "\n" not in str(err.value)
    assert store.get("model.onnx") is None


def test_artifact_key_carries_the_export_recipe():
    from infermeter.models.keras_export import EXPORT_RECIPE

    model = small(MobileNetV3Large)
    assert model.artifact_recipe == EXPORT_RECIPE
    before = model.key()
    type(model).artifact_recipe = "an older export"
    try:
        assert model.key() != before
    finally:
        del type(model).artifact_recipe

"""Any ONNX file as a model: validation, input specs, synthetic inputs, copied artifact, reference."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from infermeter.artifacts import ArtifactStore  # noqa: E402
from infermeter.check import assert_informative, compare  # noqa: E402
from infermeter.errors import BadInput  # noqa: E402
from infermeter.models.base import ModelOptions  # noqa: E402
from infermeter.models.onnx_file import OnnxFileModel  # noqa: E402
from infermeter.models.reference import read_reference  # noqa: E402
from infermeter.models.registry import resolve_model  # noqa: E402

FEATURES, CLASSES = 8, 5


def _save(graph, path, **kw):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path), **kw)
    return path


def _linear_weights():
    rng = np.random.default_rng(7)
    return rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), rng.standard_normal(CLASSES).astype(np.float32)


def linear_classifier(path, batch="batch", **save_kw):
    """y = x @ W + b with a dynamic (or fixed) batch axis."""
    w, b = _linear_weights()
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    return _save(graph, path, **save_kw)


def image_identity(path):
    """An image input with dynamic height and width, output [N, 3, H, W] (a generic task)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["out"])], "relu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, "height", "width"])])
    return _save(graph, path)


def token_graph(path):
    """int64 ids and mask -> float sum per row (generic: output [N])."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
         helper.make_node("Cast", ["masked"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["f", "axes"], ["out"], keepdims=0)],
        "tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 16]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch"])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    return _save(graph, path)


def test_specs_task_and_identity_come_from_the_file(tmp_path):
    path = linear_classifier(tmp_path / "linear.onnx")
    model = resolve_model(str(path))
    assert isinstance(model, OnnxFileModel)
    [spec] = model.input_specs()
    assert (spec.name, spec.dtype, spec.shape) == ("x", "float32", (-1, FEATURES))
    assert model.task == "classification" and model.max_batch() is None
    assert model.weights_id() == "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert model.name == "linear"


def test_artifacts_copy_the_file_and_reference_matches_numpy(tmp_path):
    path = linear_classifier(tmp_path / "linear.onnx")
    model = OnnxFileModel(path, ModelOptions(check_samples=6))
    store = ArtifactStore(tmp_path / "cache", model.key())
    facts = model.build_artifacts(store, {"onnx", "reference"})
    assert store.get("model.onnx").read_bytes() == path.read_bytes()
    assert "float32" in facts["reference"]
    inputs, ref = read_reference(store)
    w, b = _linear_weights()
    expected = inputs["x"].astype(np.float64) @ w.astype(np.float64) + b
    np.testing.assert_allclose(ref, expected, rtol=1e-5, atol=1e-5)
    assert ref.dtype == np.float64 and ref.shape == (6, CLASSES)
    assert assert_informative(ref, model.task)["reference_distinct_top1"] >= 2
    # the pool is seeded: the same seed gives the same items, another seed others
    again = OnnxFileModel(path, ModelOptions(check_samples=6)).check_inputs()["x"]
    other = OnnxFileModel(path, ModelOptions(check_samples=6, seed=1)).check_inputs()["x"]
    np.testing.assert_array_equal(again, inputs["x"])
    assert not np.allclose(other, inputs["x"])
    assert len({row.tobytes() for row in inputs["x"]}) == 6


def test_external_data_is_folded_into_one_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    path = linear_classifier(src / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                             location="ext.data", size_threshold=0)
    assert (src / "ext.data").exists()
    model = OnnxFileModel(path)
    store = ArtifactStore(tmp_path / "cache", model.key())
    model.build_artifacts(store, {"onnx", "reference"})
    copied = onnx.load(str(store.get("model.onnx")))
    assert all(t.data_location != TensorProto.EXTERNAL for t in copied.graph.initializer)
    import onnxruntime as ort

    inputs, ref = read_reference(store)
    out = ort.InferenceSession(str(store.get("model.onnx")), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    assert compare(ref, out, "fp32", model.task).status == "pass"


def test_dynamic_dimension_without_input_shapes_is_named(tmp_path):
    path = image_identity(tmp_path / "img.onnx")
    with pytest.raises(BadInput) as e:
        OnnxFileModel(path)
    msg = str(e.value)
    assert "'image'" in msg and "'height'" in msg and "axis 2" in msg and "--input-shapes" in msg
    model = OnnxFileModel(path, ModelOptions(input_shapes=[[1, 3, 12, 20]]))
    assert model.input_specs()[0].shape == (-1, 3, 12, 20)
    assert model.task == "generic"
    assert model.sample_pool(2)[0]["image"].shape == (1, 3, 12, 20)


@pytest.mark.parametrize("shapes, words", [
    ([[1, 3, 12, 20], [1, 4]], "2 shape(s) given"),
    ([[1, 4, 12, 20]], "axis 1 is fixed to 3"),
    ([[1, 3, 12]], "has 4 dimensions"),
])
def test_bad_input_shapes(tmp_path, shapes, words):
    path = image_identity(tmp_path / "img.onnx")
    with pytest.raises(BadInput) as e:
        OnnxFileModel(path, ModelOptions(input_shapes=shapes))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_fixed_batch_graph_reports_its_limit_and_still_builds_a_reference(tmp_path):
    path = linear_classifier(tmp_path / "b1.onnx", batch=1)
    model = OnnxFileModel(path, ModelOptions(check_samples=4))
    assert model.max_batch() == 1
    assert model.supports_batch(1) == (True, "")
    ok, why = model.supports_batch(8)
    assert not ok and "batch size to 1" in why and "batch 8" in why
    store = ArtifactStore(tmp_path / "cache", model.key())
    model.build_artifacts(store, {"onnx", "reference"})
    inputs, ref = read_reference(store)
    w, b = _linear_weights()
    np.testing.assert_allclose(ref, inputs["x"].astype(np.float64) @ w + b, rtol=1e-5, atol=1e-5)


def test_integer_inputs_follow_their_names(tmp_path):
    model = OnnxFileModel(token_graph(tmp_path / "tok.onnx"), ModelOptions(check_samples=4))
    item = model.sample_pool(1)[0]
    assert item["input_ids"].dtype == np.int64 and item["input_ids"].shape == (1, 16)
    assert item["input_ids"].min() >= 0 and item["input_ids"].max() < 100
    assert np.all(item["attention_mask"] == 1)
    store = ArtifactStore(tmp_path / "cache", model.key())
    model.build_artifacts(store, {"onnx", "reference"})
    inputs, ref = read_reference(store)
    np.testing.assert_allclose(ref, inputs["input_ids"].sum(axis=1).astype(np.float64))


def test_missing_empty_and_corrupt_files_are_bad_input(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    # a well-formed protobuf whose node reads a tensor nobody produces: onnx.checker rejects it
    bad_graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])])
    unchecked = tmp_path / "unchecked.onnx"
    bad = helper.make_model(bad_graph, opset_imports=[helper.make_opsetid("", 17)])
    bad.ir_version = 8
    unchecked.write_bytes(bad.SerializeToString())
    for path, words in ((tmp_path / "missing.onnx", "no such file"), (empty, "empty"),
                        (garbage, "cannot be read as ONNX"), (unchecked, "onnx.checker")):
        with pytest.raises(BadInput) as e:
            resolve_model(str(path))
        msg = str(e.value)
        assert path.name in msg and words in msg and "\n" not in msg, msg


def test_weights_option_is_refused_for_an_onnx_file(tmp_path):
    path = linear_classifier(tmp_path / "linear.onnx")
    with pytest.raises(BadInput, match="--weights does not apply"):
        OnnxFileModel(path, ModelOptions(weights=str(path)))

"""ONNX files from the wild, through onnxruntime, openvino and torch: integer embedding inputs, weights
stored as Constant nodes, a second output that goes wrong, constant outputs, the user's own inputs and
each --check mode."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from infermeter.artifacts import ArtifactStore  # noqa: E402
from infermeter.cli import main  # noqa: E402
from infermeter.engines import EngineContext, get_engine, load_all  # noqa: E402
from infermeter.errors import BadInput  # noqa: E402
from infermeter.models.base import ModelOptions  # noqa: E402
from infermeter.models.onnx_file import OnnxFileModel  # noqa: E402
from infermeter.results.writer import read_results  # noqa: E402
from infermeter.worker import _check  # noqa: E402

ENGINES = ("onnxruntime", "openvino", "torch")
ROWS, DIM, CLASSES, TOKENS = 50, 8, 5, 6


def _engines_here() -> list[str]:
    registered = load_all()
    return [e for e in ENGINES if e in registered and registered[e].available()[0]]


def _save(nodes, inputs, outputs, path, initializers=()):
    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def embedding_classifier(path):
    """int32 token ids -> Cast -> Gather from a 50-row table -> sum over tokens -> logits; the output
    projection is a Constant node, as PaddlePaddle exports weights."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((DIM, CLASSES)).astype(np.float32)
    return _save(
        [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W_value")),
         helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "ids64"], ["emb"]),
         helper.make_node("ReduceSum", ["emb", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "W"], ["logits"])],
        [helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch", TOKENS])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])], path,
        [numpy_helper.from_array(rng.standard_normal((ROWS, DIM)).astype(np.float32), "table"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])


def constant_node_conv(path):
    """A convolution whose weight and bias are Constant nodes, as PaddlePaddle exports them."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    return _save(
        [helper.make_node("Constant", [], ["conv_w"], value=numpy_helper.from_array(w, "conv_w_value")),
         helper.make_node("Constant", [], ["conv_b"], value=numpy_helper.from_array(b, "conv_b_value")),
         helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["y"], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])], path)


def two_heads(path, second_offset: float = 0.0):
    """Two outputs from one input; `second_offset` shifts only the second (a wrong second head)."""
    rng = np.random.default_rng(5)
    return _save(
        [helper.make_node("MatMul", ["x", "W1"], ["scores"]),
         helper.make_node("MatMul", ["x", "W2"], ["raw_boxes"]),
         helper.make_node("Add", ["raw_boxes", "offset"], ["boxes"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 4])], path,
        [numpy_helper.from_array(rng.standard_normal((DIM, 3)).astype(np.float32), "W1"),
         numpy_helper.from_array(rng.standard_normal((DIM, 4)).astype(np.float32), "W2"),
         numpy_helper.from_array(np.full(4, second_offset, np.float32), "offset")])


def constant_output(path):
    """Weights stripped to zeros: every input gives the bias, as in files made only for speed tests."""
    return _save(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])], path,
        [numpy_helper.from_array(np.zeros((DIM, CLASSES), np.float32), "W"),
         numpy_helper.from_array(np.arange(CLASSES, dtype=np.float32), "b")])


def hardmax_head(path):
    """Hardmax: onnxruntime and OpenVINO run it, onnx2torch has no converter for it."""
    return _save([helper.make_node("Hardmax", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", DIM])], path)


def run_cli(tmp_path, model, *flags, engines=None):
    """`infermeter run` in this process: (exit status, rows, run.json or None)."""
    results = tmp_path / "results"
    status = main(["run", str(model), "--device", "cpu", "--engines", ",".join(engines or _engines_here()),
                   "--precisions", "fp32", "--batch-sizes", "1", "--iterations", "3", "--warmup", "1", "--min-iterations", "1",
                   "--idle-time", "0", "--energy-time", "0.01", "--quiet", "--results-dir", str(results),
                   "--cache-dir", str(tmp_path / "cache"), *flags])
    found = sorted(results.rglob("results.csv"))
    rows = read_results(found[-1]) if found else []
    meta = json.loads((found[-1].parent / "run.json").read_text()) if found else None
    return status, rows, meta


# ---- synthetic inputs -------------------------------------------------------------------------------
def test_embedding_indices_stay_inside_the_table_and_ranges_override(tmp_path):
    path = embedding_classifier(tmp_path / "emb.onnx")
    model = OnnxFileModel(path, ModelOptions(check_samples=16))
    assert model.input_ranges() == {"ids": (0.0, float(ROWS))}
    ids = model.check_inputs()["ids"]
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < ROWS
    assert ids.max() >= ROWS // 2  # the range is used, not a corner of it
    narrow = OnnxFileModel(path, ModelOptions(check_samples=16, input_ranges={"ids": (3.0, 7.0)}))
    got = narrow.check_inputs()["ids"]
    assert got.min() >= 3 and got.max() < 7
    with pytest.raises(BadInput, match="not an input"):
        OnnxFileModel(path, ModelOptions(input_ranges={"tokens": (0.0, 1.0)}))


def test_every_dynamic_dimension_is_named_in_one_line(tmp_path):
    path = _save([helper.make_node("Add", ["a", "b"], ["c"])],
                 [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq", 4]),
                  helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", "seq", "width"])],
                 [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", "seq", 4])], tmp_path / "dyn.onnx")
    status = main(["run", str(path), "--device", "cpu", "--quiet", "--results-dir", str(tmp_path / "r")])
    assert status == 2
    with pytest.raises(BadInput) as e:
        OnnxFileModel(path)
    msg = str(e.value)
    assert "\n" not in msg and "input 'a' axis 1 ('seq')" in msg and "input 'b' axis 1 ('seq'), axis 2 ('width')" in msg
    example = msg.split("--input-shapes ")[1].split('"')[1]  # the example flag must itself work
    model = OnnxFileModel(path, ModelOptions(input_shapes=json.loads(f"[{example}]")))
    assert [s.shape for s in model.input_specs()] == [(-1, 64, 4), (-1, 64, 64)]


# ---- the user's inputs ---------------------------------------------------------------------------------
def test_npz_and_npy_folder_inputs_feed_check_and_pool_and_mismatches_stop(tmp_path, capsys):
    path = constant_node_conv(tmp_path / "paddle_like.onnx")
    x = np.random.default_rng(9).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=x)
    model = OnnxFileModel(path, ModelOptions(inputs=str(tmp_path / "inputs.npz"), check_samples=4))
    np.testing.assert_array_equal(model.check_inputs()["x"], x[:4])
    pool = model.sample_pool(7)
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in pool]), np.concatenate([x, x[:2]]))
    folder = tmp_path / "items"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"item{i}.npy", x[i])  # a folder of single items (no batch axis)
    items = OnnxFileModel(path, ModelOptions(inputs=str(folder)))
    np.testing.assert_array_equal(items.check_inputs()["x"], x[:3])
    assert items.key() != model.key()

    np.savez(tmp_path / "wrong_name.npz", image=x)
    np.savez(tmp_path / "wrong_shape.npz", x=x[:, :, :4])
    for bad, words in (("wrong_name.npz", "missing x; unknown image"), ("wrong_shape.npz", "[5, 3, 4, 8]")):
        status = main(["run", str(path), "--device", "cpu", "--quiet", "--inputs", str(tmp_path / bad),
                       "--results-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and words in err, err


# ---- every engine on foreign graphs ---------------------------------------------------------------------
def test_npz_inputs_feed_a_sweep_and_run_json_records_their_hash(tmp_path):
    """What the user's items do is engine-independent; ONNX Runtime alone keeps this fast."""
    path = constant_node_conv(tmp_path / "paddle_like.onnx")
    x = np.random.default_rng(10).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=x)
    status, rows, meta = run_cli(tmp_path, path, "--inputs", str(tmp_path / "inputs.npz"), engines=["onnxruntime"])
    assert status == 0 and [r["status"] for r in rows] == ["ok"] and rows[0]["check_status"] == "pass"
    [artifacts] = meta["artifacts"].values()
    assert artifacts["inputs_sha256"] == hashlib.sha256((tmp_path / "inputs.npz").read_bytes()).hexdigest()
    inputs = np.load(next((tmp_path / "cache").rglob("reference.npz")))["inputs__x"]
    np.testing.assert_array_equal(inputs, x)


def test_int32_embedding_with_constant_node_weights_runs_checked_on_every_engine(tmp_path):
    path = embedding_classifier(tmp_path / "emb.onnx")
    status, rows, meta = run_cli(tmp_path, path)
    assert status == 0 and {r["engine"] for r in rows} == set(_engines_here())
    for r in rows:
        assert r["status"] == "ok" and r["check_status"] == "pass", (r["engine"], r["error"])
        assert float(r["top1_agreement"]) == 1.0
    for key, info in meta["engines"].items():
        if key.startswith("torch"):  # onnx2torch read the normalised graph (it raises KeyError on the raw one)
            assert info["settings"]["onnx_normalised"].startswith("onnxscript"), info["settings"]


def test_check_off_times_without_checking(tmp_path):
    status, rows, _ = run_cli(tmp_path, embedding_classifier(tmp_path / "emb.onnx"), "--check", "off",
                              engines=["onnxruntime"])
    assert status == 0 and rows
    for r in rows:
        assert r["status"] == "ok" and r["check_status"] == "not-run: --check off"
        assert r["max_abs_err"] is None and float(r["throughput_items_s"]) > 0


@pytest.mark.engines("torch")
def test_converter_failure_names_the_operator_and_other_engines_go_on(tmp_path):
    status, rows, _ = run_cli(tmp_path, hardmax_head(tmp_path / "hardmax.onnx"), engines=["onnxruntime", "torch"])
    by_engine = {r["engine"]: r for r in rows}
    assert by_engine["torch"]["status"] == "failed"
    assert "onnx2torch" in by_engine["torch"]["error"] and "Hardmax" in by_engine["torch"]["error"]
    assert by_engine["onnxruntime"]["status"] == "ok", by_engine["onnxruntime"]["error"]
    assert status == 1


def test_constant_outputs_are_timed_unchecked_refused_when_strict(tmp_path, capsys):
    path = constant_output(tmp_path / "stripped.onnx")
    status, rows, _ = run_cli(tmp_path, path)
    err = capsys.readouterr().err
    assert status == 0 and {r["engine"] for r in rows} == set(_engines_here())
    for r in rows:
        assert r["status"] == "ok" and r["check_status"].startswith("not-run: reference outputs identical"), r
        assert float(r["throughput_items_s"]) > 0
    assert "warning" in err and "--check strict" in err
    status, rows, _ = run_cli(tmp_path / "strict", path, "--check", "strict")
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "strict" in err, err


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_wrong_second_output_is_caught(tmp_path, engine_name):
    """The engine runs a graph whose second output is shifted by 0.5; the reference is the true graph."""
    if engine_name not in _engines_here():
        pytest.skip(f"{engine_name} is not installed")
    true = OnnxFileModel(two_heads(tmp_path / "heads.onnx"), ModelOptions(check_samples=4))
    assert true.task == "generic"  # two outputs: no top-1 rule
    store = ArtifactStore(tmp_path / "cache", true.key())
    true.build_artifacts(store, {"onnx", "reference"})
    wrong_path = two_heads(tmp_path / "heads_wrong.onnx", second_offset=0.5)
    wrong = ArtifactStore(tmp_path / "cache", "wrong-second-head")
    wrong.build("model.onnx", lambda tmp: shutil.copyfile(wrong_path, tmp))
    wrong.build("reference.npz", lambda tmp: shutil.copyfile(store.get("reference.npz"), tmp))

    for artifacts, expected in ((store, "pass"), (wrong, "mismatch")):
        engine = get_engine(engine_name)(EngineContext(device="cpu", num_threads=1))
        engine.prepare(true, artifacts, "fp32", 4)
        try:
            result = _check(engine, true, artifacts, "fp32", [4], {})
        finally:
            engine.close()
        assert result.status == expected, result.detail
        assert "'boxes'" in result.detail
    assert result.detail.startswith("output 1 'boxes'") and "output 0 'scores'" in result.detail
    assert result.rel_err > 0.01


def test_a_folder_of_images_feeds_an_image_model_with_its_preprocessing(tmp_path):
    from PIL import Image

    from infermeter.models.images import view_of
    from infermeter.models.registry import resolve_model

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(11)
    photos = [rng.integers(0, 256, size=(48 + 8 * i, 80, 3), dtype=np.uint8) for i in range(3)]
    for i, photo in enumerate(photos):
        Image.fromarray(photo).save(folder / f"photo{i}.png")
    options = dict(input_shapes=[[1, 32, 32, 3]], check_samples=8)
    model = resolve_model("resnet50", ModelOptions(inputs=str(folder), **options))
    got = model.check_inputs()["images"]
    expected = model.preprocess(np.stack([view_of(p, 32, 32, None) for p in photos]).astype(np.float32))
    np.testing.assert_array_equal(got, expected)  # every image once, the model's own preprocessing
    assert len(model.sample_pool(5)) == 5
    assert model.key() != resolve_model("resnet50", ModelOptions(**options)).key()
    with pytest.raises(BadInput, match="folder of images"):
        resolve_model("resnet50", ModelOptions(inputs=str(folder / "photo0.png"), **options))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no images"):
        resolve_model("resnet50", ModelOptions(inputs=str(tmp_path / "empty"), **options))

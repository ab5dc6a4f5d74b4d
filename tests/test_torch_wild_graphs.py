"""Graphs that public packages ship, which ONNX Runtime runs and onnx2torch alone could not convert, on the
three torch engines, each matched against ONNX Runtime on the same file:

- magika's byte classifier (a GlobalMaxPool over the byte sequence), on features of real files;
- the onnx package's `light_squeezenet` (weights computed by ConstantOfShape nodes, initialisers listed as
  graph inputs, Dropout of opset 7), with its softmax head cut so that the output depends on the input
  (its constant weights make every class equal after the softmax).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from infermeter.artifacts import ArtifactStore  # noqa: E402
from infermeter.check import assert_informative, compare  # noqa: E402
from infermeter.engines import EngineContext, get_engine  # noqa: E402
from infermeter.models.base import ModelOptions  # noqa: E402
from infermeter.models.onnx_file import OnnxFileModel  # noqa: E402

TORCH_ENGINES = ("torch", "torchscript", "torch-compile")


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _torch_outputs(name: str, path: Path, feeds: list[dict[str, np.ndarray]], cache: Path) -> tuple[list, dict]:
    """(the engine's first output on each of `feeds`, its info) for the file at `path`, run as infermeter
    runs it."""
    model = OnnxFileModel(path, ModelOptions(check_samples=2))
    store = ArtifactStore(cache, model.key())
    model.build_artifacts(store, {"onnx"})
    batch = len(next(iter(feeds[0].values())))
    engine = get_engine(name)(EngineContext(device="cpu", num_threads=2))
    try:
        engine.prepare(model, store, "fp32", batch)
        engine.activate(batch)
        return [engine.to_numpy(engine.infer(engine.stage(f))) for f in feeds], dict(engine.info)
    finally:
        engine.close()


# ---- magika: GlobalMaxPool --------------------------------------------------------------------------------
def _magika_model() -> tuple[Path, dict]:
    magika = pytest.importorskip("magika")
    folder = Path(magika.__file__).parent / "models"
    found = sorted(folder.glob("*/model.onnx"))
    assert found, f"magika {magika.__version__} ships no model under {folder}"
    import json

    config = json.loads((found[-1].parent / "config.min.json").read_text())
    return found[-1], config


def _magika_features(config: dict, files: list[Path]) -> np.ndarray:
    """magika's input for each file: its first beg_size and last end_size bytes, padded with the padding
    token, after stripping the whitespace at both ends (as magika reads a file)."""
    rows = []
    for f in files:
        data = f.read_bytes().strip()
        beg = list(data[:config["beg_size"]])
        end = list(data[-config["end_size"]:]) if config["end_size"] else []
        pad = config["padding_token"]
        rows.append(beg + [pad] * (config["beg_size"] - len(beg)) + [pad] * (config["end_size"] - len(end)) + end)
    return np.asarray(rows, dtype=np.int32)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCH_ENGINES)
def test_magika_byte_classifier_with_global_max_pool_matches_onnxruntime(tmp_path, name):
    path, config = _magika_model()
    assert "GlobalMaxPool" in {n.op_type for n in onnx.load(path).graph.node}
    import matplotlib

    mpl_data = Path(matplotlib.get_data_path())
    files = [Path(__file__), path.parent / "config.min.json", next(mpl_data.glob("images/*.png")),
             next(mpl_data.glob("fonts/ttf/*.ttf"))]
    feeds = {"bytes": _magika_features(config, files)}
    reference = _ort(path, feeds)
    assert_informative(reference)  # real files of four kinds: the classifier tells them apart
    (got,), info = _torch_outputs(name, path, [feeds], tmp_path)
    assert "GlobalMaxPool-v1" in info["onnx2torch_converters_added"]
    result = compare(reference, got, "fp32")
    assert result.status == "pass", result.detail


# ---- light_squeezenet: weights computed by nodes -------------------------------------------------------------
def _light_squeezenet(tmp_path: Path) -> Path:
    """The shipped graph with its last Softmax removed: the output is the pooled logits."""
    shipped = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    if not shipped.exists():
        pytest.skip(f"onnx {onnx.__version__} ships no {shipped.name}")
    model = onnx.load(shipped)
    graph = model.graph
    assert "ConstantOfShape" in {n.op_type for n in graph.node}
    softmax = graph.node[-1]
    assert softmax.op_type == "Softmax"
    graph.node.remove(softmax)
    logits = next(v for v in onnx.shape_inference.infer_shapes(model).graph.value_info if v.name == softmax.input[0])
    del graph.output[:]
    graph.output.append(logits)
    path = tmp_path / "light_squeezenet_logits.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCH_ENGINES)
def test_weights_computed_by_nodes_are_folded_and_match_onnxruntime(tmp_path, name):
    path = _light_squeezenet(tmp_path)
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (1, 3, 224, 224)).astype(np.float32) * scale for scale in (1.0, 3.0)]
    input_name = "data_0"
    references = [_ort(path, {input_name: x}) for x in images]
    assert_informative(np.concatenate(references).reshape(2, -1), task="generic")
    outputs, info = _torch_outputs(name, path, [{input_name: x} for x in images], tmp_path)
    for reference, got in zip(references, outputs):
        result = compare(reference, got, "fp32", task="generic")
        assert result.status == "pass", result.detail
    from infermeter.engines.onnx_normalize import normalised_graph

    graph, note = normalised_graph(str(path))  # what onnx2torch read: every weight an initialiser
    assert note == info["onnx_normalised"] and "ConstantOfShape" not in {n.op_type for n in graph.graph.node}


# ---- HardSigmoid: torch's own operator where the attributes are its -----------------------------------------
def test_hardsigmoid_with_torch_attributes_becomes_torch_operator_and_matches(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("HardSigmoid", ["x"], ["a"], alpha=1 / 6, beta=0.5),  # MobileNetV3's
             helper.make_node("HardSigmoid", ["a"], ["y"], alpha=0.2, beta=0.5)]  # ONNX's default: kept
    graph = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])])
    path = tmp_path / "hardsigmoid.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(0).uniform(-6, 6, (4, 8)).astype(np.float32)
    reference = _ort(path, {"x": x})
    (got,), info = _torch_outputs("torch", path, [{"x": x}], tmp_path)
    assert info["hardsigmoids_native"] == 1
    np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-6)

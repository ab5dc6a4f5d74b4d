"""User model folders (config.yaml + load.py), the UserModel Python API and the shipped example_mlp."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _tiny_models import run_cpu_engine

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
yaml = pytest.importorskip("yaml")

from infermeter.artifacts import ArtifactStore  # noqa: E402
from infermeter.check import assert_informative, compare  # noqa: E402
from infermeter.errors import BadInput  # noqa: E402
from infermeter.models.base import ModelOptions  # noqa: E402
from infermeter.models.plugin import PluginModel, UserModel, from_user_model  # noqa: E402
from infermeter.models.reference import read_reference  # noqa: E402
from infermeter.models.registry import resolve_model  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "models" / "example_mlp"


def _ort_first_output(onnx_path, inputs):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


# ---- the shipped example ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example(tmp_path_factory):
    model = resolve_model(str(EXAMPLE), ModelOptions(check_samples=8))
    store = ArtifactStore(tmp_path_factory.mktemp("cache"), model.key())
    facts = model.build_artifacts(store, {"torch-source", "onnx", "reference"})
    return model, store, facts


def _numpy_mlp(state, x):
    """The example MLP's forward in float64 numpy, from its stored weights (independent of torch)."""
    p = {k: v.double().numpy() for k, v in state.items()}
    erf = np.vectorize(math.erf)

    def gelu(h):
        return 0.5 * h * (1 + erf(h / math.sqrt(2)))

    h = x @ p["layers.0.weight"].T + p["layers.0.bias"]
    mean, var = h.mean(axis=1, keepdims=True), h.var(axis=1, keepdims=True)
    h = gelu((h - mean) / np.sqrt(var + 1e-5) * p["layers.1.weight"] + p["layers.1.bias"])
    h = gelu(h @ p["layers.3.weight"].T + p["layers.3.bias"])
    return h @ p["layers.5.weight"].T + p["layers.5.bias"]


def test_example_folder_builds_an_informative_reference_from_its_stored_weights(example):
    model, store, facts = example
    assert isinstance(model, PluginModel) and model.name == "example_mlp"
    assert model.sources == ("torch", "onnx") and model.builder == "torch" and model.task == "classification"
    inputs, ref = read_reference(store)
    state = torch.load(str(store.get("weights.pt")), weights_only=True)
    np.testing.assert_allclose(ref, _numpy_mlp(state, inputs["features"].astype(np.float64)), rtol=1e-9, atol=1e-9)
    assert facts["reference_distinct_top1"] == assert_informative(ref)["reference_distinct_top1"] >= 3
    assert model.tensorrt_profiles()["features"][0][0] <= model.tensorrt_profiles()["features"][2][0]


def test_example_onnx_export_matches_reference_with_a_dynamic_batch(example):
    model, store, _ = example
    inputs, ref = read_reference(store)
    assert compare(ref, _ort_first_output(store.get("model.onnx"), inputs), "fp32", model.task).status == "pass"
    graph_input = onnx.load(str(store.get("model.onnx"))).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    three = {k: v[:3] for k, v in inputs.items()}
    np.testing.assert_allclose(_ort_first_output(store.get("model.onnx"), three), ref[:3], rtol=1e-4, atol=1e-5)


def test_load_torch_uses_the_stored_weights_and_seeds_change_them(example, tmp_path):
    model, store, _ = example
    inputs, ref = read_reference(store)
    module = model.load_torch(store)
    with torch.no_grad():
        out = module(torch.from_numpy(inputs["features"])).numpy()
    assert compare(ref, out, "fp32").status == "pass"
    same = resolve_model(str(EXAMPLE), ModelOptions(check_samples=8))
    other = resolve_model(str(EXAMPLE), ModelOptions(check_samples=8, seed=3))
    assert same.key() == model.key() and other.key() != model.key()
    other_store = ArtifactStore(tmp_path, other.key())
    other.build_artifacts(other_store, {"torch-source"})
    a = torch.load(str(store.get("weights.pt")), weights_only=True)
    b = torch.load(str(other_store.get("weights.pt")), weights_only=True)
    assert not torch.equal(a["layers.0.weight"], b["layers.0.weight"])


@pytest.mark.parametrize("engine", ["onnxruntime", "torch", "openvino"])
def test_cpu_engines_pass_the_check_on_the_example(example, engine):
    model, store, _ = example
    inputs, ref = read_reference(store)
    result = compare(ref, run_cpu_engine(engine, model, store, inputs), "fp32", model.task)
    assert result.status == "pass", result.detail


# ---- invalid folders ----------------------------------------------------------------------------
def _config():
    return yaml.safe_load((EXAMPLE / "config.yaml").read_text())


def _set(path: str, value):
    def mutate(cfg):
        keys = path.split(".")
        node = cfg
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return cfg
    return mutate


_DELETE = object()


@pytest.mark.parametrize("mutate, words", [
    (_set("inputs.0.dtype", "float33"), "config.yaml: inputs[0].dtype 'float33' is not a dtype"),
    (_set("name", _DELETE), "config.yaml: name is missing"),
    (_set("name", "my model!"), "config.yaml: name 'my model!'"),
    (_set("framework", "jax"), "config.yaml: framework 'jax' is not one of torch, onnx"),
    (_set("task", "detection"), "config.yaml: task 'detection'"),
    (_set("inputs", []), "config.yaml: inputs must be a non-empty list"),
    (_set("inputs.0.colour", "red"), "config.yaml: inputs[0].colour is not a known field"),
    (_set("inputs.0.runtime_dims", [-1, 32, 1]), "config.yaml: inputs[0].runtime_dims has 3 entries"),
    (_set("inputs.0.runtime_dims", [-1, 0]), "config.yaml: inputs[0].runtime_dims must be a non-empty list"),
    (_set("inputs.0.example_shape", [1, 16]), "config.yaml: inputs[0].example_shape axis 1 is 16"),
    (_set("inputs.0.dims_names", ["batch"]), "config.yaml: inputs[0].dims_names has 1 entries"),
    (_set("inputs.0.tensorrt_profile", {"min": [8, 32], "opt": [4, 32], "max": [16, 32]}),
     "config.yaml: inputs[0].tensorrt_profile needs min <= opt <= max"),
    (_set("inputs.0.tensorrt_profile", {"min": [1, 32], "max": [16, 32]}),
     "config.yaml: inputs[0].tensorrt_profile.opt is missing"),
    (_set("outputs.0", {"dims_names": ["batch"]}), "config.yaml: outputs[0].name is missing"),
    (lambda cfg: {**cfg, "inputs": cfg["inputs"] * 2}, "config.yaml: inputs[1].name 'features' is used twice"),
    (lambda cfg: ["not", "a", "mapping"], "config.yaml:  must be a mapping"),
])
def test_invalid_config_files_name_the_field(tmp_path, mutate, words):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(mutate(_config())))
    (tmp_path / "load.py").write_text((EXAMPLE / "load.py").read_text())
    with pytest.raises(BadInput) as e:
        PluginModel(tmp_path)
    msg = str(e.value)
    assert msg.startswith(words) and "\n" not in msg, msg


def test_invalid_yaml_and_missing_files(tmp_path):
    (tmp_path / "config.yaml").write_text("name: [unclosed\n")
    (tmp_path / "load.py").write_text("")
    with pytest.raises(BadInput, match=r"^config.yaml: not valid YAML at line \d"):
        PluginModel(tmp_path)
    (tmp_path / "config.yaml").write_text((EXAMPLE / "config.yaml").read_text())
    (tmp_path / "load.py").unlink()
    with pytest.raises(BadInput, match="no load.py"):
        PluginModel(tmp_path)
    with pytest.raises(BadInput, match="no such folder"):
        PluginModel(tmp_path / "absent")


@pytest.mark.parametrize("source, words", [
    ("def load(config):\n    return None\n", "expected exactly one function decorated with @register_loader, found 0"),
    ("raise RuntimeError('broken on purpose')\n", "import failed (RuntimeError: broken on purpose)"),
    ("from infermeter.models.plugin import register_loader\n@register_loader\ndef load(config):\n    return 42\n",
     "the loader returned int, expected a torch.nn.Module"),
])
def test_bad_load_py_is_reported_when_building(tmp_path, source, words):
    (tmp_path / "config.yaml").write_text((EXAMPLE / "config.yaml").read_text())
    (tmp_path / "load.py").write_text(source)
    model = PluginModel(tmp_path)  # load.py is imported only in the builder's worker
    with pytest.raises(BadInput) as e:
        model.build_artifacts(ArtifactStore(tmp_path / "cache", model.key()), {"torch-source"})
    assert words in str(e.value)


# ---- framework: onnx ------------------------------------------------------------------------------
def test_onnx_framework_folder_with_input_shapes(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["seq", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "W"], ["scores"])], "pool",
        [helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", "time", 6])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    onnx.save_model(proto, str(tmp_path / "pool.onnx"))
    cfg = {"name": "pooler", "framework": "onnx", "task": "classification",
           "inputs": [{"name": "seq", "dtype": "float32", "dims_names": ["batch", "time", "features"],
                       "example_shape": [1, 10, 6], "runtime_dims": [-1, -1, 6]}],
           "outputs": [{"name": "scores"}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "load.py").write_text("from infermeter.models.plugin import register_loader\n\n"
                                      "@register_loader\ndef load(config):\n    return 'pool.onnx'\n")
    model = PluginModel(tmp_path, ModelOptions(input_shapes=[[1, 7, 6]], check_samples=6))
    assert model.sources == ("onnx",) and model.input_specs()[0].shape == (-1, 7, 6)
    store = ArtifactStore(tmp_path / "cache", model.key())
    model.build_artifacts(store, {"onnx", "reference"})
    inputs, ref = read_reference(store)
    np.testing.assert_allclose(ref, inputs["seq"].astype(np.float64).mean(axis=1) @ w, rtol=1e-5, atol=1e-6)
    with pytest.raises(BadInput, match="axis 2 is fixed to 6"):
        PluginModel(tmp_path, ModelOptions(input_shapes=[[1, 7, 5]]))


# ---- the Python API --------------------------------------------------------------------------------
class TinyConvNet(UserModel):
    """A user model in Python: a 1-D conv classifier fed smooth signals instead of noise."""

    name = "tiny_conv"
    task = "classification"
    inputs = [{"name": "signal", "dtype": "float32", "dims_names": ["batch", "channels", "time"],
               "example_shape": [1, 2, 24], "runtime_dims": [-1, 2, 24]}]
    outputs = [{"name": "scores", "dims_names": ["batch", "classes"]}]
    exported_with: list = []

    def build(self):
        from torch import nn

        net = nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                            nn.Linear(8, 4))
        with torch.no_grad():  # a head without a preferred class, as after training on balanced data
            net[-1].bias.zero_()
        return net

    def example_inputs(self, batch, seed=0):
        t = np.linspace(0, 2 * np.pi, 24)
        index = np.arange(batch)[:, None, None] + seed
        phase = np.array([0.0, np.pi / 3])[None, :, None]
        offset = np.array([0.6, -0.9])[None, :, None] * np.cos(1.7 * index)  # each item leans its own way
        return {"signal": (np.sin((1 + index) * t[None, None, :] + phase) + offset).astype(np.float32)}

    def export_onnx(self, path, module=None, inputs=None):
        self.exported_with.append(sorted(inputs))
        return {**super().export_onnx(path, module, inputs), "hook": "TinyConvNet.export_onnx"}


def test_user_model_subclass_runs_through_its_hooks(tmp_path):
    user = TinyConvNet()
    model = from_user_model(user, ModelOptions(check_samples=6))
    assert model.name == "tiny_conv" and model.sources == ("torch", "onnx")
    store = ArtifactStore(tmp_path, model.key())
    facts = model.build_artifacts(store, {"torch-source", "onnx", "reference"})
    assert facts["hook"] == "TinyConvNet.export_onnx" and user.exported_with == [["signal"]]
    inputs, ref = read_reference(store)
    np.testing.assert_array_equal(inputs["signal"], user.example_inputs(6)["signal"])
    assert_informative(ref, "classification")
    assert compare(ref, _ort_first_output(store.get("model.onnx"), inputs), "fp32").status == "pass"
    with pytest.raises(BadInput, match="expected a UserModel instance"):
        from_user_model(object())


def test_user_model_fields_are_validated_like_config_yaml():
    class Broken(TinyConvNet):
        inputs = [{**TinyConvNet.inputs[0], "dtype": "float33"}]

    with pytest.raises(BadInput, match=r"^Broken: inputs\[0\].dtype 'float33' is not a dtype"):
        from_user_model(Broken())


def test_weights_option_replaces_the_seeded_weights(example, tmp_path):
    model, store, _ = example
    trained = model.load_torch(store)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(-1.5)
    weights = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), weights)
    with_weights = resolve_model(str(EXAMPLE), ModelOptions(check_samples=8, weights=str(weights)))
    assert with_weights.key() != model.key()
    own = ArtifactStore(tmp_path / "cache", with_weights.key())
    with_weights.build_artifacts(own, {"torch-source"})
    loaded = torch.load(str(own.get("weights.pt")), weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in trained.state_dict().items())
    wrong = tmp_path / "wrong.pt"
    torch.save({"layers.0.weight": torch.zeros(2, 2)}, wrong)
    bad = resolve_model(str(EXAMPLE), ModelOptions(weights=str(wrong)))
    with pytest.raises(BadInput, match="not a state dict for example_mlp"):
        bad.build_artifacts(ArtifactStore(tmp_path / "bad", bad.key()), {"torch-source"})

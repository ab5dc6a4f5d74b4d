"""The BERT sentiment model at a tiny size: tokenised inputs, stored weights, ONNX export, reference."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_models import run_cpu_engine

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from infermeter.artifacts import ArtifactStore  # noqa: E402
from infermeter.check import assert_informative, compare  # noqa: E402
from infermeter.errors import BadInput  # noqa: E402
from infermeter.models.base import ModelOptions  # noqa: E402
from infermeter.models.bert_sentiment import INPUT_NAMES, BertBaseSentiment, project_tokenizer  # noqa: E402
from infermeter.models.reference import read_reference  # noqa: E402
from infermeter.models.registry import resolve_model  # noqa: E402
from infermeter.models.text_samples import REVIEWS  # noqa: E402

TINY = {"layers": 2, "hidden": 64}
SEQ_LEN = 32


def tiny_options(**kw) -> ModelOptions:
    return ModelOptions(seq_len=SEQ_LEN, check_samples=8, extra=dict(TINY), **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = BertBaseSentiment(tiny_options())
    store = ArtifactStore(tmp_path_factory.mktemp("cache"), model.key())
    facts = model.build_artifacts(store, {"torch-source", "onnx", "reference"})
    return model, store, facts


def _hf_logits_float64(model, store, inputs):
    """Logits from a BertForSequenceClassification loaded straight from the stored safetensors."""
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification

    bert = BertForSequenceClassification(model.bert_config())
    bert.load_state_dict(load_file(str(store.get("weights.safetensors"))))
    bert = bert.double().eval()
    with torch.no_grad():
        out = bert(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return out.logits.numpy()


def _ort(store, inputs):
    session = ort.InferenceSession(str(store.get("model.onnx")), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def test_registry_and_specs():
    model = resolve_model("BERT", tiny_options())
    assert isinstance(model, BertBaseSentiment)
    assert model.sources == ("torch", "onnx") and model.builder == "torch"
    assert [(s.name, s.dtype, s.shape, s.dims_names) for s in model.input_specs()] == [
        (n, "int64", (-1, -1), ("batch", "sequence")) for n in INPUT_NAMES]


def test_inputs_are_the_shipped_reviews_tokenised_with_padding_and_truncation():
    model = BertBaseSentiment(tiny_options())
    pool = model.sample_pool(len(REVIEWS))
    tok = project_tokenizer()
    lengths = [len(tok(text)["input_ids"]) for text in REVIEWS]
    assert tok.unk_token_id not in {i for text in REVIEWS for i in tok(text)["input_ids"]}
    for item, n in zip(pool, lengths, strict=True):
        assert all(item[k].shape == (1, SEQ_LEN) and item[k].dtype == np.int64 for k in INPUT_NAMES)
        assert item["attention_mask"].sum() == min(n, SEQ_LEN)
        assert not item["token_type_ids"].any()
    assert min(lengths) < SEQ_LEN < max(lengths)  # both padding and truncation happen
    assert max(len(r.split()) for r in REVIEWS) >= 90 and min(len(r.split()) for r in REVIEWS) <= 3
    # past the sample's size, items stay distinct
    more = model.sample_pool(len(REVIEWS) + 5)
    assert len({it["input_ids"].tobytes() for it in more}) == len(more)


def test_reference_is_float64_informative_and_from_the_stored_weights(built):
    model, store, facts = built
    inputs, ref = read_reference(store)
    assert ref.dtype == np.float64 and ref.shape == (8, 2)
    np.testing.assert_allclose(ref, _hf_logits_float64(model, store, inputs), rtol=1e-10, atol=1e-10)
    labels = np.argmax(ref, axis=1)
    assert set(labels) == {0, 1}
    assert facts["reference_distinct_top1"] == assert_informative(ref)["reference_distinct_top1"] == 2
    # the stored inputs are the model's check inputs
    for k, v in model.check_inputs().items():
        np.testing.assert_array_equal(inputs[k], v)


def test_onnx_export_matches_reference_and_has_dynamic_batch_and_sequence(built):
    model, store, facts = built
    inputs, ref = read_reference(store)
    assert compare(ref, _ort(store, inputs), "fp32", model.task).status == "pass"
    graph = onnx.load(str(store.get("model.onnx"))).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    for i in graph.input:
        assert [d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert "TorchScript" in facts["onnx_exporter"]
    # another batch size and a shorter sequence run through the same graph
    short = BertBaseSentiment(ModelOptions(seq_len=12, check_samples=3, extra=dict(TINY))).check_inputs()
    np.testing.assert_allclose(_ort(store, short), _hf_logits_float64(model, store, short), rtol=1e-4, atol=1e-4)


def test_load_torch_gives_the_source_weights(built):
    model, store, _ = built
    inputs, ref = read_reference(store)
    module = model.load_torch(store)
    assert not module.training
    with torch.no_grad():
        out = module(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)).numpy()
    assert compare(ref, out, "fp32").status == "pass"


def test_checkpoint_folder_is_loaded_offline(built, tmp_path):
    model, store, _ = built
    folder = tmp_path / "ckpt"
    model.load_torch(store).bert.save_pretrained(str(folder))  # safetensors by default
    project_tokenizer().save_pretrained(str(folder))
    assert (folder / "model.safetensors").exists()
    from_ckpt = BertBaseSentiment(ModelOptions(seq_len=SEQ_LEN, check_samples=8, weights=str(folder)))
    assert from_ckpt.weights_id() == str(folder)
    ckpt_store = ArtifactStore(tmp_path / "cache", from_ckpt.key())
    facts = from_ckpt.build_artifacts(ckpt_store, {"reference"})
    assert facts["tokenizer"] == str(folder) and "calibration" not in facts
    inputs, ref = read_reference(ckpt_store)
    _, expected = read_reference(store)
    np.testing.assert_allclose(ref, expected, rtol=1e-10, atol=1e-10)


def test_dataset_and_batch_callbacks_shape_the_inputs():
    def shortest_first(texts):
        return sorted(texts, key=len)

    model = BertBaseSentiment(tiny_options(), dataset_fn=shortest_first)
    plain = BertBaseSentiment(tiny_options())
    first = model.sample_pool(1)[0]
    np.testing.assert_array_equal(first["input_ids"], plain.tokenize([min(REVIEWS, key=len)])["input_ids"])
    assert model.key() != plain.key()

    calls = []

    def batch_fn(texts):
        calls.append(len(texts))
        enc = project_tokenizer()(texts, padding="longest", return_tensors="np")
        return {k: enc[k] for k in INPUT_NAMES}

    custom = BertBaseSentiment(tiny_options(), texts=["good", "bad film", "an awful, dull plot"], batch_fn=batch_fn)
    pool = custom.sample_pool(3)
    assert calls == [3]
    lengths = [len(project_tokenizer()(t)["input_ids"]) for t in ["good", "bad film", "an awful, dull plot"]]
    assert pool[0]["input_ids"].shape == (1, max(lengths))
    assert [int(p["attention_mask"].sum()) for p in pool] == lengths


@pytest.mark.parametrize("options, words", [
    (ModelOptions(seq_len=1000), "--seq-len"),
    (ModelOptions(extra={"layer": 2}), "unknown model option(s) layer"),
    (ModelOptions(extra={"hidden": 100, "heads": 3}), "not a multiple of heads"),
    (ModelOptions(extra={"layers": 0}), "option layers must be a positive integer"),
    (ModelOptions(weights="/nonexistent/ckpt"), "not a checkpoint folder"),
])
def test_bad_options_are_bad_input(options, words):
    with pytest.raises(BadInput) as e:
        BertBaseSentiment(options)
    assert words in str(e.value)


@pytest.mark.parametrize("engine", ["onnxruntime", "torch", "openvino"])
def test_cpu_engines_pass_the_check_on_tiny_bert(built, engine):
    model, store, _ = built
    inputs, ref = read_reference(store)
    out = run_cpu_engine(engine, model, store, inputs)
    result = compare(ref, out, "fp32", model.task)
    assert result.status == "pass", result.detail

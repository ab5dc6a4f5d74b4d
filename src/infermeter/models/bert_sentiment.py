"""BERT-base sentiment classifier (transformers BertForSequenceClassification, 2 labels), torch source.

Weights: seeded synthetic ones from the BERT-base configuration (12 layers, hidden 768), or a local
checkpoint folder given as --weights (from_pretrained with local_files_only=True; safetensors preferred).
Synthetic weights get their classifier head calibrated (rescaled, bias shifted) so the check inputs'
logits vary on a scale of 1 and split between both labels, which makes the correctness gate mean something.

Artifacts: "weights.safetensors" (the one source of weights; 'torch-source'), "model.onnx" (exported
from those weights with dynamic batch and sequence axes) and "reference.npz" (float64 logits).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.check import assert_informative
from infermeter.errors import BadInput
from infermeter.models.base import InputSpec, Model, ModelOptions
from infermeter.models.reference import export_onnx, torch_reference, write_reference
from infermeter.models.text_samples import REVIEWS

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
WEIGHTS = "weights.safetensors"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: options.extra keys this model reads; the sizes default to BERT-base
SIZE_DEFAULTS = {"layers": 12, "hidden": 768, "heads": None, "intermediate": None, "vocab_size": 30522}
MAX_POSITIONS = 512
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def project_vocab(texts: Sequence[str] = REVIEWS) -> list[str]:
    """A WordPiece vocabulary built offline from the shipped reviews: special tokens, every character
    as a word start and as a '##' continuation (so no word of the sample is unknown), then the words
    by frequency (ties alphabetical). Deterministic."""
    counts: dict[str, int] = {}
    chars: set[str] = set()
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
            chars.update(word)
    pieces = sorted(chars)
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    return [*SPECIAL_TOKENS, *pieces, *(f"##{c}" for c in pieces), *words]


@functools.lru_cache(maxsize=1)
def project_tokenizer():
    """The project's BERT-style tokenizer (lower-casing, WordPiece over project_vocab()), as a
    transformers fast tokenizer; built in memory, nothing downloaded."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(project_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


@functools.lru_cache(maxsize=4)
def _folder_tokenizer(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@functools.lru_cache(maxsize=1)
def _logits_module_class():
    import torch

    class LogitsOnly(torch.nn.Module):
        """BertForSequenceClassification returning the logits tensor alone, inputs by position or name."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids, return_dict=True).logits

    return LogitsOnly


class BertBaseSentiment(Model):
    """BERT-base binary sentiment classifier.

    Python API::

        BertBaseSentiment(options, texts=None, dataset_fn=None, batch_fn=None)

    - texts: the raw texts to draw inputs from (default: the shipped reviews in text_samples.REVIEWS).
    - dataset_fn(texts) -> texts: processes the whole data set once (filter, clean, reorder).
    - batch_fn(list_of_texts) -> {"input_ids", "attention_mask", "token_type_ids": arrays [N, L]}:
      turns texts into model inputs (default: the tokenizer, padded and truncated to options.seq_len).
    In a sweep the model is sent to worker processes, so callbacks must be picklable (module-level
    functions). options.extra may set sizes: layers, hidden, heads, intermediate, vocab_size (defaults:
    BERT-base), and tokenizer (a local tokenizer folder).
    """

    name = "bert_base_sentiment"
    transformer = True
    aliases = ("bert",)
    sources = ("torch", "onnx")
    builder = "torch"
    task = "classification"
    requires = ("torch", "transformers", "tokenizers", "safetensors")

    def __init__(self, options: ModelOptions | None = None, texts: Sequence[str] | None = None,
                 dataset_fn: Callable[[list[str]], list[str]] | None = None,
                 batch_fn: Callable[[list[str]], dict[str, np.ndarray]] | None = None):
        super().__init__(options)
        self.texts = list(texts) if texts is not None else None
        self.dataset_fn = dataset_fn
        self.batch_fn = batch_fn
        self._validate_options()

    def _validate_options(self) -> None:
        o = self.options
        if not 1 <= o.seq_len <= MAX_POSITIONS:
            raise BadInput(f"--seq-len: BERT takes 1..{MAX_POSITIONS} tokens, got {o.seq_len}")
        unknown = sorted(set(o.extra) - set(SIZE_DEFAULTS) - {"tokenizer"})
        if unknown:
            raise BadInput(f"bert_base_sentiment: unknown model option(s) {', '.join(unknown)}; "
                           f"known: {', '.join([*SIZE_DEFAULTS, 'tokenizer'])}")
        for k in SIZE_DEFAULTS:
            v = o.extra.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise BadInput(f"bert_base_sentiment: option {k} must be a positive integer, got {v!r}")
        if o.weights is not None:
            folder = Path(o.weights)
            if not (folder / "config.json").is_file():
                raise BadInput(f"--weights {folder}: not a checkpoint folder (needs config.json and "
                               "model.safetensors or pytorch_model.bin)")
            sizes = sorted(set(o.extra) & set(SIZE_DEFAULTS))
            if sizes:
                raise BadInput(f"--weights {folder}: the checkpoint fixes the sizes; drop option(s) {', '.join(sizes)}")
        tok = o.extra.get("tokenizer")
        if tok is not None and not any((Path(tok) / f).is_file() for f in TOKENIZER_FILES):
            raise BadInput(f"tokenizer {tok}: not a tokenizer folder (needs tokenizer.json or vocab.txt)")
        cfg = self._size_config()
        if cfg["hidden"] % cfg["heads"]:
            raise BadInput(f"bert_base_sentiment: hidden {cfg['hidden']} is not a multiple of heads {cfg['heads']}")

    def _size_config(self) -> dict[str, int]:
        sizes = {k: self.options.extra.get(k, v) for k, v in SIZE_DEFAULTS.items()}
        sizes["heads"] = sizes["heads"] or max(1, sizes["hidden"] // 64)
        sizes["intermediate"] = sizes["intermediate"] or 4 * sizes["hidden"]
        return sizes

    # ---- identity ------------------------------------------------------------------------------
    def weights_origin(self) -> str:
        return "seeded synthetic BERT-base weights (classifier head calibrated) unless --weights CHECKPOINT_DIR"

    def shape_tag(self) -> str:
        return f"seq{self.options.seq_len}"

    def key(self) -> str:
        """The base key, plus a digest of what else shapes the inputs: custom texts, callbacks, tokenizer."""
        base = super().key()
        extra = {}
        if self.texts is not None:
            extra["texts"] = hashlib.sha256(json.dumps(self.texts).encode()).hexdigest()
        for label, fn in (("dataset_fn", self.dataset_fn), ("batch_fn", self.batch_fn)):
            if fn is not None:
                extra[label] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        tok = self._tokenizer_folder()
        if tok is not None:
            from infermeter.artifacts import hash_path

            extra["tokenizer"] = hash_path(tok)
        if not extra:
            return base
        return f"{base}-{hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]}"

    # ---- inputs ----------------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        return [InputSpec(n, "int64", (-1, -1), ("batch", "sequence")) for n in INPUT_NAMES]

    def _tokenizer_folder(self) -> Path | None:
        tok = self.options.extra.get("tokenizer")
        if tok is not None:
            return Path(tok)
        w = self.options.weights
        if w is not None and any((Path(w) / f).is_file() for f in TOKENIZER_FILES):
            return Path(w)
        return None

    def tokenizer(self):
        """The tokenizer: a local folder's (options.extra['tokenizer'] or the checkpoint's), else the project's."""
        folder = self._tokenizer_folder()
        return project_tokenizer() if folder is None else _folder_tokenizer(str(folder))

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The default batch_fn: padded and truncated to options.seq_len, int64."""
        enc = self.tokenizer()(list(texts), padding="max_length", truncation=True, max_length=self.options.seq_len,
                               return_tensors="np", return_token_type_ids=True, return_attention_mask=True)
        return {n: np.asarray(enc[n], dtype=np.int64) for n in INPUT_NAMES}

    def dataset(self) -> list[str]:
        texts = list(self.texts) if self.texts is not None else list(REVIEWS)
        if self.dataset_fn is not None:
            texts = list(self.dataset_fn(texts))
        if not texts:
            raise BadInput("bert_base_sentiment: the data set is empty after dataset_fn")
        return texts

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        """n single-text inputs; past the data set's size, texts get a short text in front, a different
        one each round, so items stay distinct even where truncation cuts the end."""
        texts = self.dataset()
        base = len(texts)
        shortest = sorted(texts, key=len)
        chosen = [texts[i] if i < base else f"{shortest[(i // base - 1) % base]} {texts[i % base]}"
                  for i in range(n)]
        batch = (self.batch_fn or self.tokenize)(chosen)
        missing = [k for k in INPUT_NAMES if k not in batch]
        if missing:
            raise BadInput(f"batch_fn returned no {', '.join(missing)} (it must return {', '.join(INPUT_NAMES)})")
        arrays = {k: np.asarray(batch[k], dtype=np.int64) for k in INPUT_NAMES}
        for k, a in arrays.items():
            if a.ndim != 2 or a.shape[0] != n:
                raise BadInput(f"batch_fn: {k} has shape {a.shape}, expected [{n}, sequence]")
        return [{k: a[i:i + 1].copy() for k, a in arrays.items()} for i in range(n)]

    # ---- weights ---------------------------------------------------------------------------------
    def bert_config(self):
        from transformers import BertConfig

        if self.options.weights is not None:
            return BertConfig.from_pretrained(self.options.weights, local_files_only=True)
        s = self._size_config()
        return BertConfig(vocab_size=s["vocab_size"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                          num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
                          max_position_embeddings=MAX_POSITIONS, num_labels=2)

    def _source_model(self):
        """The float32 HF model from the checkpoint, or seeded synthetic and calibrated."""
        import torch
        from transformers import BertForSequenceClassification

        if self.options.weights is not None:
            model = BertForSequenceClassification.from_pretrained(self.options.weights, local_files_only=True)
            return model.float().eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed)
            model = BertForSequenceClassification(self.bert_config()).eval()
        self._calibrate(model)
        return model

    def _calibrate(self, model) -> None:
        """Rescale the classifier head so the check inputs' logits vary on a scale of 1 around 0 and
        their margins split at the middle gap: half the check inputs get each label, none sits on the
        boundary. Random BERT logits vary only slightly across inputs and share a large common offset,
        which would let a wrong engine pass a comparison relative to the outputs' size."""
        import copy

        import torch

        logits = torch_reference(_logits_module_class()(copy.deepcopy(model)), self.check_inputs())
        margins = logits[:, 1] - logits[:, 0]
        ordered = np.sort(margins)
        k = len(ordered) // 2
        threshold = (ordered[k - 1] + ordered[k]) / 2
        scale = 1.0 / max(float(np.std(margins)), 1e-12)
        mean0 = float(np.mean(logits[:, 0]))
        head = model.classifier
        with torch.no_grad():
            bias = head.bias.double()
            head.weight.mul_(scale)
            head.bias.copy_(torch.stack([scale * (bias[0] - mean0), scale * (bias[1] - mean0 - threshold)]))

    def _check_vocab(self, vocab_size: int) -> None:
        tok = self.tokenizer()
        if len(tok) > vocab_size:
            raise BadInput(f"bert_base_sentiment: the tokenizer has {len(tok)} tokens, the model's vocab_size is "
                           f"{vocab_size}")

    def _build_weights(self, tmp: Path) -> None:
        from safetensors.torch import save_file

        model = self._source_model()
        self._check_vocab(model.config.vocab_size)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"origin": self.weights_id()})

    def load_torch(self, store):
        """The classifier (logits only; forward(input_ids, attention_mask, token_type_ids)) with the
        store's source weights, float32, eval mode."""
        from safetensors.torch import load_file
        from transformers import BertForSequenceClassification

        path = store.build(WEIGHTS, self._build_weights)
        bert = BertForSequenceClassification(self.bert_config())
        bert.load_state_dict(load_file(str(path)), strict=True)
        return _logits_module_class()(bert.float().eval()).eval()

    # ---- artifacts -------------------------------------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        unknown = set(kinds) - {"torch-source", "onnx", "reference"}
        if unknown:
            raise ValueError(f"{self.name} cannot build {', '.join(sorted(unknown))}")
        store.build(WEIGHTS, self._build_weights)  # every other artifact derives from these weights
        facts: dict[str, Any] = {"weights": self.weights_id(), "weights_file": WEIGHTS,
                                 "tokenizer": str(self._tokenizer_folder() or "project WordPiece (text_samples)"),
                                 "seq_len": self.options.seq_len}
        if self.options.weights is None:
            facts["calibration"] = ("classifier head rescaled and its bias shifted so the check inputs' logits "
                                    "vary on a scale of 1 and split between both labels")
        if "onnx" in kinds:
            export_facts: dict[str, Any] = {}

            def build_onnx(tmp: Path) -> None:
                dynamic = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES} | {"logits": {0: "batch"}}
                export_facts.update(export_onnx(self.load_torch(store), self.check_inputs(), tmp, ["logits"], dynamic))

            store.build("model.onnx", build_onnx)
            facts.update(export_facts or {"onnx": "cached"})
        if "reference" in kinds:
            inputs = self.check_inputs()
            outputs = torch_reference(self.load_torch(store), inputs)
            facts.update(assert_informative(outputs, self.task))
            write_reference(store, inputs, outputs)
            facts["reference"] = "torch float64 (model.double())"
        return facts

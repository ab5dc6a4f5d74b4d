"""The model contract: inputs, one source of weights, derived artifacts and the reference outputs.

A Model object is cheap to create and imports no framework. `build_artifacts` runs in a worker
process of the model's source framework (TensorFlow for keras models, torch for torch models) and
writes everything other engines need into the artifact store: the ONNX export above all, and the
reference outputs on K distinct check inputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from infermeter import __version__
from infermeter.errors import BadInput


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[int, ...]  # -1 for a dynamic axis; axis 0 is the batch axis
    dims_names: tuple[str, ...] = ()

    def with_batch(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape[1:])


@dataclass
class ModelOptions:
    """What the user chose about the model; part of the artifact key."""

    seed: int = 0
    weights: str | None = None
    image: str | None = None
    input_shapes: list[list[int]] | None = None  # one experiment's shapes, one per input
    seq_len: int = 128
    check_samples: int = 8
    inputs: str | None = None  # the user's input items (.npz or a folder of .npy files)
    input_ranges: dict = field(default_factory=dict)  # input name -> (low, high) of synthetic values
    extra: dict = field(default_factory=dict)


class Model:
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    #: where the weights live natively, then what it can be exported to: ("keras", "onnx"), ("torch", "onnx"), ("onnx",)
    sources: ClassVar[tuple[str, ...]] = ("onnx",)
    #: the framework whose worker builds the artifacts: "tf", "torch" or "onnx"
    builder: ClassVar[str] = "onnx"
    #: "classification" (top-1 agreement is meaningful) or "generic"
    task: ClassVar[str] = "classification"
    #: modules build_artifacts needs
    requires: ClassVar[tuple[str, ...]] = ()
    #: a transformer (quantizers treat attention blocks specially, e.g. NNCF's ModelType.TRANSFORMER)
    transformer: ClassVar[bool] = False
    #: whether --inputs (the user's own input items) can feed this model
    accepts_inputs: ClassVar[bool] = False
    #: version of how the model's artifacts are derived (its export): part of the artifact key
    artifact_recipe: ClassVar[str] = ""

    def __init__(self, options: ModelOptions | None = None):
        self.options = options or ModelOptions()
        if self.options.inputs and not self.accepts_inputs:
            raise BadInput(f"--inputs applies to ONNX files and image models; {self.name or type(self).__name__} builds its own "
                           "calibrated inputs")

    # ---- identity ---------------------------------------------------------------------------
    def weights_id(self) -> str:
        return self.options.weights or f"synthetic:{self.options.seed}"

    def weights_origin(self) -> str:
        """Where the weights come from, for `infermeter list`."""
        return "seeded synthetic weights unless --weights PATH"

    def shape_tag(self) -> str:
        """Short label of this experiment's input size, e.g. '224x224'."""
        return "x".join(str(d) for d in self.input_specs()[0].shape[1:] if d > 0) or "dyn"

    def key(self) -> str:
        """Content key of every artifact derived from this model: changes when anything that shapes
        the weights or the graph changes."""
        ident = {"model": self.name, "weights": self.weights_id(), "weights_hash": self._weights_file_hash(),
                 "inputs_hash": self.inputs_hash(),
                 "options": asdict(self.options), "specs": [asdict(s) for s in self.input_specs()],
                 "infermeter": __version__, "recipe": self.artifact_recipe}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"{self.name}-{self.shape_tag()}-{digest}"

    def inputs_hash(self) -> str | None:
        """sha256 of the user's --inputs (file or folder), None for synthetic inputs."""
        from infermeter.artifacts import hash_path

        return hash_path(self.options.inputs) if self.options.inputs else None

    def _weights_file_hash(self) -> str | None:
        from infermeter.artifacts import hash_path

        w = self.options.weights
        return hash_path(w) if w else None

    # ---- inputs -------------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        raise NotImplementedError

    def max_batch(self) -> int | None:
        """The batch size the graph fixes on axis 0 (the smallest, if inputs disagree), or None if dynamic."""
        fixed = [s.shape[0] for s in self.input_specs() if s.shape[0] > 0]
        return min(fixed) if fixed else None

    def supports_batch(self, batch: int) -> tuple[bool, str]:
        fixed = self.max_batch()
        if fixed is None or batch == fixed:
            return True, ""
        return False, (f"{self.name} fixes the batch size to {fixed} (axis 0 of input {self.input_specs()[0].name!r}); "
                       f"batch {batch} cannot run: export it with a dynamic batch axis")

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        """n distinct, preprocessed single-item inputs (leading axis 1), deterministic for a seed."""
        raise NotImplementedError

    @staticmethod
    def make_batch(pool: list[dict[str, np.ndarray]], batch: int, index: int) -> dict[str, np.ndarray]:
        """Batch number `index`, rotating through the pool so consecutive batches differ."""
        start = (index * batch) % len(pool)
        items = [pool[(start + j) % len(pool)] for j in range(batch)]
        return {k: np.ascontiguousarray(np.concatenate([it[k] for it in items], axis=0)) for k in items[0]}

    def check_inputs(self) -> dict[str, np.ndarray]:
        """The K distinct check inputs as one batch."""
        pool = self.sample_pool(self.options.check_samples)
        return self.make_batch(pool, len(pool), 0)

    def quantization_pools(self, calibration: int, heldout: int) -> tuple[list[dict[str, np.ndarray]],
                                                                          list[dict[str, np.ndarray]]]:
        """(calibration items, held-out items) for int8/bf16: the model's own real inputs that come after
        the check inputs in its pool (pool items are distinct by construction: other photo crops, other
        texts), so neither set contains a check input and the two sets share no item."""
        k = self.options.check_samples
        pool = self.sample_pool(k + calibration + heldout)
        return pool[k:k + calibration], pool[k + calibration:]

    # ---- artifacts (run in the builder's worker) ---------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        """Build `kinds` (a subset of 'reference', 'onnx', 'savedmodel', 'keras', 'torch-source')
        into `store`; returns facts for run.json (export tool, opset, reference dtype)."""
        raise NotImplementedError

    def load_keras(self, store):
        """The keras model with the source weights (keras-source models only)."""
        raise NotImplementedError(f"{self.name} has no keras source")

    def load_torch(self, store):
        """A torch.nn.Module with the source weights (torch-source models only)."""
        raise NotImplementedError(f"{self.name} has no torch source")

    def describe(self) -> dict:
        return {"name": self.name, "aliases": list(self.aliases), "sources": list(self.sources),
                "weights": self.weights_origin(), "task": self.task}

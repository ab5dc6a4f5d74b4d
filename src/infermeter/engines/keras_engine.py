"""Keras engines: `keras` calls the Keras model from the store's model.keras, `keras-xla` the same under XLA.

The call is `model(x, training=False)` inside a tf.function whose input signature fixes the batch
size (one trace per shape; a None batch axis with --shape-mode dynamic); it avoids predict_on_batch's
per-call data-adapter work, which dominates small batches. fp16 on a GPU clones the model under the mixed_float16 policy.
"""

from __future__ import annotations

import time
from typing import ClassVar

from infermeter.engines.base import register_engine
from infermeter.engines.tensorflow import TFFunctionEngine


@register_engine
class KerasEngine(TFFunctionEngine):
    name: ClassVar[str] = "keras"
    family: ClassVar[str] = "keras"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "keras")

    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        """`artifacts` is the model's ArtifactStore; a missing model.keras is built here (build_s)."""
        import tensorflow as tf

        self._setup(model, precision)
        t0 = time.perf_counter()
        cached = artifacts.get("model.keras") is not None
        self.info["artifact_cached"] = cached
        if not cached:
            model.build_artifacts(artifacts, {"keras"})
        self.build_s = 0.0 if cached else time.perf_counter() - t0

        t0 = time.perf_counter()
        with tf.device(self._device):
            keras_model = model.load_keras(artifacts)
        self.load_s = time.perf_counter() - t0
        if precision == "fp16":
            from infermeter.models.keras_export import clone_with_dtype_policy

            t0 = time.perf_counter()
            with tf.device(self._device):
                keras_model = clone_with_dtype_policy(keras_model, "mixed_float16")
            self.build_s += time.perf_counter() - t0
        self._keras_model = keras_model
        names = list(self._names)

        def call(*xs):
            feed = xs[0] if len(xs) == 1 else dict(zip(names, xs, strict=True))
            return keras_model(feed, training=False)

        self._set_call(call, model)
        self.info["artifact"] = str(artifacts.path("model.keras"))
        self.info["call"] = "tf.function(model(x, training=False)), input_signature per shape"

    def close(self) -> None:
        super().close()
        self._keras_model = None


@register_engine
class KerasXLAEngine(KerasEngine):
    name: ClassVar[str] = "keras-xla"
    jit_compile: ClassVar[bool] = True

"""TensorFlow engines: `tf` runs the SavedModel's serving signature, `tf-xla` the same under XLA.

The SavedModel is derived from the model's keras source (artifact "savedmodel"); fp16 on a GPU uses a
second SavedModel ("savedmodel-fp16") exported from the keras model cloned under the mixed_float16
policy (float16 compute, float32 variables and inputs). `TFFunctionEngine` holds what the Keras
engines share: thread and GPU settings, staging, the synchronous call and host outputs.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from infermeter.engines.base import DYNAMIC, Engine, EngineContext, register_engine
from infermeter.engines.math_mode import float32_artifact
from infermeter.errors import EngineUnavailable

FP16_NOTE = "fp16 = keras mixed_float16 policy on every layer: float16 compute, float32 variables, inputs and softmax input cast"


def configure_tf(ctx: EngineContext) -> dict[str, Any]:
    """Threads (intra-op = ctx.threads, inter-op 1), GPU memory growth and device choice, before TF
    starts its runtime. Settings that TF no longer accepts (runtime already up in this process) are
    reported in the returned info, never dropped silently."""
    import tensorflow as tf

    info: dict[str, Any] = {"tensorflow": tf.__version__}
    try:
        tf.config.threading.set_intra_op_parallelism_threads(ctx.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as e:
        info["threads_not_applied"] = f"requested intra-op {ctx.threads}, inter-op 1: {e}"
    # 0 means TF's default (all cores)
    info["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    info["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    gpus = tf.config.list_physical_devices("GPU")
    if ctx.device == "cuda":
        if not gpus:
            raise EngineUnavailable(f"TensorFlow {tf.__version__} sees no GPU (built with CUDA: "
                                    f"{tf.test.is_built_with_cuda()})")
        try:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
            info["memory_growth"] = True
        except RuntimeError as e:
            info["memory_growth"] = f"not applied: {e}"
        info["device"] = "/GPU:0"  # the worker's CUDA_VISIBLE_DEVICES makes the chosen GPU number 0
    else:
        if gpus:
            try:
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError as e:
                info["gpu_hidden"] = f"not applied: {e}"
        info["device"] = "/CPU:0"
    return info


def set_tf_math(precision: str) -> dict:
    """TF32 only for tf32 (TensorFlow enables it by default on Ampere and newer); TensorFlow autotunes
    cuDNN convolutions at their first call unless TF_CUDNN_USE_AUTOTUNE=0. Returns run.json facts."""
    import os

    import tensorflow as tf

    from infermeter.engines.math_mode import tf32_allowed

    tf.config.experimental.enable_tensor_float_32_execution(tf32_allowed(precision))
    autotune = os.environ.get("TF_CUDNN_USE_AUTOTUNE", "1") not in ("0", "false", "False")
    return {"math_mode": {"tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled()},
            "cudnn_algo_search": "exhaustive (TF_CUDNN_USE_AUTOTUNE default)" if autotune
            else "heuristic (TF_CUDNN_USE_AUTOTUNE=0 in the environment)"}


def input_signature(model, batch: int | None = None) -> list:
    """TensorSpecs for the model's inputs with this batch size on axis 0 (None: a dynamic batch axis)."""
    import tensorflow as tf

    return [tf.TensorSpec((batch, *s.shape[1:]), s.dtype, name=s.name) for s in model.input_specs()]


def host_outputs(out: Any) -> Any:
    """Outputs copied to host numpy arrays (the copy waits for the device)."""
    if isinstance(out, dict):
        return {k: v.numpy() for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [v.numpy() for v in out]
    return out.numpy()


class TFFunctionEngine(Engine):
    """A tf.function over the model, called with inputs in model.input_specs() order."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "fp16")}
    sources: ClassVar[tuple[str, ...]] = ("keras",)
    jit_compile: ClassVar[bool] = False
    graph_source: ClassVar[str] = "keras-model"  # the SavedModel engines say savedmodel
    no_path: ClassVar[dict[str, str]] = {
        "int8": "TensorFlow's int8 inference is TensorFlow Lite, a separate runtime infermeter does not drive; "
                "int8 runs on onnxruntime, openvino, torch-compile and tensorrt",
        "bf16": "the SavedModel/Keras graph runs as exported, in float32; bf16 runs on torch, torch-compile and "
                "openvino (where the CPU reports BF16)"}

    def __init__(self, ctx: EngineContext):
        super().__init__(ctx)
        self._fn = None
        self._names: list[str] = []
        self._device = "/CPU:0"

    def _setup(self, model, precision: str) -> None:
        self.info.update(configure_tf(self.ctx))
        self._device = self.info["device"]
        self._names = [s.name for s in model.input_specs()]
        self.info["xla"] = self.jit_compile
        self.info["precision"] = precision
        if precision == "fp16":
            self.info["fp16"] = FP16_NOTE
        self.info.update(set_tf_math(precision))

    def _set_call(self, call, model) -> None:
        """The Python callable to trace. With static shapes each batch size gets its own tf.function whose
        input_signature fixes that batch (one concrete function per shape); dynamic mode traces one with
        a None batch axis for every batch size."""
        self._call, self._model = call, model
        self._fn = None
        self.info["signature"] = "exact batch per shape" if self.shape_mode == "static" else "None batch axis"

    def activate(self, batch: int) -> None:
        self.batch = batch
        self._fn = self.compiled_for(self.shape_key(batch), self._trace)

    def _trace(self, key):
        """Trace for this shape and make the first call, where TensorFlow optimises the graph (and XLA
        compiles it), so that cost is compile_s, not a measured call. XLA on or explicitly off, so
        TF_XLA_FLAGS auto-clustering cannot blur `tf`."""
        import tensorflow as tf

        fn = tf.function(self._call, jit_compile=self.jit_compile,
                         input_signature=input_signature(self._model, None if key == DYNAMIC else key))
        batch = max(2, self.batch) if key == DYNAMIC else key
        example = self._model.make_batch(self._model.sample_pool(batch), batch, 0)
        with tf.device(self._device):
            host_outputs(fn(*[example[n] for n in self._names]))
        self.info.setdefault("traced_input_shapes", {})[str(key)] = [
            str(t.shape) for t in fn.get_concrete_function().structured_input_signature[0]]
        if "graph_form" not in self.info:  # every shape traces the same graph
            from infermeter.models.graph_form import tf_graph_form

            self.info["graph_form"] = tf_graph_form(fn.get_concrete_function())
            self.info["graph_source"] = self.graph_source
        return fn

    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        if self.batch is None:  # nobody activated a shape: the first inputs staged name it
            self.activate(len(next(iter(inputs.values()))))
        if self.ctx.io != "device":
            return inputs  # host arrays: the copy to the device happens inside `infer`, inside timing
        import tensorflow as tf

        with tf.device(self._device):
            return {k: tf.identity(tf.convert_to_tensor(v)) for k, v in inputs.items()}

    def infer(self, inputs: Any) -> Any:
        import tensorflow as tf

        with tf.device(self._device):
            out = self._fn(*[inputs[n] for n in self._names])
        return host_outputs(out)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(super().to_numpy(outputs), dtype=np.float64)

    def close(self) -> None:
        self._fn = None
        self.by_shape.clear()


@register_engine
class TFSavedModelEngine(TFFunctionEngine):
    name: ClassVar[str] = "tf"
    family: ClassVar[str] = "tensorflow"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow",)
    graph_source: ClassVar[str] = "savedmodel"

    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        """`artifacts` is the model's ArtifactStore; a missing SavedModel is built here (build_s)."""
        import tensorflow as tf

        self._setup(model, precision)
        kind = "savedmodel" if float32_artifact(precision) else "savedmodel-fp16"
        t0 = time.perf_counter()
        path = artifacts.get(kind)
        self.info["artifact_cached"] = path is not None
        if path is None:
            path = build_savedmodel(model, artifacts, precision)
        self.build_s = 0.0 if self.info["artifact_cached"] else time.perf_counter() - t0
        self.info["artifact"] = str(path)

        t0 = time.perf_counter()
        with tf.device(self._device):
            self._loaded = tf.saved_model.load(str(path))
        signature = self._loaded.signatures["serving_default"]
        keys = list(signature.structured_input_signature[1])
        if sorted(keys) != sorted(self._names):
            if len(keys) != 1 or len(self._names) != 1:
                raise RuntimeError(f"SavedModel signature takes {keys}, the model's inputs are {self._names}")
            keys = list(keys)  # one input under another name: positional mapping is unambiguous
        else:
            keys = list(self._names)
        self._set_call(lambda *xs: signature(**dict(zip(keys, xs, strict=True))), model)
        self.load_s = time.perf_counter() - t0
        self.info["call"] = "tf.saved_model.load(...).signatures['serving_default'] inside tf.function"


@register_engine
class TFXLAEngine(TFSavedModelEngine):
    name: ClassVar[str] = "tf-xla"
    jit_compile: ClassVar[bool] = True


def build_savedmodel(model, store, precision: str):
    """The SavedModel for this precision: fp32 from the model's own build, fp16 from a mixed_float16 clone."""
    if float32_artifact(precision):
        model.build_artifacts(store, {"savedmodel"})
        return store.path("savedmodel")
    from infermeter.models.keras_export import clone_with_dtype_policy, export_savedmodel

    def write(tmp):
        export_savedmodel(clone_with_dtype_policy(model.load_keras(store), "mixed_float16"), tmp, model.input_specs())

    return store.build("savedmodel-fp16", write)

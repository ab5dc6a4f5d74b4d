"""The Keras model's derived forms: the float64 reference, the SavedModel and the ONNX graph.

The ONNX graph is the one ONNX Runtime, TensorRT, OpenVINO (unless its own TF frontend is faster) and the
torch engines (through onnx2torch) all start from, so it must be what an expert exporter hands over:
- tf2onnx with every optimizer pass completing. Its transpose optimizer (tf2onnx 1.16-1.17) crashes in
  `_add_handler` when a Conv is followed by an Add of a scalar constant (hard-swish's `x + 3`): it takes
  `max()` of the constant's empty shape. tf2onnx then drops the whole pass and every NHWC convolution keeps
  a Transpose pair around it (128 Transposes in MobileNetV3-Large, 3-5x slower on OpenVINO). The repair:
  a subclass whose Add handler sends a scalar constant to the generic branch handler (a scalar broadcasts
  in any layout, so pushing the Transpose through it is exact), swapped into tf2onnx's optimizer table for
  the conversion (`from_function` takes no optimizers argument).
- Any optimizer pass that still fails is an error of the build (ExportError), never a note.
- Then onnx_fusions: HardSwish/HardSigmoid as ONNX ops, the BatchNorm affine folded into the
  convolution before it, identity Reshapes and zero Pads removed, constants folded.
What was applied is stored in the file's own metadata (metadata_props), so a cached graph still says it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.errors import one_line
from infermeter.models.base import InputSpec

INPUT_NAME = "images"  # the keras Input's name, the SavedModel signature key and the ONNX input name
OUTPUT_NAME = "probabilities"  # the ONNX output name
ONNX_OPSET = 17  # HardSwish needs >= 14
# Enters the artifact key of every Keras model: a changed export never reuses a graph cached by the old one.
EXPORT_RECIPE = "tf2onnx-repaired-transpose+onnxscript-fusions-v1"
PASSES_KEY = "infermeter.passes"  # metadata_props key: JSON {"converter", "applied", "failed"}


class ExportError(RuntimeError):
    """A converter or optimizer pass failed on a built-in model."""


def keras_tf():
    """Keras on the TensorFlow backend (the only one whose SavedModel/tf2onnx path we use)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"keras runs on the {keras.backend.backend()!r} backend; set KERAS_BACKEND=tensorflow")
    return keras


def clone_with_dtype_policy(model, policy: str):
    """The same functional graph with every layer under `policy` ('float64', 'mixed_float16'), same weights."""
    keras = keras_tf()

    def clone_layer(op):
        config = op.get_config()
        if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer):
            config["dtype"] = policy
        return op.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights([np.asarray(w, dtype=v.dtype) for w, v in zip(model.get_weights(), clone.weights, strict=True)])
    return clone


def reference_outputs(keras_model, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, str, str]:
    """(outputs as float64, dtype computed in, note): float64 clone of the model where possible."""
    feed = inputs[INPUT_NAME] if len(inputs) == 1 else inputs
    try:
        model64 = clone_with_dtype_policy(keras_model, "float64")
        x64 = {k: v.astype(np.float64) for k, v in feed.items()} if isinstance(feed, dict) else feed.astype(np.float64)
        out = np.asarray(model64(x64, training=False), dtype=np.float64)
        return out, "float64", "keras model cloned under dtype policy float64 with the same weights"
    except Exception as e:  # an op without a float64 kernel: say so, and use the float32 model
        out = np.asarray(keras_model(feed, training=False), dtype=np.float64)
        return out, "float32", f"float64 clone failed ({one_line(e)}); reference computed in float32"


def export_savedmodel(keras_model, path: Path, specs: list[InputSpec]) -> None:
    """A SavedModel whose serving signature takes `specs` (batch axis dynamic) by input name."""
    import tensorflow as tf

    keras = keras_tf()
    if len(specs) != 1:
        raise ValueError(f"export_savedmodel handles single-input models, got {len(specs)} inputs")
    spec = specs[0]
    signature = [tf.TensorSpec((None, *spec.shape[1:]), spec.dtype, name=spec.name)]
    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(name="serve", fn=lambda x: keras_model(x, training=False), input_signature=signature)
    archive.write_out(str(path), verbose=False)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        self.messages.append(record.getMessage() + (f" ({one_line(exc)})" if exc else ""))


@contextlib.contextmanager
def _repaired_transpose_optimizer():
    """tf2onnx's optimizer table with the scalar-safe transpose optimizer for the duration (see the
    module docstring); restored afterwards."""
    from tf2onnx import optimizer as tf2onnx_optimizer
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    class ScalarSafeTransposeOptimizer(TransposeOptimizer):
        def _add_handler(self, trans, node):
            other = node.inputs[1]
            if other.is_const() and other.get_tensor_value(as_list=False).ndim == 0:
                return self._handle_node_having_branches(trans, node)
            return super()._add_handler(trans, node)

    table = tf2onnx_optimizer._get_optimizers()
    original = table["optimize_transpose"]
    table["optimize_transpose"] = ScalarSafeTransposeOptimizer
    try:
        yield
    finally:
        table["optimize_transpose"] = original


def export_onnx(keras_model, path: Path, specs: list[InputSpec], opset: int = ONNX_OPSET) -> dict[str, Any]:
    """The clean ONNX graph (module docstring): dynamic batch axis named 'batch', output named OUTPUT_NAME.
    Returns the passes applied; raises ExportError when a tf2onnx optimizer pass failed."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from infermeter.models.onnx_fusions import fuse_exported_graph

    signature = [tf.TensorSpec((None, *s.shape[1:]), s.dtype, name=s.name) for s in specs]
    fn = tf.function(lambda *xs: keras_model(xs[0] if len(xs) == 1 else list(xs), training=False))
    # tf2onnx logs optimizer failures (with tracebacks) and carries on without the pass: collect them.
    opt_logger = logging.getLogger("tf2onnx.optimizer")
    collect, propagate = _Collect(), opt_logger.propagate
    opt_logger.addHandler(collect)
    opt_logger.propagate = False
    try:
        with _repaired_transpose_optimizer():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset)
    finally:
        opt_logger.removeHandler(collect)
        opt_logger.propagate = propagate
    failed = sorted(set(collect.messages))
    if failed:
        raise ExportError(f"tf2onnx {tf2onnx.__version__}: {failed[0]}")
    producer = (proto.producer_name, proto.producer_version)
    proto, applied = fuse_exported_graph(proto)
    proto.producer_name, proto.producer_version = producer
    graph = proto.graph
    if len(graph.output) == 1 and graph.output[0].name != OUTPUT_NAME:
        _rename_value(graph, graph.output[0].name, OUTPUT_NAME)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    passes = {"converter": f"tf2onnx {tf2onnx.__version__} (opset {opset}, transpose optimizer repaired)",
              "applied": ["tf2onnx optimizers (all completed)", *applied], "failed": []}
    onnx.helper.set_model_props(proto, {PASSES_KEY: json.dumps(passes)})
    onnx.checker.check_model(proto)
    with open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
    return passes


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def onnx_facts(path: Path) -> dict[str, Any]:
    """Exporter, its version, the opset, the passes and the graph's form, read from the ONNX file itself
    (right even when cached)."""
    import onnx

    from infermeter.models.graph_form import onnx_graph_form

    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    props = {p.key: p.value for p in proto.metadata_props}
    facts = {"onnx_file": str(path), "onnx_exporter": f"{proto.producer_name} {proto.producer_version}".strip(),
             "onnx_opset": opset, "onnx_graph_form": onnx_graph_form(proto)}
    if PASSES_KEY in props:
        facts["onnx_passes"] = json.loads(props[PASSES_KEY])
    return facts

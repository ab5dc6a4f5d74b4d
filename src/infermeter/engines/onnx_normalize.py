"""Normalise a foreign ONNX graph before a converter reads it, with onnxscript's optimizer.

Exporters other than torch's (PaddlePaddle, older tf2onnx, hand-edited files) store weights as Constant
nodes, leave shapes uninferred and keep constant subgraphs; converters such as onnx2torch expect plain
initializers and fail on such graphs (KeyError on the weight's name). onnxscript's constant folding (with
ONNX shape inference) and onnx_ir's passes lift constants to initializers and drop dead nodes. The full
`onnxscript.optimizer.optimize` also applies pattern rewrites, which turn a Flatten into a Reshape that
copies dims (shape 0) and so defeat torch.export; normalising needs no rewrites.

Some graphs compute their weights with nodes (ConstantOfShape, a Mul of a stored tensor by a scale): the
converter needs those folded into initializers too. onnxscript keeps them unfolded to keep exported files
small (ConstantOfShape always; any node with an input over 8192 or an output over 512*512 elements), so
here ConstantOfShape of a constant shape folds, and the size limits are raised to FOLD_SIZE_LIMIT, which
holds any single weight that a protobuf graph (2 GB at most) can carry.
"""

from __future__ import annotations

import re

#: elements of the largest tensor constant folding may read or write (512 Mi fp32 elements = 2 GiB)
FOLD_SIZE_LIMIT = 2**29


def import_optimizer() -> None:
    """Import onnxscript ahead of a timed conversion (seconds of library import are not model building)."""
    try:
        import onnxscript.optimizer  # noqa: F401
    except ImportError:
        pass


def _fold_weights(node) -> bool | None:
    """fold_constants' should_fold: True for ConstantOfShape (its shape is constant when this is asked),
    None (onnxscript's own rules) for every other node."""
    return True if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx") else None


def normalised_graph(onnx_path: str):
    """(ModelProto ready for a converter, a short note of what was done for run.json). When the optimizer
    itself fails the original graph is returned and the note says why."""
    import onnx

    proto = onnx.load(onnx_path)
    try:
        import onnxscript.optimizer
    except ImportError:
        return proto, "not normalised: onnxscript is not installed"
    try:
        import onnx_ir as ir

        before = len(proto.graph.node)
        model = ir.from_proto(proto)
        passes = onnxscript.optimizer.common_passes
        # Initializers also listed as graph inputs (IR < 4 required it) are never fed here: constants,
        # which folding skips while they stay overridable inputs.
        passes.RemoveInitializersFromInputsPass()(model)
        onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True, input_size_limit=FOLD_SIZE_LIMIT,
                                            output_size_limit=FOLD_SIZE_LIMIT, should_fold=_fold_weights)
        ir.passes.Sequential(passes.RemoveUnusedNodesPass(),
                             passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
                             passes.LiftSubgraphInitializersToMainGraphPass())(model)
        out = ir.to_proto(model)
    except Exception as e:  # an optimizer bug must not cost the user the engine: convert the file as it is
        return proto, f"not normalised: onnxscript.optimizer failed ({type(e).__name__}: {str(e)[:200]})"
    return out, (f"onnxscript {onnxscript.__version__} fold_constants + onnx_ir passes: constants folded and lifted "
                 "to initializers, "
                 f"{before} -> {len(out.graph.node)} nodes")


def converter_error(converter: str, e: BaseException) -> str:
    """One line naming the converter and, where its message says, the operator it cannot convert."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    op = re.search(r"operation_type=['\"]?([A-Za-z0-9_]+)['\"]?(?:, version=(\d+))?", text)
    if op:
        version = f" (opset {op.group(2)})" if op.group(2) else ""
        return f"{converter} cannot convert operator {op.group(1)}{version}: {text[:300]}"
    return f"{converter} failed to convert the graph: {text[:300]}"

"""Normalise a foreign ONNX graph before a converter reads it, with onnxscript's optimizer.

Exporters other than torch's (PaddlePaddle, older tf2onnx, hand-edited files) store weights as Constant
nodes, leave shapes uninferred and keep constant subgraphs; converters such as onnx2torch expect plain
initializers and fail on such graphs (KeyError on the weight's name). onnxscript's constant folding (with
ONNX shape inference) and onnx_ir's passes lift constants to initializers and drop dead nodes. The full
`onnxscript.optimizer.optimize` also applies pattern rewrites, which turn a Flatten into a Reshape that
copies dims (shape 0) and so defeat torch.export; normalising needs no rewrites.
"""

from __future__ import annotations

import re


def import_optimizer() -> None:
    """Import onnxscript ahead of a timed conversion (seconds of library import are not model building)."""
    try:
        import onnxscript.optimizer  # noqa: F401
    except ImportError:
        pass


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
        onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True)
        passes = onnxscript.optimizer.common_passes
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

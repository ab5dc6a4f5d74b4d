"""The form of the graph an engine is handed: node count, Transposes and the most common ops.

The graph is part of the measurement (a converter pass that failed quietly once left 128 Transposes in
MobileNetV3-Large and cost OpenVINO 3-5x), so every engine records the form of what it runs in run.json
and the node count travels with each row. Constants, parameters and results are not nodes here: only
operations that execute.
"""

from __future__ import annotations

from collections import Counter

TOP_OPS = 8
_NOT_COMPUTE = {"Constant", "Parameter", "Result", "placeholder", "output", "get_attr"}


def form_of(op_types) -> dict:
    """{"nodes", "transposes", "ops": the TOP_OPS most common op types with counts} of a list of op types."""
    counts = Counter(t for t in op_types if t not in _NOT_COMPUTE)
    # ONNX Transpose, OpenVINO Transpose, onnx2torch's OnnxTranspose, torch's permute
    transposes = sum(c for op, c in counts.items() if "transpose" in op.lower() or op == "permute")
    return {"nodes": sum(counts.values()), "transposes": transposes,
            "ops": dict(counts.most_common(TOP_OPS))}


def onnx_graph_form(proto) -> dict:
    """Of an onnx ModelProto's main graph."""
    return form_of(node.op_type for node in proto.graph.node)


def onnx_file_form(path) -> dict:
    """Of an ONNX file (its weights are not read)."""
    import onnx

    return onnx_graph_form(onnx.load(str(path), load_external_data=False))


def openvino_graph_form(ov_model) -> dict:
    """Of an openvino.Model (read or converted, before compilation)."""
    return form_of(op.get_type_name() for op in ov_model.get_ordered_ops())


def openvino_runtime_form(compiled) -> dict:
    """Of a compiled OpenVINO model's execution graph: the CPU plugin's layers after its own fusions (layer
    types such as Convolution, Subgraph, Reorder; a Reorder is a layout conversion between layers)."""
    types = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()]
    form = form_of(t for t in types if t not in ("Const", "Input", "Output"))
    form["reorders"] = types.count("Reorder")
    return form


_TF_PLUMBING = {"Placeholder", "Const", "Identity", "IdentityN", "NoOp", "ReadVariableOp", "VarHandleOp",
                "PartitionedCall", "StatefulPartitionedCall", "_Arg", "_Retval"}


def tf_graph_form(concrete_function) -> dict:
    """Of a traced tf.function: the ops of its graph and of the functions it calls (the Keras call), before
    Grappler's own rewrites; variable reads and call plumbing are not counted."""
    graph_def = concrete_function.graph.as_graph_def()
    ops = [n.op for n in graph_def.node]
    ops += [n.op for f in graph_def.library.function for n in f.node_def]
    return form_of(op for op in ops if op not in _TF_PLUMBING)


def fx_graph_form(module) -> dict:
    """Of a torch module: its fx graph's calls when it has one (onnx2torch's GraphModule), each named by the
    called submodule's class or the function's name; else the module tree's leaf modules."""
    graph = getattr(module, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return form_of(type(m).__name__ for m in module.modules() if not list(m.children()))
    names = dict(module.named_modules())
    ops = []
    for node in graph.nodes:
        if node.op == "call_module":
            ops.append(type(names[node.target]).__name__)
        elif node.op in ("call_function", "call_method"):
            ops.append(getattr(node.target, "__name__", str(node.target)))
        else:
            ops.append(node.op)
    return form_of(ops)

"""Converters onnx2torch lacks for operators that ONNX Runtime runs, registered through onnx2torch's own
extension point (`onnx2torch.node_converters.registry.add_converter`), so `onnx2torch.convert` takes the
graphs that public models ship with:

- GlobalMaxPool (opset 1): the max over every spatial axis, keeping them as size 1 (a byte classifier's
  pooling over its sequence);
- Dropout before opset 10 (opsets 1, 6, 7): the identity at inference, as onnx2torch already converts
  opsets 10+; a graph that reads the mask output is still refused.

`register()` adds each one only where the installed onnx2torch has no converter of its own for it.
"""

from __future__ import annotations

#: (operator, opset versions) this module converts
CONVERTERS = (("GlobalMaxPool", (1,)), ("Dropout", (1, 6, 7)))


def _global_max_pool(node, graph):
    import torch
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    class OnnxGlobalMaxPool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)

    return OperationConverterResult(torch_module=OnnxGlobalMaxPool(), onnx_mapping=onnx_mapping_from_node(node))


def _dropout_before_opset_10(node, graph):
    import torch
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    if len([o for o in node.output_values if o]) > 1:
        raise NotImplementedError("Dropout whose mask output the graph reads")
    return OperationConverterResult(torch_module=torch.nn.Dropout(p=node.attributes.get("ratio", 0.5)),
                                    onnx_mapping=onnx_mapping_from_node(node))


_FUNCTIONS = {"GlobalMaxPool": _global_max_pool, "Dropout": _dropout_before_opset_10}


_ADDED: list[str] = []  # 'Op-vN' of every converter registered from here in this process


def register() -> list[str]:
    """Register the converters the installed onnx2torch lacks (once per process); the 'Op-vN' of those
    this module serves, for run.json."""
    from onnx2torch.node_converters.registry import add_converter, get_converter

    for op, versions in CONVERTERS:
        for version in versions:
            try:
                get_converter(op, version)
                continue  # onnx2torch has one: its own, or one registered here earlier
            except NotImplementedError:
                pass
            add_converter(operation_type=op, version=version)(_FUNCTIONS[op])
            _ADDED.append(f"{op}-v{version}")
    return list(_ADDED)

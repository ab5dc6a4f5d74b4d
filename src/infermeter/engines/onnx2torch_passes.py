"""Rewrites of onnx2torch's module that keep its function and let torch.export / TorchDynamo trace it:
onnx2torch reads some constant operands (reshape targets, pads, squeeze axes) at run time, which
TorchDynamo cannot trace and torch.export turns into data-dependent sizes. Each pass replaces such a
node whose operand is a stored constant by the plain torch call with that constant."""

from __future__ import annotations


def fold_all(gm) -> dict[str, int]:
    """Every pass on the module, in place; how many nodes each rewrote, for run.json."""
    return {"reshapes_folded": fold_constant_reshapes(gm), "pads_folded": fold_constant_pads(gm),
            "squeezes_folded": fold_constant_squeeze_axes(gm), "runtime_shapes": read_runtime_shapes(gm),
            "hardsigmoids_native": native_hardsigmoids(gm)}


def fold_constant_reshapes(gm) -> int:
    """Replace onnx2torch Reshape modules whose target shape is a stored constant by a plain
    torch.reshape with that shape. onnx2torch builds the shape with torch.Size(tensor), which
    TorchDynamo cannot trace (torch.compile fails on every tf2onnx export with a Flatten); the folded
    graph computes the same function. Shapes containing 0 ("copy this dim") are left alone."""
    import torch
    from onnx2torch.node_converters.reshape import OnnxReshape

    folded = 0
    for node, _ in _module_calls(gm, OnnxReshape):
        data, const = node.args[0], _constant_of(gm, node.args[1])
        if const is None:
            continue
        shape = [int(v) for v in const.reshape(-1).tolist()]
        if 0 in shape:
            continue
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(torch.reshape, (data, tuple(shape)))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)


def _module_calls(gm, types, n_args: int | None = None):
    """(node, module) of each call of a submodule of `types` (with exactly n_args arguments, if given), listed
    up front so a pass may replace the nodes it visits."""
    found = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and (n_args is None or len(node.args) == n_args):
            module = gm.get_submodule(node.target)
            if isinstance(module, types):
                found.append((node, module))
    return found


def _recompiled(gm, folded: int) -> int:
    """After a fold pass: drop what it left dead and regenerate the module's code (only if it changed)."""
    if folded:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return folded


def _constant_of(gm, node):
    """The tensor behind a get_attr node, else None."""
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def fold_constant_pads(gm) -> int:
    """Replace onnx2torch's OnnxPadDynamic whose pads (and fill value) are stored constants by a plain
    F.pad with those pads. It reads the pads with .tolist() at run time, which torch.export turns into
    data-dependent sizes that PT2E quantization cannot reason about; the folded graph computes the same."""
    import torch.nn.functional as F
    from onnx2torch.node_converters.pad import (
        OnnxPadDynamic,
        _onnx_padding_to_torch,
        _torch_padding_to_mode_format,
    )

    folded = 0
    for node, module in _module_calls(gm, OnnxPadDynamic):
        mode = module.mode
        pads = _constant_of(gm, node.args[1]) if len(node.args) > 1 else None
        if pads is None or len(node.args) > 3:
            continue
        value = 0.0
        if len(node.args) == 3 and node.args[2] is not None:
            const = _constant_of(gm, node.args[2])
            if const is None:
                continue
            value = float(const.reshape(-1)[0])
        torch_pads = _torch_padding_to_mode_format(_onnx_padding_to_torch([int(v) for v in pads.reshape(-1).tolist()]),
                                                   mode)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(F.pad, (node.args[0], tuple(torch_pads)), {"mode": mode, "value": value})
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)


def fold_constant_squeeze_axes(gm) -> int:
    """Replace onnx2torch's (Un)squeeze with axes as an input (opset 13+) by torch.(un)squeeze with the
    stored axes. It sorts the axes tensor and reads each with .item() at run time, which torch.export
    turns into data-dependent sizes (PT2E quantization of a ResNet50 export stops there); the folded
    graph computes the same."""
    import torch
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes

    folded = 0
    for node, module in _module_calls(gm, (OnnxSqueezeDynamicAxes, OnnxUnsqueezeDynamicAxes), n_args=2):
        axes = _constant_of(gm, node.args[1])
        if axes is None or axes.numel() == 0:
            continue
        axes = [int(a) for a in axes.reshape(-1).tolist()]
        with gm.graph.inserting_after(node):
            if isinstance(module, OnnxSqueezeDynamicAxes):
                new = gm.graph.call_function(torch.squeeze, (node.args[0], tuple(axes)))
            else:  # ONNX Unsqueeze inserts at the listed output positions, in ascending order
                new = node.args[0]
                for a in sorted(axes):
                    new = gm.graph.call_function(torch.unsqueeze, (new, a))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        folded += 1
    return _recompiled(gm, folded)


def _expand(x, shape):
    """ONNX Expand (two-way broadcast, as onnx2torch computes it) to a shape tensor read as Python ints."""
    import torch

    return x * torch.ones([int(d) for d in shape.tolist()], dtype=x.dtype, device=x.device)


def _reshape(x, shape):
    """ONNX Reshape to a shape tensor read as Python ints (0 copies the input's dimension)."""
    import torch

    dims = [int(d) for d in shape.tolist()]
    return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(dims)])


def read_runtime_shapes(gm) -> int:
    """Replace onnx2torch's Expand and Reshape left after fold_constant_reshapes (shapes computed at run
    time, from a Shape node on a dynamic batch, or holding 0) by the same operation reading the shape with
    .tolist(). onnx2torch passes the shape tensor to torch.Size, which TorchDynamo fails on
    (InternalTorchDynamoError); .tolist() is a graph break it handles."""
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.reshape import OnnxReshape

    replaced = 0
    for node, module in _module_calls(gm, (OnnxExpand, OnnxReshape), n_args=2):
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(_expand if isinstance(module, OnnxExpand) else _reshape, tuple(node.args))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        replaced += 1
    return _recompiled(gm, replaced)


def native_hardsigmoids(gm) -> int:
    """Replace onnx2torch's HardSigmoid (clip(x * alpha + beta, 0, 1) in three ops) by torch's own
    nn.Hardsigmoid where the attributes are its (alpha 1/6, beta 1/2, as MobileNetV3 uses): one operator,
    as a torch user's module has it. PT2E's X86InductorQuantizer otherwise finds the decomposed add
    beside a residual add in one source partition and stops ("Input partition has more than one output
    node"). The same function up to float rounding."""
    import torch
    from onnx2torch.node_converters.activations import OnnxHardSigmoid

    replaced = 0
    for name, module in list(gm.named_modules()):
        if isinstance(module, OnnxHardSigmoid) and abs(module.alpha - 1 / 6) < 1e-6 and module.beta == 0.5:
            parent, _, leaf = name.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, leaf, torch.nn.Hardsigmoid())
            replaced += 1
    return replaced

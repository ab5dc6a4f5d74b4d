"""Fusions an expert exporter applies to a tf2onnx graph, written as onnxscript rewrite rules.

tf2onnx leaves Keras' hard-sigmoid and hard-swish decomposed (Add 3, Clip 0..6, Mul 1/6, Mul x) and the
BatchNorm after a bias-free convolution (every depthwise one) as a per-channel Mul and Add. Engines
pay for both: ONNX Runtime reorders layouts around every decomposed activation, and a standalone Mul is
one more pass over the activation tensor. ONNX has had `HardSigmoid` since opset 6 and `HardSwish` since
opset 14, and a per-channel affine after a convolution folds into its weights and bias exactly.

onnxscript ships the HardSwish fusions for the `Div(_, 6)` spelling only; tf2onnx (through TF's grappler)
writes `Mul(_, 1/6)`, so one rule here matches that spelling and onnxscript's own rule then turns
`HardSigmoid(x) * x` into `HardSwish(x)`.
"""

from __future__ import annotations

import numpy as np

HARD_SIGMOID_ALPHA = 1 / 6
HARD_SIGMOID_BETA = 0.5


def _rules():
    from onnxscript.rewriter import pattern
    from onnxscript.rewriter._basics import MatchResult
    from onnxscript.rewriter._ir_utils import get_numpy_value, is_singleton_value
    from onnxscript.rewriter.rules.common import fuse_hardswish_rules, fuse_pad_into_conv_rule

    class HardSigmoidFromReciprocal(pattern.RewriteRuleClassBase):
        """Mul(Clip(Add(x, 3), 0, 6), 1/6) -> HardSigmoid<alpha=1/6, beta=0.5>(x)."""

        def pattern(self, op, x, bias, clip_min, clip_max, scale):
            return op.Clip(x + bias, clip_min, clip_max) * scale

        def check(self, op, x, bias, clip_min, clip_max, scale) -> MatchResult:
            result = MatchResult()
            for value, expected, what in ((bias, 3.0, "Add 3"), (clip_min, 0.0, "Clip min 0"),
                                          (clip_max, 6.0, "Clip max 6"), (scale, 1 / 6, "Mul 1/6")):
                if not is_singleton_value(value, expected, rtol=1e-4):
                    return result.fail(f"not hard-sigmoid: needs {what}")
            return result

        def rewrite(self, op, x, bias, clip_min, clip_max, scale):
            return op.HardSigmoid(x, alpha=HARD_SIGMOID_ALPHA, beta=HARD_SIGMOID_BETA)

    class _ConvChannelAffine(pattern.RewriteRuleClassBase):
        """Conv(x, w[, b]) * s + t -> Conv(x, w * s, b * s + t) for s, t constant per output channel."""

        def _channel_vector(self, value, channels: int):
            v = get_numpy_value(value)
            if v is None:
                return None
            if v.size == 1:
                return np.full(channels, v.reshape(()), dtype=v.dtype)
            # broadcast against [N, C, ...spatial]: C sits third from the right for 2-D convolutions
            if v.size == channels and v.ndim >= 3 and v.shape[-3] == channels:
                return v.reshape(channels)
            return None

        def check(self, op, x, w, scale, offset, conv_out, b=None) -> MatchResult:
            result = MatchResult()
            weights = get_numpy_value(w)
            if weights is None or weights.ndim != 4:
                return result.fail("Conv weights are not a constant 4-D tensor")
            if b is not None and get_numpy_value(b) is None:
                return result.fail("Conv bias is not constant")
            m = weights.shape[0]
            if self._channel_vector(scale, m) is None or self._channel_vector(offset, m) is None:
                return result.fail("Mul/Add operands are not constant per output channel")
            return result

        def _fused(self, op, x, w, scale, offset, conv_out, b=None):
            weights = get_numpy_value(w)
            m = weights.shape[0]
            s, t = self._channel_vector(scale, m), self._channel_vector(offset, m)
            bias = np.zeros(m, weights.dtype) if b is None else get_numpy_value(b).reshape(m)
            import onnx_ir as ir

            new_w = op.initializer(ir.tensor((weights * s.reshape(m, 1, 1, 1)).astype(weights.dtype)),
                                   w.name + "_affine")
            new_b = op.initializer(ir.tensor((bias * s + t).astype(weights.dtype)), (w.name or "conv") + "_affine_bias")
            return op.Conv(x, new_w, new_b, **conv_out.producer().attributes)

    class ConvChannelAffine(_ConvChannelAffine):
        def pattern(self, op, x, w, scale, offset):
            return op.Conv(x, w, _allow_other_attributes=True, _outputs=["conv_out"]) * scale + offset

        def rewrite(self, op, x, w, scale, offset, conv_out):
            return self._fused(op, x, w, scale, offset, conv_out)

    class ConvBiasChannelAffine(_ConvChannelAffine):
        def pattern(self, op, x, w, b, scale, offset):
            return op.Conv(x, w, b, _allow_other_attributes=True, _outputs=["conv_out"]) * scale + offset

        def rewrite(self, op, x, w, b, scale, offset, conv_out):
            return self._fused(op, x, w, scale, offset, conv_out, b)

    activations = pattern.RewriteRuleSet([HardSigmoidFromReciprocal().rule(), *fuse_hardswish_rules().rules],
                                         commute=True)
    affine = pattern.RewriteRuleSet([ConvChannelAffine().rule(), ConvBiasChannelAffine().rule()], commute=True)
    class IdentityReshape(pattern.RewriteRuleClassBase):
        """Reshape(x, [-1, C, 1, 1]) of an x already [N, C, 1, 1] (Keras' Reshape in squeeze-excite blocks
        and before its classifier conv) -> x."""

        def pattern(self, op, x, shape):
            return op.Reshape(x, shape, _allow_other_attributes=True)

        def check(self, op, x, shape) -> MatchResult:
            result = MatchResult()
            target, dims = get_numpy_value(shape), x.shape
            if target is None or dims is None or len(dims) != target.size:
                return result.fail("shapes unknown or ranks differ")
            for i, (d, t) in enumerate(zip(dims, target.tolist())):
                if t == -1 and i == 0:
                    continue
                if not isinstance(d, int) or t not in (d, 0):
                    return result.fail(f"dim {i} changes")
            if any(not isinstance(d, int) for d in list(dims)[1:]):
                return result.fail("a non-batch dim is symbolic")
            return result

        def rewrite(self, op, x, shape):
            return op.Identity(x)

    reshapes = pattern.RewriteRuleSet([IdentityReshape().rule()])
    return {"hard-swish/hard-sigmoid as HardSwish/HardSigmoid": activations,
            "identity Reshapes removed": reshapes,
            "zero Pad fused into the convolution it feeds": pattern.RewriteRuleSet([fuse_pad_into_conv_rule]),
            "per-channel affine after a convolution folded into it": affine}


def fuse_exported_graph(proto):
    """(fused ModelProto, passes that changed the graph, each with its count of rewrites). Constants are
    folded first (shape inference included) and again after the fusions, and every constant ends as an
    initializer."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    import onnxscript.optimizer

    model = ir.from_proto(proto)
    onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True)
    applied = []
    for name, rules in _rules().items():
        count = rules.apply_to_model(model)
        if count:
            applied.append(f"{name} ({count})")
    onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True)
    ir.passes.Sequential(common_passes.IdentityEliminationPass(), common_passes.RemoveUnusedNodesPass(),
                         common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0))(model)
    return ir.to_proto(model), applied

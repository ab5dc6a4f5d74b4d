"""What the float32 precisions promise on a GPU, in one place for every engine.

`fp32` = IEEE float32 in every matmul and convolution: TF32 tensor-core math is off, although TensorRT
(BuilderFlag.TF32), ONNX Runtime's CUDA EP (use_tf32), TensorFlow (tensor_float_32_execution) and torch's
cuDNN convolutions turn it on by default on Ampere and newer. `tf32` = float32 storage with TF32 math
where the library offers it: a precision of its own, never what `fp32` measures. Reduced precisions keep
TF32 off for the float32 parts they leave. Each engine applies this with its own switches and records
the effective settings, read back from the library, as info["math_mode"] (run.json).

cuDNN convolution algorithms are chosen the same way on every engine: exhaustive benchmarking at the
first call of a shape (torch cudnn.benchmark=True, ONNX Runtime cudnn_conv_algo_search=EXHAUSTIVE,
TensorFlow's default autotuning; TensorRT times its own tactics at build), recorded as
info["cudnn_algo_search"].
"""

from __future__ import annotations

FLOAT32_PRECISIONS = ("fp32", "tf32")
CUDNN_ALGO_SEARCH = "exhaustive"


def tf32_allowed(precision: str) -> bool:
    """TF32 tensor-core math is allowed only where the user asked for tf32."""
    return precision == "tf32"


def float32_artifact(precision: str) -> bool:
    """fp32 and tf32 run the same float32 model; only the math mode differs."""
    return precision in FLOAT32_PRECISIONS

#!/usr/bin/env python3
"""TensorRT FP32 and FP16 engines built from the model's ONNX export (needs a CUDA GPU and tensorrt)."""

import sys

from _common import run_engines

if __name__ == "__main__":
    sys.exit(run_engines("tensorrt", __doc__))

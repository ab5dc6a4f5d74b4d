#!/usr/bin/env python3
"""ONNX Runtime (CPU execution provider on the CPU; CUDA on a GPU) and OpenVINO on the model's ONNX export."""

import sys

from _common import run_engines

if __name__ == "__main__":
    sys.exit(run_engines("onnxruntime,openvino", __doc__))

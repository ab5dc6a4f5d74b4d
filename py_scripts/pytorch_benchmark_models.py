#!/usr/bin/env python3
"""PyTorch eager, TorchScript and torch.compile, from the model's ONNX export (or its torch source)."""

import sys

from _common import run_engines

if __name__ == "__main__":
    sys.exit(run_engines("torch,torchscript,torch-compile", __doc__))

#!/usr/bin/env python3
"""Build the model's artifacts once (Keras file, SavedModel, ONNX, reference outputs) into the cache."""

import argparse
import sys

if __name__ == "__main__":
    from infermeter.cli import main

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gpu-id", type=int, default=None, help="accepted for symmetry; artifacts are built on the CPU")
    p.add_argument("--model", default="mobilenet_v3_large")
    args, rest = p.parse_known_args()
    sys.exit(main(["prepare", args.model, *rest]))

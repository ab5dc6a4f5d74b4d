"""Shared by the per-framework scripts: each is `infermeter run` with its engines fixed."""

from __future__ import annotations

import argparse
import sys


def run_engines(engines: str, description: str, argv: list[str] | None = None, extra_flags=None) -> int:
    from infermeter.cli import main

    p = argparse.ArgumentParser(description=description + " Any other `infermeter run` flag is passed through.")
    p.add_argument("--gpu-id", type=int, default=None, help="physical GPU index as nvidia-smi shows it; omit for the CPU")
    p.add_argument("--model", default="mobilenet_v3_large")
    if extra_flags:
        extra_flags(p)
    args, rest = p.parse_known_args(argv)
    chosen = engines(args) if callable(engines) else engines
    cmd = ["run", args.model, "--engines", chosen]
    cmd += ["--gpu-id", str(args.gpu_id)] if args.gpu_id is not None else ["--device", "cpu"]
    return main(cmd + rest)


if __name__ == "__main__":
    sys.exit("run one of the *_benchmark_*.py scripts")

"""A GPU install gets onnxruntime-gpu and never the CPU `onnxruntime` (with both installed, ONNX Runtime
offers only its CPU providers and every ORT GPU cell would be skipped).

Two checks: the extras as declared (instant: the closure of pyproject's extras, self-references followed),
and pip's own full resolution of `infermeter[gpu]` against the package index (`pip install --dry-run
--report`, about half a minute; skipped only when the index cannot be reached). The `tensorrt` extra is
checked as declared only: its `tensorrt-cu13-libs` is an sdist that downloads from pypi.nvidia.com while
pip generates its metadata, which a dry run cannot do offline-safe or quickly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, what the Makefile sets up
ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def closure(extra: str) -> set[str]:
    """Distribution names an extra pulls directly, following infermeter[...] self-references."""
    names: set[str] = set()
    for text in EXTRAS[extra]:
        req = Requirement(text)
        if req.name == "infermeter":
            for sub in req.extras:
                names |= closure(sub)
        else:
            names.add(req.name.lower())
    return names


@pytest.mark.parametrize("extra", ["gpu", "tensorrt"])
def test_gpu_extras_declare_onnxruntime_gpu_only(extra):
    names = closure(extra)
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names


def test_cpu_extra_declares_cpu_onnxruntime_only():
    names = closure("cpu")
    assert "onnxruntime" in names and "onnxruntime-gpu" not in names


@pytest.mark.slow
def test_pip_resolves_the_gpu_extra_without_cpu_onnxruntime(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), f"{ROOT}[gpu]"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        text = proc.stderr + proc.stdout
        if any(m in text for m in ("Failed to establish a new connection", "Temporary failure in name resolution",
                                   "No matching distribution found for setuptools", "Network is unreachable")):
            pytest.skip(f"the package index cannot be reached: {text.strip().splitlines()[-1]}")
        pytest.fail(f"pip could not resolve infermeter[gpu]: {text[-2000:]}")
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert "onnxruntime-gpu" in installed and "torch" in installed
    assert "onnxruntime" not in installed, f"infermeter[gpu] pulls onnxruntime {installed.get('onnxruntime')}"

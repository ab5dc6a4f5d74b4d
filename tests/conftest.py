"""Shared fixtures: result folders from real small sweeps, built once per test session."""

from __future__ import annotations

import pytest

from infermeter.config import RunConfig

DEVICES = ("cpu-a", "cpu-b")


@pytest.fixture(scope="session")
def two_result_dirs(tmp_path_factory):
    """Two real ONNX Runtime sweeps on this CPU (2 threads and 1), labelled as two devices."""
    from infermeter.sweep import run_sweep

    base = tmp_path_factory.mktemp("two-devices")
    roots = []
    for label, threads in zip(DEVICES, (2, 1), strict=True):
        root = base / label
        status, _ = run_sweep(RunConfig(
            model="mobilenet_v3_large", engines=["onnxruntime"], batch_sizes=[1, 2], input_shapes=[[[1, 64, 64, 3]]],
            iterations=20, warmup=2, results_dir=str(root), cache_dir=str(base / "cache"), device="cpu",
            device_label=label, num_threads=threads, quiet=True, idle_time_s=0))
        assert status == 0, f"sweep for {label} exited {status}"
        roots.append(root)
    return roots

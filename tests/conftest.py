"""Shared fixtures: result folders from real small sweeps, built once per test session."""

from __future__ import annotations

import pytest

from infermeter.config import RunConfig

DEVICES = ("cpu-a", "cpu-b")


# ---- skips, decided in one place --------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "engines(*names): needs these engines installed here (skipped, with the "
                                       "engine's own reason, where one is not)")


def pytest_runtest_setup(item):
    """`gpu`: skipped without an NVIDIA GPU (NVML), saying why; `engines(...)`: skipped where an engine is not
    available here, with the reason the engine gives (the same one a sweep's skipped row carries)."""
    if item.get_closest_marker("gpu"):
        from infermeter.device import nvml_gpus

        names, why = nvml_gpus()
        if not names:
            pytest.skip(f"no NVIDIA GPU: {why or 'none found'}")
    for marker in item.iter_markers("engines"):
        from infermeter.engines import get_engine

        for name in marker.args:
            ok, why = get_engine(name).available()
            if not ok:
                pytest.skip(f"{name}: {why}")


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

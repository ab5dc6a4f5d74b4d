"""The per-framework scripts users run with --gpu-id: thin, no prompts, working end to end."""

import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.results.writer import read_results

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["create_tf_and_keras_models.py", "benchmark_tf_keras_normal_xla_models.py", "onnx_benchmark_models.py",
           "pytorch_benchmark_models.py", "trt_benchmark_models.py"]


def script(name, *args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "py_scripts" / name), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_documents_gpu_id(name):
    res = script(name, "--help", timeout=60)
    assert res.returncode == 0 and "--gpu-id" in res.stdout


def test_onnx_script_runs_on_the_cpu(tmp_path):
    res = script("onnx_benchmark_models.py", "--model", str(ROOT / "models" / "example_mlp"), "--batch-sizes", "1,4",
                 "--iterations", "5", "--warmup", "1", "--idle-time-s", "0", "--quiet",
                 "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr[-1500:]
    rows = read_results(next((tmp_path / "r").glob("*/*/results.csv")))
    from infermeter.engines import load_all
    from infermeter.models.base import ModelOptions
    from infermeter.models.registry import resolve_model

    engines, model = load_all(), resolve_model(str(ROOT / "models" / "example_mlp"), ModelOptions())
    assert {r["engine"] for r in rows} == {"onnxruntime", "openvino"}
    for r in rows:  # each precision the engine declares: run where this CPU has it, skipped with why where not
        cls = engines[r["engine"]]
        expected = "ok" if cls.available()[0] and cls.supports(model, r["precision"], "cpu")[0] else "skipped"
        assert r["status"] == expected, (r["engine"], r["precision"], r["error"])
        assert expected == "ok" or r["error"]
    assert {r["engine"] for r in rows if r["status"] == "ok"} == {"onnxruntime", "openvino"}


def test_create_models_script_builds_every_artifact(tmp_path):
    res = script("create_tf_and_keras_models.py", "--input-shapes", "[1,48,48,3]", "--cache-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr[-1500:]
    folder = Path(res.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    for name in ("model.keras", "savedmodel", "model.onnx", "reference.npz"):
        assert (folder / name).exists() and (folder / f"{name}.sha256").exists(), name


def test_gpu_id_without_a_gpu_is_one_clear_line():
    from infermeter.device import nvml_gpus

    if nvml_gpus()[0]:
        pytest.skip("this machine has a GPU")
    res = script("pytorch_benchmark_models.py", "--gpu-id", "0", timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "no GPU here" in res.stderr

"""Bad input gets one clear line on stderr and exit status 2, before anything runs."""

import subprocess
import sys

import pytest


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("args,needles", [
    (["--engines", "tensorflowz"], ["unknown engine 'tensorflowz'"]),
    (["--batch-sizes", "1,,8"], ["--batch-sizes"]),
    (["--batch-sizes", "0,8"], ["0 is not positive"]),
    (["--batch-sizes", "one"], ["'one' is not a positive integer"]),
    (["--batch-sizes", "8,8"], ["listed twice"]),
    (["--streams", "-2"], ["--streams"]),
    (["--scenario", "burst"], ["unknown 'burst'"]),
    (["--scenario", "server"], ["--target-qps"]),
    (["--precisions", "fp13"], ["unknown 'fp13'"]),
    (["--power-interval-ms", "10"], ["50 ms floor"]),
    (["--input-shapes", "[1,3,0,224]"], ["positive integer"]),
    (["--target-ci", "0"], ["--target-ci"]),
])
def test_malformed_options(args, needles, tmp_path):
    assert_one_line_error(run_cli("run", "--results-dir", str(tmp_path), *args), *needles)


def test_unknown_model(tmp_path):
    assert_one_line_error(run_cli("run", "not_a_model", "--results-dir", str(tmp_path)), "unknown model 'not_a_model'")


def test_missing_model_file(tmp_path):
    res = run_cli("run", str(tmp_path / "missing.onnx"), "--results-dir", str(tmp_path))
    assert_one_line_error(res, "missing.onnx")


def test_gpu_id_that_does_not_exist(tmp_path):
    from infermeter.device import nvml_gpus

    n = len(nvml_gpus()[0])
    res = run_cli("run", "--gpu-id", str(n + 3), "--results-dir", str(tmp_path))
    assert_one_line_error(res, f"--gpu-id {n + 3}" if n else "no GPU here")


def test_broken_config_files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("engines: [onnxruntime\nbatch_sizes: 1\n")
    assert_one_line_error(run_cli("run", "--config", str(bad_yaml)), "not valid YAML")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("engines: [onnxruntime]\nbatch_size: [1]\n")
    assert_one_line_error(run_cli("run", "--config", str(unknown)), "unknown field(s) batch_size")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("batch_sizes: [0, 4]\n")
    assert_one_line_error(run_cli("run", "--config", str(wrong)), "--batch-sizes")
    assert_one_line_error(run_cli("run", "--config", str(tmp_path / "absent.yaml")), "absent.yaml")


def test_results_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run_cli("run", "--engines", "onnxruntime", "--results-dir", str(blocker / "sub"), "--device", "cpu")
    assert_one_line_error(res, "cannot be written")


def test_unknown_subcommand():
    assert_one_line_error(run_cli("frobnicate"), "invalid choice")

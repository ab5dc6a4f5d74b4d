"""`--gpu-id 0,2` / `--gpu-id all`: expansion on a scripted NVML device list, one clear line without a GPU,
and the `parallel_gpus` record in run.json and every row from real sweeps run side by side."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from infermeter import cli, device
from infermeter.config import RunConfig
from infermeter.errors import BadInput
from infermeter.multi_gpu import per_gpu_configs, run_configs
from infermeter.parsing import gpu_id_spec
from infermeter.results.writer import read_results


def scripted_pynvml(names: list[str]) -> types.ModuleType:
    """A pynvml module whose device list is `names`, by physical index."""
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: len(names)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: names[h].encode()  # older bindings return bytes
    m.nvmlDeviceGetUUID = lambda h: f"GPU-scripted-{h}"
    return m


@pytest.fixture
def gpus(monkeypatch):
    def use(names):
        monkeypatch.setitem(sys.modules, "pynvml", scripted_pynvml(names))
        device.nvml_gpus.cache_clear()
    yield use
    device.nvml_gpus.cache_clear()


@pytest.mark.parametrize("text, value", [("0", 0), (" 3 ", 3), ("0,2", [0, 2]), ("ALL", "all"), (1, 1),
                                         ([2, 0], [2, 0]), ([1], 1)])
def test_gpu_id_forms(text, value):
    assert gpu_id_spec(text) == value
    assert RunConfig(gpu_id=text).gpu_id == value


@pytest.mark.parametrize("text, words", [("-1", "comma list"), ("0,0", "listed twice"), ("0,", "comma list"),
                                         ("gpu0", "comma list"), (True, "expected an index"), (-2, "negative")])
def test_bad_gpu_ids(text, words):
    with pytest.raises(BadInput, match=words):
        RunConfig(gpu_id=text)


def test_all_and_lists_expand_on_the_scripted_machine(gpus):
    names = ["NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA L4"]
    gpus(names)
    every = per_gpu_configs(RunConfig(gpu_id="all", parallel_gpus=True))
    assert [c.gpu_id for c in every] == list(range(len(names)))
    assert all(c.device == "cuda" and c.parallel_gpus for c in every)
    labels = [c.device_label for c in every]
    assert len(set(labels)) == len(names)  # two L4s: each its own folder
    assert all(lbl.startswith(n) and lbl.endswith(f"gpu{i}") for i, (lbl, n) in enumerate(zip(labels, names)))

    distinct = per_gpu_configs(RunConfig(gpu_id="0,1"))
    assert [c.gpu_id for c in distinct] == [0, 1]
    assert [c.device_label for c in distinct] == [None, None]  # distinct names: folders named as one-GPU runs
    assert not any(c.parallel_gpus for c in distinct)  # sequential by default

    labelled = per_gpu_configs(RunConfig(gpu_id=[2, 0], device_label="box", json_path="out/rows.json"))
    assert [(c.gpu_id, c.device_label, c.json_path) for c in labelled] == [
        (2, "box-gpu2", "out/rows-gpu2.json"), (0, "box-gpu0", "out/rows-gpu0.json")]

    one = per_gpu_configs(RunConfig(gpu_id=1, parallel_gpus=True))
    assert [(c.gpu_id, c.parallel_gpus) for c in one] == [(1, False)]  # one GPU is never "parallel"

    with pytest.raises(BadInput, match=f"no such GPU; this machine has {len(names)}"):
        per_gpu_configs(RunConfig(gpu_id=[0, len(names)]))
    with pytest.raises(BadInput, match="--device cpu"):
        per_gpu_configs(RunConfig(gpu_id="all", device="cpu"))


def test_all_means_the_visible_gpus_where_cuda_visible_devices_is_set(gpus, monkeypatch):
    names = ["NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA H100 80GB HBM3"]
    gpus(names)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    every = per_gpu_configs(RunConfig(gpu_id="all"))
    assert [c.gpu_id for c in every] == [0, 1]  # --gpu-id indexes within the visible list
    with pytest.raises(BadInput, match="this machine has 2"):
        per_gpu_configs(RunConfig(gpu_id="0,2"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(BadInput, match="set but empty"):
        per_gpu_configs(RunConfig(gpu_id="all"))


def test_no_gpu_is_named_with_its_reason(gpus):
    gpus([])
    with pytest.raises(BadInput, match="--gpu-id all: no GPU here"):
        per_gpu_configs(RunConfig(gpu_id="all"))


@pytest.mark.parametrize("spec", ["0", "0,2", "all"])
def test_gpu_id_on_this_machine_without_a_gpu_is_one_line(spec, tmp_path, capsys):
    device.nvml_gpus.cache_clear()
    if device.nvml_gpus()[0]:
        pytest.skip("this machine has a GPU")
    status = cli.main(["run", "mobilenet_v3_large", "--gpu-id", spec, "--results-dir", str(tmp_path / "r"),
                       "--cache-dir", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "no GPU here" in err[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("results.csv"))


def tiny_onnx(path: Path) -> Path:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("parallel", [False, True])
def test_sweeps_side_by_side_record_it(tmp_path, parallel):
    """The runner behind --gpu-id lists, on two CPU 'devices' (no GPU here): each sweep its own folder, and
    `parallel_gpus` in run.json and every row says whether the sweeps ran at once."""
    base = RunConfig(model=str(tiny_onnx(tmp_path / "tiny.onnx")), engines=["onnxruntime"], batch_sizes=[1, 2],
                     device="cpu", iterations=5, warmup=1, min_iterations=1, idle_time_s=0, quiet=True,
                     results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"))
    configs = [replace(base, device_label=f"dev-{i}", parallel_gpus=parallel) for i in range(2)]
    outcomes = run_configs(configs)
    assert [Path(o.out_dir).name for o in outcomes] == ["dev-0", "dev-1"]
    for o in outcomes:
        assert o.status == 0 and len(o.rows) == 2
        rows = read_results(Path(o.out_dir) / "results.csv")
        assert [r["parallel_gpus"] for r in rows] == [str(parallel).lower()] * 2
        assert json.loads((Path(o.out_dir) / "run.json").read_text())["parallel_gpus"] is parallel

"""End to end through the sweep, as a user runs it: every CPU engine, every model path, every
scenario, several input sizes, and the gate catching a wrong engine inside a real sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infermeter.config import RunConfig
from infermeter.engines import load_all
from infermeter.results.writer import read_results
from infermeter.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def sweep(tmp_path, **kw):
    cfg = dict(device="cpu", iterations=6, warmup=1, min_iterations=1, idle_time_s=0, quiet=True,
               results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"))
    cfg.update(kw)
    status, s = run_sweep(RunConfig(**cfg))
    rows = read_results(s.out_dir / "results.csv")
    return status, s, rows


def test_every_cpu_engine_end_to_end_on_mobilenet(tmp_path):
    status, s, rows = sweep(tmp_path, model="mobilenet_v3_large", engines=["all"], batch_sizes=[1, 2],
                            input_shapes=[[[1, 64, 64, 3]]])
    by_engine: dict[str, list[dict]] = {}
    for r in rows:
        by_engine.setdefault(r["engine"], []).append(r)
    registered = load_all()
    assert set(by_engine) == set(registered)  # every engine has its rows: measured or skipped with a reason
    model = s.models[0]
    for name, cls in registered.items():
        for r in by_engine[name]:
            # what this machine can run is what the engine reports for it (installed, device, CPU
            # capabilities such as FP16), never what the machine the test was written on could
            runnable = cls.available()[0] and cls.supports(model, r["precision"], "cpu")[0]
            if runnable:
                assert r["status"] == "ok" and r["check_status"] == "pass", (name, r["error"])
                assert float(r["throughput_items_s"]) > 0 and float(r["latency_ms_p99"]) >= float(r["latency_ms_p50"])
                assert r["energy_j"] is None and r["energy_source"].startswith("unavailable: ")
                assert float(r["host_rss_peak_mb"]) > 0 and r["cpu_util_avg_pct"] is not None
                lat = (s.out_dir / "latency" / f"{r['cell_id']}.csv").read_text().splitlines()
                assert len(lat) - 1 == int(r["iterations"])
            else:
                assert r["status"] == "skipped" and r["error"], name
    assert status == 0
    assert (s.out_dir / "run.json").exists()


def test_the_gate_catches_a_wrong_engine_inside_a_sweep(tmp_path):
    """Tracing bakes in the branch a data-dependent `if` took on the trace example: TorchScript then
    computes a different function from the eager reference for other inputs."""
    folder = tmp_path / "branchy"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "name: branchy\nframework: torch\ntask: classification\n"
        "inputs:\n  - name: x\n    dtype: float32\n    dims_names: [batch, features]\n"
        "    example_shape: [1, 16]\n    runtime_dims: [-1, 16]\noutputs:\n  - name: logits\n")
    (folder / "load.py").write_text(
        "import torch\nfrom torch import nn\nfrom infermeter.models.plugin import register_loader\n\n"
        "class Branchy(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.a = nn.Linear(16, 8)\n        self.b = nn.Linear(16, 8)\n\n"
        "    def forward(self, x):  # per-row, data-dependent control flow: tracing freezes the branches\n"
        "        return torch.stack([self.a(r) if float(r[0]) > 0 else self.b(r) for r in x])\n\n"
        "@register_loader\ndef load(config):\n    return Branchy()\n")
    status, s, rows = sweep(tmp_path, model=str(folder), engines=["torch", "torchscript"], batch_sizes=[1])
    by = {r["engine"]: r for r in rows}
    assert by["torch"]["status"] == "ok" and by["torch"]["check_status"] == "pass"
    bad = by["torchscript"]
    assert bad["status"] == "mismatch" and bad["check_status"] == "mismatch"
    assert float(bad["throughput_items_s"]) > 0  # still timed, marked
    assert float(bad["rel_err"]) > 1e-3
    assert status == 1


def test_uninformative_reference_stops_the_run(tmp_path):
    """A random conv net ending in global pooling predicts one class for all inputs: with --check strict the
    run is refused (the default, warn, times it unchecked; tests/test_wild_onnx.py covers that)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    path = tmp_path / "flat.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    res = subprocess.run([sys.executable, "-m", "infermeter", "run", str(path), "--engines", "onnxruntime",
                          "--device", "cpu", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
                          "--check", "strict", "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "a comparison would prove nothing" in res.stderr.strip().splitlines()[-1]


def test_onnx_file_with_every_onnx_engine_and_input_shape_experiments(tmp_path):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(1),
                              torch.nn.LazyLinear(10)).eval()
    net(torch.zeros(1, 3, 16, 16))
    path = tmp_path / "fixed_size.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    status, s, rows = sweep(tmp_path, model=str(path), engines=["onnxruntime", "openvino", "torch", "tensorrt"],
                            precisions=["fp32"], batch_sizes=[1, 4], input_shapes=[[[1, 3, 16, 16]]])
    assert status == 0
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["engine"] for r in ok} == {"onnxruntime", "openvino", "torch"}
    assert all(r["check_status"] == "pass" for r in ok)
    assert {r["status"] for r in rows if r["engine"] == "tensorrt"} == {"skipped"}


def test_input_size_experiments_are_separate_cells(tmp_path):
    status, s, rows = sweep(tmp_path, model="mobilenet_v3_large", engines=["onnxruntime"], batch_sizes=[1],
                            input_shapes=[[[1, 48, 48, 3]], [[1, 64, 64, 3]]])
    assert status == 0
    assert sorted(r["input_shape"] for r in rows) == ["48x48x3", "64x64x3"]
    assert len({r["cell_id"] for r in rows}) == 2


def test_tiny_bert_through_the_sweep(tmp_path):
    status, s, rows = sweep(tmp_path, model="bert_base_sentiment", engines=["torch", "onnxruntime", "openvino"],
                            precisions=["fp32"], batch_sizes=[1, 4], seq_len=32,
                            model_extra={"layers": 2, "hidden": 64, "heads": 2, "intermediate": 128})
    assert status == 0, [r["error"] for r in rows]
    assert len(rows) == 6 and all(r["status"] == "ok" and r["check_status"] == "pass" for r in rows)


@pytest.mark.parametrize("scenario,extra", [
    ("single-stream", {}),
    ("multi-stream", {"streams": [1, 2]}),
    ("server", {"target_qps": [40.0], "streams": [2], "latency_bound_ms": 1000.0, "time_s": 2.0, "iterations": None}),
])
def test_scenarios_through_the_sweep(tmp_path, scenario, extra):
    model = ROOT / "models" / "example_mlp"
    status, s, rows = sweep(tmp_path, model=str(model), engines=["onnxruntime", "openvino"], precisions=["fp32"],
                            batch_sizes=[1], scenarios=[scenario], **extra)
    assert status == 0, [r["error"] for r in rows]
    assert all(r["scenario"] == scenario and r["status"] == "ok" for r in rows)
    if scenario == "multi-stream":
        assert sorted({int(r["streams"]) for r in rows}) == [1, 2]
    if scenario == "server":
        for r in rows:
            assert abs(float(r["achieved_qps"]) - 40.0) / 40.0 < 0.25
            assert r["latency_bound_met"] in ("true", "false")
            lat = np.loadtxt(s.out_dir / "latency" / f"{r['cell_id']}.csv", delimiter=",", skiprows=1, usecols=2)
            assert np.isclose(np.percentile(lat, 99), float(r["latency_ms_p99"]), rtol=1e-6)


def test_a_server_cell_at_an_unreachable_rate_says_what_it_dropped(tmp_path):
    """Every measurement reaches results.csv: an arrival rate no CPU can serve shows its dropped requests,
    the rate really offered and why measuring stopped, beside the telemetry the monitor computed."""
    # a few hundred MFLOP per request: whatever the CPU, 20,000 arrivals in one second leave a queue that the
    # drain period after the window cannot serve, so requests are dropped on any machine
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        w = numpy_helper.from_array(rng.normal(0, 0.1, (16, 16, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("ReduceMean", [prev], ["y"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "heavy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16, 128, 128])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16])], inits)
    model = tmp_path / "heavy.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    status, s, rows = sweep(tmp_path, model=str(model), engines=["onnxruntime"], precisions=["fp32"], batch_sizes=[1],
                            scenarios=["server"], target_qps=[20000.0], streams=[1], latency_bound_ms=1000.0,
                            time_s=1.0, iterations=None, input_shapes=[[[1, 16, 128, 128]]])
    (r,) = rows
    assert r["status"] == "ok", r["error"]
    served = int(r["iterations"])
    assert int(r["dropped"]) > 0 and float(r["achieved_qps"]) < 20000.0
    assert float(r["offered_qps"]) > float(r["achieved_qps"])  # more was issued than could be served
    assert int(r["late_dispatches"]) >= 0 and r["stop_reason"] == "time"
    assert r["latency_bound_met"] == "false"  # dropped requests fail the bound whatever the p99
    assert served == len((s.out_dir / "latency" / f"{r['cell_id']}.csv").read_text().splitlines()) - 1
    assert float(r["proc_cpu_util_avg_pct"]) > 0
    assert r["driver"] is None and r["device"] == "cpu"  # no device driver on a CPU run


@pytest.mark.gpu
def test_torch_on_cuda_sweep_with_energy(tmp_path):
    """The whole GPU path through the sweep: --gpu-id, CUDA synchronisation, the H2D/compute/D2H split,
    NVML energy (with the energy pass for a short window), idle baseline, memory peaks."""
    model = ROOT / "models" / "example_mlp"
    status, s, rows = sweep(tmp_path, model=str(model), engines=["torch"], device="cuda", gpu_id=0,
                            precisions=["fp32", "fp16"], batch_sizes=[1, 64], iterations=None, time_s=1.0,
                            idle_time_s=1.0, energy_time_s=5.0)
    assert status == 0, [r["error"] for r in rows]
    for r in rows:
        assert r["status"] == "ok" and r["device"] == "cuda" and r["gpu_id"] == "0"
        assert r["energy_source"] in ("nvml-energy-counter", "nvml-power-samples")
        assert float(r["energy_j"]) > 0 and float(r["power_avg_w"]) > 0 and float(r["power_idle_w"]) > 0
        assert float(r["energy_window_s"]) >= 5.0 and r["energy_pass"]  # 1 s cells get a separate pass
        assert float(r["items_per_j"]) > 0
        assert float(r["compute_ms"]) > 0 and float(r["h2d_ms"]) >= 0 and float(r["d2h_ms"]) >= 0
        assert float(r["device_mem_allocator_peak_mb"]) > 0
        trace = (s.out_dir / "power" / f"{r['cell_id']}.csv").read_text().splitlines()
        assert len(trace) > 5
        # the stage split adds up to the timed run within 5%, or says it is a separate synchronised pass
        stages = float(r["h2d_ms"]) + float(r["compute_ms"]) + float(r["d2h_ms"])
        assert float(r["stage_split_vs_e2e_pct"]) == pytest.approx(100 * (stages / float(r["latency_ms_p50"]) - 1))
        assert abs(float(r["stage_split_vs_e2e_pct"])) <= 5 or \
            r["stage_split_method"].startswith("separate synchronised pass"), r
        assert r["gpu_uuid"] and r["gpu_name"] and r["bound"] in ("host", "device", "unknown")
        assert float(r["busiest_thread_cpu_pct"]) > 0
        assert r["energy_net_j"] is not None or r["energy_net_note"]  # a number or why not, never negative
        assert r["energy_net_j"] is None or float(r["energy_net_j"]) >= 0
        if r["energy_source"] == "nvml-energy-counter":
            assert r["energy_trace_vs_counter_pct"] is not None
    telemetry = json.loads((s.out_dir / "run.json").read_text())["groups"]
    assert len(telemetry) == 2  # torch fp32 and fp16: each group keeps its own telemetry facts
    for group in telemetry.values():
        facts = group["telemetry"]
        assert facts["idle"]["rule"] and facts["idle"]["power_idle_w"] > 0 and "settled" in facts["idle"]
        if facts["energy_source"] == "nvml-energy-counter":
            assert facts["energy_counter"]["update_period_ms"] is None or \
                facts["energy_counter"]["min_energy_window_s"] > 0

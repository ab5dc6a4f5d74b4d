"""Each engine gets the model the way its own users would give it, and says which way it took: OpenVINO
reads the clean ONNX graph or converts the SavedModel with its TF frontend, whichever a probe finds faster;
every row names the graph's source and its node count."""

from __future__ import annotations

import json

import pytest

from infermeter.config import RunConfig
from infermeter.engines import get_engine
from infermeter.results.writer import read_results
from infermeter.sweep import run_sweep


def small_sweep(tmp_path, engines: list[str]):
    cfg = RunConfig(model="mobilenet_v3_large", input_shapes=[[[1, 32, 32, 3]]], engines=engines,
                    precisions=["fp32"], batch_sizes=[1, 2], iterations=5, warmup=1,
                    results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"), device="cpu", quiet=True,
                    idle_time_s=0, energy_time_s=0, num_threads=2)
    status, sweep = run_sweep(cfg)
    run = json.loads((sweep.out_dir / "run.json").read_text())
    return status, read_results(sweep.out_dir / "results.csv"), run


def test_openvino_chooses_between_its_onnx_and_tf_frontends_and_records_it(tmp_path):
    pytest.importorskip("tensorflow")
    for ok, why in (get_engine("openvino").available(),):
        if not ok:
            pytest.skip(why)
    status, rows, run = small_sweep(tmp_path, ["openvino"])
    assert status == 0, [r["error"] for r in rows]
    ingestion = run["engines"]["openvino/fp32/32x32x3"]["settings"]["ingestion"]
    assert set(ingestion["items_s"]) == {"onnx", "tf-frontend"} and all(v > 0 for v in ingestion["items_s"].values())
    chosen = ingestion["chosen"]
    assert ingestion["items_s"][chosen] == max(ingestion["items_s"].values())
    assert set(ingestion["graph_form"]) == {"onnx", "tf-frontend"}
    assert ingestion["sources"]["tf-frontend"].endswith("openvino_ir_tf")
    for row in rows:  # each cell passed the check on the chosen graph and names it
        assert row["status"] == "ok" and row["graph_source"] == chosen and int(row["graph_nodes"]) > 0
    assert "savedmodel" in run["artifacts"]["32x32x3"]


def test_onnxruntime_rows_carry_the_clean_graph_form(tmp_path):
    status, rows, run = small_sweep(tmp_path, ["onnxruntime"])
    assert status == 0
    settings = run["engines"]["onnxruntime/fp32/32x32x3"]["settings"]
    form = settings["graph_form"]
    assert form == run["artifacts"]["32x32x3"]["onnx_graph_form"] and form["transposes"] <= 1
    assert all(r["graph_source"] == "onnx" and int(r["graph_nodes"]) == form["nodes"] for r in rows)
    # only the engines that read the SavedModel get one built
    assert "savedmodel" not in run["artifacts"]["32x32x3"]

"""Typed contracts between the sweep and its workers, the results folder, and `infermeter prepare`."""

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.config import RunConfig
from infermeter.plan import Cell
from infermeter.protocol import (
    ArtifactFacts,
    BadInputFound,
    CellRow,
    CellStart,
    DiskFull,
    Done,
    EngineFacts,
    FromDevice,
    GroupFailed,
    Info,
    Planned,
    RunFacts,
    WorkerJob,
)
from infermeter.results.folder import ResultsFolder
from infermeter.results.run_info import DeviceFacts, RunInfo
from infermeter.sweep import Sweep
from infermeter.telemetry.records import TelemetryFacts

EXAMPLE = Path(__file__).resolve().parents[1] / "models" / "example_mlp"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("contracts")
    return Sweep(RunConfig(model=str(EXAMPLE), device="cpu", engines=["onnxruntime"], batch_sizes=[1, 4],
                           scenarios=["offline", "multi-stream"], streams=[1, 2], results_dir=str(root / "results"),
                           cache_dir=str(root / "cache"), idle_time_s=0, quiet=True))


def test_the_job_and_every_message_cross_a_pipe_unchanged_and_frozen(sweep):
    group = sweep.groups[0]
    job = sweep.job("engine", group.model, engine=group.engine, precision=group.precision, cells=tuple(group.cells))
    assert isinstance(job, WorkerJob) and all(isinstance(c, Cell) for c in job.cells)
    assert len(job.cells) == 2 + 2 * 2
    engine = EngineFacts(settings={}, build_s=None, load_s=0.1, shape_mode="dynamic", compile_s={}, check={})
    telemetry = TelemetryFacts(energy_source="unavailable: none", interval_ms=100.0, pid=1, power_idle_w=None,
                               idle=None, energy_counter=None, bound_rule="", gpu={}, rapl={}, notes=[])
    messages = [Info(engine={"k": engine}, telemetry=telemetry), CellStart("c"),
                Info(artifacts=ArtifactFacts(built={"onnx_exporter": "x"}, built_s={"onnx": 1.0})),
                CellRow({"cell_id": "c", "status": "ok"}), GroupFailed("e"), BadInputFound("b"), DiskFull("d"), Done()]
    # the fleet: the same messages, the cell's files with its row, addressed by device
    info = RunInfo(run_id="r", created_at="t", infermeter={}, command="c", device=DeviceFacts("cpu", "CPU", "cpu"),
                   host={}, gpu=None, packages={}, warnings=[], env={}, device_label="cpu")
    messages += [CellRow({"cell_id": "c"}, files={"latency/c.csv": b"request\n"}), Done(files={"logs/w.log": b"x"}),
                 Planned(cells={"c": {"cell_id": "c"}}, node={"host": "h"}), RunFacts(info),
                 FromDevice("cpu", CellRow({"cell_id": "c"}))]
    for obj in [job, *job.cells, *messages]:
        back = pickle.loads(pickle.dumps(obj))
        assert back == obj and type(back) is type(obj)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, dataclasses.fields(obj)[0].name if dataclasses.fields(obj) else "x", None)
    with pytest.raises(ValueError, match="engine job"):
        dataclasses.replace(job, cells=())
    with pytest.raises(ValueError, match="job kind"):
        dataclasses.replace(job, kind="measure")


def test_results_folder_keeps_rows_resumes_and_lists_each_run_once(tmp_path):
    first = ResultsFolder(tmp_path / "dev", "run1")
    assert first.open(resume=True) == set()
    for cell_id, status in (("a", "ok"), ("b", "failed"), ("c", "skipped")):
        first.write_row({"cell_id": cell_id, "status": status})
    first.write_run_json({"run_id": "run1", "command": "one", "engines": {"torch|fp32": {"x": 1}}})
    first.write_run_json({"run_id": "run1", "command": "one",  # rewritten as the run goes on
                          "engines": {"torch|fp32": {"x": 1}, "torch|fp16": {"x": 2}}})
    second = ResultsFolder(tmp_path / "dev", "run2")
    assert second.open(resume=True) == {"a", "c"}  # a failed cell is tried again
    assert second.open(resume=False) == set()
    second.write_run_json({"run_id": "run2", "command": "two", "engines": {"torch|fp16": {"x": 3}}})
    second.write_run_json({"run_id": "run2", "command": "two", "engines": {"torch|fp16": {"x": 3}},
                           "groups": {"torch|fp16": {"ended": "finished"}}})
    doc = json.loads((tmp_path / "dev" / "run.json").read_text())
    assert [p["run_id"] for p in doc["previous_runs"]] == ["run1"]
    # the engine the second run did not measure keeps its facts, each naming the run that measured it
    assert doc["engines"] == {"torch|fp32": {"x": 1, "run_id": "run1"}, "torch|fp16": {"x": 3, "run_id": "run2"}}
    assert doc["groups"] == {"torch|fp16": {"ended": "finished", "run_id": "run2"}}
    third = ResultsFolder(tmp_path / "dev", "run3")  # each engine group's entry survives later runs too
    third.write_run_json({"run_id": "run3", "engines": {}, "groups": {"torch|fp32": {"ended": "timeout"}}})
    doc = json.loads((tmp_path / "dev" / "run.json").read_text())
    assert doc["groups"] == {"torch|fp16": {"ended": "finished", "run_id": "run2"},
                             "torch|fp32": {"ended": "timeout", "run_id": "run3"}}


def _tiny_onnx(path: Path) -> Path:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_prepare_writes_no_results_csv(tmp_path):
    results = tmp_path / "results"
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    res = subprocess.run([sys.executable, "-m", "infermeter", "prepare", str(model), "--results-dir", str(results),
                          "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "tiny" in res.stdout and list((tmp_path / "cache").rglob("reference*"))
    assert list(results.rglob("results.csv")) == [] and list(results.rglob("run.json")) == []


def test_accepted_precisions_are_what_the_engines_declare(monkeypatch):
    from infermeter.engines import ENGINES, Engine, load_all
    from infermeter.errors import BadInput

    declared = {p for cls in load_all().values() for ps in cls.precisions.values() for p in ps}
    for p in declared:
        assert RunConfig(precisions=[p]).precisions == [p]
    undeclared = "int8" if "int8" not in declared else "int4"
    with pytest.raises(BadInput, match=f"unknown '{undeclared}'"):
        RunConfig(precisions=[undeclared])

    class LowBitEngine(Engine):  # an engine that declares it: the precision is valid from then on
        name = "test-low-bit"
        precisions = {"cpu": (undeclared,)}

    monkeypatch.setitem(ENGINES, LowBitEngine.name, LowBitEngine)
    assert RunConfig(precisions=[undeclared]).precisions == [undeclared]
    probe = ("import sys; from infermeter.config import RunConfig; RunConfig(precisions=['fp32']); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'onnxruntime', "
             "'openvino', 'tensorrt')))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_both_readers_drop_a_torn_last_line_alike(tmp_path):
    from infermeter.analysis.load import _read_results_csv
    from infermeter.results.writer import ResultsCsv, read_results

    csv_path = tmp_path / "results.csv"
    ResultsCsv(csv_path).append({"cell_id": "a", "status": "ok", "batch_size": 1})
    with open(csv_path, "a") as fh:
        fh.write("b,half-writ")  # a crash mid-row
    assert [r["cell_id"] for r in read_results(csv_path)] == ["a"]
    assert list(_read_results_csv(csv_path)["cell_id"]) == ["a"]


def test_one_line_errors():
    from infermeter.errors import one_line

    assert one_line(ValueError("first\n  second")) == "ValueError: first second"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("x" * 400), limit=20) == "RuntimeError: xxxxxx..."

"""`infermeter fleet` on a real Ray cluster started here: a head and worker nodes, each worker offering its
CPU as a device through a custom resource. Devices land in their own folders with a cross-device workbook;
a node killed mid-sweep keeps its rows, its cells move to another node of the device or fail naming it;
--resume runs only what is missing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from infermeter.results.writer import read_results

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).parent))
from _ray_cluster import Cluster  # noqa: E402
from test_multi_gpu import tiny_onnx  # noqa: E402

DEVICE = "infermeter_device:"
CELLS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        head = c.start_head()
        c.wait_ready([head])
        workers = [c.add_worker(name, {DEVICE + name: 1}) for name in ("cpu-a", "cpu-b")]
        c.wait_ready(workers)
        yield c
    finally:
        c.stop()
        deadline = time.monotonic() + 10
        while c.leftovers() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not c.leftovers(), c.leftovers()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


def fleet_cmd(cluster, model, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "infermeter", "fleet", str(model), "--address", cluster.address,
            "--engines", "onnxruntime", "--iterations", "5", "--warmup", "1", "--min-iterations", "1",
            "--idle-time", "0", "--results-dir", str(results), "--cache-dir", str(results.parent / "cache"), *extra]


def rows_of(folder: Path) -> list[dict]:
    return read_results(folder / "results.csv")


def test_fleet_sweeps_each_device_into_its_folder_and_compares(cluster, model, tmp_path):
    results = tmp_path / "results"
    res = subprocess.run(fleet_cmd(cluster, model, results, "--batch-sizes", "1,2"), capture_output=True,
                         text=True, timeout=120, env=cluster.env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    model_dir = results / "tiny"
    for label in ("cpu-a", "cpu-b"):
        rows = rows_of(model_dir / label)
        assert sorted(int(r["batch_size"]) for r in rows) == [1, 2]
        assert all(r["status"] == "ok" and r["device_name"] == label and r["check_status"] == "pass" for r in rows)
        for r in rows:  # the per-cell files a local run keeps came back with each row
            assert (model_dir / label / "latency" / f"{r['cell_id']}.csv").is_file()
        info = json.loads((model_dir / label / "run.json").read_text())
        assert info["device_label"] == label and info["fleet"]["node"]["node_id"]
        assert info["host"]["hostname"] and info["command"].startswith("infermeter fleet")
        # worker logs come back with the rows; a worker that said nothing leaves none (no empty files)
        logs = list((model_dir / label / "logs").glob("*.log"))
        assert all(p.stat().st_size > 0 for p in logs)
        named = [g["log"] for g in info.get("groups", {}).values() if g.get("log")]
        assert all((model_dir / label / log).is_file() for log in named)
    from openpyxl import load_workbook

    book = load_workbook(model_dir / "fleet_compare.xlsx", read_only=True)
    text = " ".join(str(c) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row)
    assert "cpu-a" in text and "cpu-b" in text
    assert (model_dir / "report" / "Final_Analysis.pdf").is_file()


def node_running(cluster, pid: int):
    import psutil

    for node in cluster.nodes:
        try:
            if pid in {p.pid for p in psutil.Process(node.proc.pid).children(recursive=True)}:
                return node
        except psutil.NoSuchProcess:  # a node killed before
            continue
    return None


def wait_rows(folder: Path, n: int, proc: subprocess.Popen, timeout_s: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = rows_of(folder) if (folder / "results.csv").exists() else []
        if len(rows) >= n:
            return rows
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"{folder}: fewer than {n} rows after {timeout_s} s")


def test_lost_nodes_keep_their_rows_then_resume_fills_the_gaps(cluster, model, tmp_path):
    results = tmp_path / "results"
    folder_a, folder_b = results / "tiny" / "cpu-a", results / "tiny" / "cpu-b"
    spare = cluster.add_worker("cpu-a-2", {DEVICE + "cpu-a": 1})  # a second node of device cpu-a
    cluster.wait_ready([spare])
    batches = ",".join(str(b) for b in range(1, CELLS + 1))
    cmd = fleet_cmd(cluster, model, results, "--batch-sizes", batches, "--cooldown", "1", "--no-report")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env)
    try:
        # first node of cpu-a lost after two cells: the other cpu-a node takes the rest
        wait_rows(folder_a, 2, proc)
        first = node_running(cluster, json.loads((folder_a / "run.json").read_text())["fleet"]["node"]["pid"])
        assert first is not None
        first.kill()
        # ...and it too is lost after one more cell: nothing else holds cpu-a, its remaining cells fail
        wait_rows(folder_a, 3, proc)
        deadline = time.monotonic() + 60
        while (second := node_running(cluster, json.loads((folder_a / "run.json").read_text())["fleet"]["node"]["pid"])
               ) in (None, first) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert second not in (None, first)
        second.kill()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    rows_a = rows_of(folder_a)
    assert sorted(r["cell_id"] for r in rows_a) == sorted({r["cell_id"] for r in rows_a})  # one row per cell
    assert len(rows_a) == CELLS
    ok = [r for r in rows_a if r["status"] == "ok"]
    failed = [r for r in rows_a if r["status"] == "failed"]
    assert len(ok) >= 3 and failed and len(ok) + len(failed) == CELLS, [(r["status"], r["error"]) for r in rows_a]
    assert all("lost mid-sweep" in r["error"] and "no other node" in r["error"] for r in failed)
    info = json.loads((folder_a / "run.json").read_text())
    assert len(info["fleet"]["lost_nodes"]) == 2
    assert [r["status"] for r in rows_of(folder_b)] == ["ok"] * CELLS  # the other device did not notice
    b_before = (folder_b / "results.csv").read_text()

    # a cpu-a node comes back: --resume runs only the failed cells, and nothing twice
    back = cluster.add_worker("cpu-a-3", {DEVICE + "cpu-a": 1})
    cluster.wait_ready([back])
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120, env=cluster.env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows_a = rows_of(folder_a)
    assert len(rows_a) == CELLS + len(failed)
    ok_cells = Counter(r["cell_id"] for r in rows_a if r["status"] == "ok")
    assert set(ok_cells) == {r["cell_id"] for r in rows_a} and set(ok_cells.values()) == {1}
    assert (folder_b / "results.csv").read_text() == b_before

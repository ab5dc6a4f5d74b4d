"""Fault injection: workers that really segfault, abort, hang or run out of memory, and a sweep that
is really killed with SIGKILL and resumed. Nothing finished may be lost; each failure names its cause."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infermeter.results.schema import FIELDS
from infermeter.results.writer import read_results

FAULTS = {
    "segfault": "import ctypes; ctypes.string_at(0)",
    "abort": "os.abort()",
    "hang": "time.sleep(3600)",
    "oom": "_hog = bytearray(1 << 42)",  # 4 TiB: the allocator must refuse it
}

CONFIG = """\
name: faulty_{kind}
framework: torch
task: classification
inputs:
  - name: features
    dtype: float32
    dims_names: [batch, features]
    example_shape: [1, 16]
    runtime_dims: [-1, 16]
outputs:
  - name: logits
"""

LOAD = """\
import os, time
import torch
from torch import nn
from infermeter.models.plugin import register_loader

FAULT_BATCH = 3  # the fault fires only when a batch of 3 arrives: the cell with --batch-sizes ...,3,...


class Faulty(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 8))

    def forward(self, features):
        if features.shape[0] == FAULT_BATCH and os.environ.get("INFERMETER_FAULT_ARMED") != "0":
            {fault}
        return self.net(features)


@register_loader
def load(config):
    return Faulty()
"""


def make_faulty_model(root: Path, kind: str) -> Path:
    folder = root / f"faulty_{kind}"
    folder.mkdir()
    (folder / "config.yaml").write_text(CONFIG.format(kind=kind))
    (folder / "load.py").write_text(LOAD.replace("{fault}", FAULTS[kind]))
    return folder


def infermeter(*args, **kw):
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, **kw)


def sweep_args(model: Path, tmp_path: Path, *extra):
    return ["run", str(model), "--engines", "torch", "--device", "cpu", "--batch-sizes", "1,3,4",
            "--iterations", "10", "--warmup", "2", "--min-iterations", "1", "--idle-time-s", "0",
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"), "--quiet", *extra]


def rows_of(tmp_path: Path, name: str) -> dict:
    path = next((tmp_path / "results" / name).glob("*/results.csv"))
    return {r["batch_size"]: r for r in read_results(path)}


@pytest.mark.parametrize("kind,cause", [
    ("segfault", "segmentation fault (SIGSEGV)"),
    ("abort", "aborted (SIGABRT)"),
    ("oom", "out of memory"),
])
def test_a_crashing_cell_fails_alone_and_the_sweep_goes_on(tmp_path, kind, cause):
    model = make_faulty_model(tmp_path, kind)
    res = infermeter(*sweep_args(model, tmp_path), timeout=600)
    assert res.returncode == 1, res.stderr[-2000:]  # some cell failed
    rows = rows_of(tmp_path, f"faulty_{kind}")
    assert rows["1"]["status"] == "ok" and rows["1"]["check_status"] == "pass"
    assert rows["3"]["status"] == "failed" and cause in rows["3"]["error"], rows["3"]["error"]
    assert rows["4"]["status"] == "ok"  # measured after the crash, in a fresh worker where needed


def test_a_hanging_cell_is_killed_at_the_timeout(tmp_path):
    model = make_faulty_model(tmp_path, "hang")
    t0 = time.monotonic()
    res = infermeter(*sweep_args(model, tmp_path, "--timeout-s", "15"), timeout=600)
    assert res.returncode == 1
    rows = rows_of(tmp_path, "faulty_hang")
    assert rows["3"]["status"] == "failed" and "timeout" in rows["3"]["error"] and "15 s" in rows["3"]["error"]
    assert rows["1"]["status"] == "ok" and rows["4"]["status"] == "ok"
    assert time.monotonic() - t0 < 300


@pytest.mark.slow
def test_a_group_killed_by_its_time_limit_leaves_a_failed_row_per_unfinished_cell(tmp_path):
    model = make_faulty_model(tmp_path, "hang")  # batch 3 hangs; the per-cell limit (900 s) never comes
    limit = 25
    t0 = time.monotonic()
    res = infermeter(*sweep_args(model, tmp_path, "--group-timeout-s", str(limit)), timeout=600)
    assert res.returncode == 1, res.stderr[-2000:]
    assert time.monotonic() - t0 < limit + 120
    path = next((tmp_path / "results" / "faulty_hang").glob("*/results.csv"))
    rows = read_results(path)
    assert sorted(r["batch_size"] for r in rows) == ["1", "3", "4"]  # one row per cell, none lost, none twice
    by_batch = {r["batch_size"]: r for r in rows}
    for b in ("3", "4"):  # the hung cell and the one after it never finished
        assert by_batch[b]["status"] == "failed", by_batch[b]
    for r in rows:
        if r["status"] != "ok":  # batch 1 too, on a machine too slow to build the session within the limit
            assert r["status"] == "failed" and f"--group-timeout-s {limit} s" in r["error"], r
    (group,) = json.loads((path.parent / "run.json").read_text())["groups"].values()  # torch fp32: one group
    assert "group-timeout-s" in group["ended"] and group["rows"].get("failed", 0) >= 2
    assert sorted(group["cells"]) == sorted(r["cell_id"] for r in rows)
    for log in (path.parent / "logs").glob("*"):  # a log is kept only when it holds something
        assert log.stat().st_size > 0, log


def test_a_worker_starved_of_memory_fails_with_a_reason(tmp_path):
    model = make_faulty_model(tmp_path, "segfault")
    env = {**os.environ, "INFERMETER_FAULT_ARMED": "0"}
    res = infermeter(*sweep_args(model, tmp_path, "--worker-memory-limit-mb", "64"), timeout=600, env=env)
    assert res.returncode == 1
    rows = rows_of(tmp_path, "faulty_segfault")
    for r in rows.values():  # 64 MiB of address space cannot even import torch
        assert r["status"] == "failed" and r["error"], r


def _data_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        text = fh.read()
    assert text == "" or text.endswith("\n"), "results.csv ends in a partial line"
    rows = list(csv.DictReader(text.splitlines()))
    for r in rows:
        assert list(r) == FIELDS and None not in r.values()
    return rows


def _sweep_with_two_rows(tmp_path, stderr=subprocess.DEVNULL):
    """A real six-cell sweep started in its own process group, returned once two rows are written:
    (process, its arguments, the model's results folder). Fails if that takes 300 s."""
    model = Path(__file__).resolve().parents[1] / "models" / "example_mlp"
    args = ["run", str(model), "--engines", "onnxruntime", "--device", "cpu", "--batch-sizes", "1,2,4,8,16,32",
            "--time-s", "1.5", "--warmup", "2", "--idle-time-s", "0", "--quiet",
            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", *args], stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True, start_new_session=True)
    csv_path = tmp_path / "results" / "example_mlp"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            found = list(csv_path.glob("*/results.csv"))
            if found and len(_data_rows(found[0])) >= 2:
                return proc, args, csv_path
            assert proc.poll() is None, "the sweep ended before it could be stopped"
            time.sleep(0.2)
        pytest.fail("no two rows within 300 s")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        raise


def test_kill_9_of_the_whole_sweep_then_resume(tmp_path):
    proc, args, csv_path = _sweep_with_two_rows(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid-cell
    proc.wait(30)
    results = next(csv_path.glob("*/results.csv"))
    before = _data_rows(results)
    assert 2 <= len(before) < 6
    assert all(r["status"] == "ok" for r in before)

    res = infermeter(*args, "--resume", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    after = _data_rows(results)
    ids = [r["cell_id"] for r in after]
    assert len(ids) == len(set(ids)) == 6  # every cell once: none redone, none missing
    assert after[: len(before)] == before  # finished rows untouched
    assert {r["batch_size"] for r in after} == {"1", "2", "4", "8", "16", "32"}


@pytest.mark.slow
def test_sigterm_of_the_whole_sweep_leaves_a_row_per_cell(tmp_path):
    """What `timeout` does to a sweep that outlives it: SIGTERM to the sweep and its workers. The cells that
    finished keep their rows; every other cell gets a failed row saying why."""
    proc, _, csv_path = _sweep_with_two_rows(tmp_path, stderr=subprocess.PIPE)
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # as `timeout` does: the sweep's whole process group
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in stderr, stderr[-2000:]
    results = next(csv_path.glob("*/results.csv"))
    rows = _data_rows(results)
    assert sorted(int(r["batch_size"]) for r in rows) == [1, 2, 4, 8, 16, 32]  # each cell once
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 2
    for r in rows:
        if r["status"] != "ok":
            assert r["status"] == "failed" and "the sweep was stopped (SIGTERM" in r["error"], r
    assert len(ok) < 6, "the sweep finished before the signal: nothing was stopped"
    (group,) = json.loads((results.parent / "run.json").read_text())["groups"].values()
    assert group["ended"] == "the sweep stopped during this group"
    assert group["rows"] == {"ok": len(ok), "failed": 6 - len(ok)}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 KiB tmpfs: a real file system that really fills (needs root to mount; skipped otherwise)."""
    mnt = tmp_path / "tiny-disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_disk_that_fills_stops_the_sweep_cleanly(tmp_path, tiny_disk):
    model = Path(__file__).resolve().parents[1] / "models" / "example_mlp"
    batches = ",".join(str(b) for b in range(1, 41))
    res = infermeter("run", str(model), "--engines", "onnxruntime", "--device", "cpu", "--batch-sizes", batches,
                     "--iterations", "400", "--warmup", "1", "--idle-time-s", "0", "--quiet",
                     "--results-dir", str(tiny_disk), "--cache-dir", str(tmp_path / "cache"), timeout=600)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "disk full" in lines[0] and "--resume" in lines[0], res.stderr
    results = next(tiny_disk.glob("*/*/results.csv"))
    rows = _data_rows(results)  # parses, no partial line
    assert 1 <= len(rows) < 40 and all(r["status"] == "ok" for r in rows)
    for r in rows:  # every finished row has its complete latency file
        lat = (results.parent / "latency" / f"{r['cell_id']}.csv").read_text().splitlines()
        assert len(lat) == 401
    assert f"{len(rows)} finished cell(s)" in lines[0]

"""The tuner's GPU knobs against a fake NVML (never a real board): settable knobs found, refused ones left
out once, and every change restored — at the end, at exit after a crash, and after kill -9 at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from _fake_nvml import FakeNvml

from infermeter.tune.gpu_knobs import GpuKnobs

TESTS = Path(__file__).resolve().parent


def knobs(tmp_path, **kw) -> tuple[GpuKnobs, FakeNvml, list[str]]:
    nv = FakeNvml(tmp_path / "board.json", **kw)
    said: list[str] = []
    return GpuKnobs(nv, 0, tmp_path / "records", say=said.append), nv, said


def test_probe_offers_what_nvml_allows_and_changes_nothing(tmp_path):
    k, nv, _ = knobs(tmp_path)
    before = nv.state()
    space = k.probe()
    lo, hi = nv.limits
    assert space["power_limit_w"] and all(lo / 1000 <= w <= hi / 1000 for w in space["power_limit_w"])
    assert nv.default_mw / 1000 in space["power_limit_w"]
    assert space["locked_clocks_mhz"][0] is None and set(space["locked_clocks_mhz"][1:]) <= set(nv.clocks)
    after = nv.state()
    assert after["power_limit_mw"] == before["power_limit_mw"] and after["locked"] is None
    k.restore()
    assert not k.record.exists()


def test_refused_knobs_are_left_out_and_said_once(tmp_path):
    k, nv, said = knobs(tmp_path, allowed=False)
    assert k.probe() == {}
    assert len(said) == 2 and all("NVML refuses" in s for s in said)
    assert nv.state()["calls"] == []
    k.restore()  # nothing was changed: nothing is set back
    assert nv.state()["calls"] == [] and not k.record.exists()


def test_changes_are_restored(tmp_path):
    k, nv, _ = knobs(tmp_path)
    original = nv.state()["power_limit_mw"]
    k.apply(power_limit_w=150, locked_clocks_mhz=1200)
    assert nv.state()["power_limit_mw"] == 150_000 and nv.state()["locked"] == [1200, 1200]
    assert k.record.exists()  # written before the first change
    k.restore()
    assert nv.state()["power_limit_mw"] == original and nv.state()["locked"] is None
    assert not k.record.exists()


def _child(tmp_path, ending: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from _fake_nvml import FakeNvml
        from infermeter.tune.gpu_knobs import GpuKnobs
        k = GpuKnobs(FakeNvml({str(tmp_path / "board.json")!r}), 0, {str(tmp_path / "records")!r})
        k.apply(power_limit_w=120, locked_clocks_mhz=900)
        {ending}
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_crash_restores_at_exit(tmp_path):
    nv = FakeNvml(tmp_path / "board.json")
    original = nv.state()["power_limit_mw"]
    res = _child(tmp_path, "raise RuntimeError('the search crashed')")
    assert res.returncode == 1 and "the search crashed" in res.stderr
    assert nv.state()["power_limit_mw"] == original and nv.state()["locked"] is None
    assert [c[0] for c in nv.state()["calls"]] == ["power_limit_mw", "locked", "locked", "power_limit_mw"]


def test_sigterm_restores(tmp_path):
    nv = FakeNvml(tmp_path / "board.json")
    original = nv.state()["power_limit_mw"]
    res = _child(tmp_path, "os.kill(os.getpid(), signal.SIGTERM)")
    assert res.returncode == 128 + signal.SIGTERM
    assert nv.state()["power_limit_mw"] == original and nv.state()["locked"] is None


def test_kill_9_is_restored_at_the_next_start(tmp_path):
    nv = FakeNvml(tmp_path / "board.json")
    original = nv.state()["power_limit_mw"]
    res = _child(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)")
    assert res.returncode == -signal.SIGKILL
    assert nv.state()["power_limit_mw"] == 120_000 and nv.state()["locked"] == [900, 900]  # left changed
    said: list[str] = []
    k = GpuKnobs(nv, 0, tmp_path / "records", say=said.append)  # the next tuner on this board
    assert k.restored_leftover and "restored settings a previous tune left changed" in said[0]
    assert nv.state()["power_limit_mw"] == original and nv.state()["locked"] is None
    assert not k.record.exists()
    assert not os.listdir(tmp_path / "records")

"""benchmarks/gpu_check.sh is correct by construction: it parses, its plan (DRY_RUN=1) fits 9 minutes with
what never ran on a GPU first, and every sweep it would start is a valid `infermeter run` whose engine
groups each fit their step's limit, so every step leaves rows or skipped rows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from infermeter.cli import build_parser, config_from_args
from infermeter.models.registry import resolve_model
from infermeter.plan import plan
from infermeter.sweep import model_options

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
NINE_MINUTES_S = 9 * 60
STEP = re.compile(r"^== (\w+) \(limit (\d+)s\): (.*)$")
NOT_RUN = re.compile(r"^== (\w+): not run, ")


def dry_run(not_run: list[str] | None = None, **env) -> list[tuple[str, int, list[str]]]:
    """The steps the script would run: (name, limit, command). Steps left without time go to not_run (the
    script then exits 1: a check it could not make is not a pass)."""
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DRY_RUN": "1", **env})
    lines = res.stdout.splitlines()
    steps = [(m[1], int(m[2]), shlex.split(m[3])) for m in map(STEP.match, lines) if m]
    skipped = [m[1] for m in map(NOT_RUN.match, lines) if m]
    assert res.returncode == (1 if skipped else 0), res.stderr
    assert lines[-1].startswith("== plan: at most")
    if not_run is not None:
        not_run += skipped
    return steps


def sweep_config(cmd: list[str]):
    argv = cmd[cmd.index("infermeter") + 1:]
    return config_from_args(build_parser().parse_args(argv), argv)


def test_the_script_parses():
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_the_plan_fits_nine_minutes_with_what_never_ran_first():
    steps = dry_run()
    names = [name for name, _, _ in steps]
    assert names == ["env", "clean", "scenarios", "compile", "io", "tests"]
    kill_s = int(re.search(r"^KILL_S=(\d+)", SCRIPT.read_text(), re.M)[1])
    assert sum(limit + kill_s for _, limit, _ in steps) <= NINE_MINUTES_S


def test_each_sweep_is_valid_and_its_groups_fit_its_limit():
    steps = {name: (limit, cmd) for name, limit, cmd in dry_run()}
    configs = {}
    for name, (limit, cmd) in steps.items():
        if "infermeter" not in cmd:
            continue
        cfg = configs[name] = sweep_config(cmd)
        groups = plan(cfg, [resolve_model(cfg.model, model_options(cfg, None))], "cuda")
        assert cfg.group_timeout_s and len(groups) * cfg.group_timeout_s <= limit, name
        assert cfg.gpu_id == 0 and cfg.energy_time_s > 0 and cfg.idle_time_s > 0
    assert set(configs) == {"clean", "scenarios", "compile", "io"}
    assert set(configs["scenarios"].scenarios) == {"single-stream", "server", "multi-stream"}
    assert configs["compile"].engines == ["torch-compile"] and configs["compile"].precisions == ["bf16"]
    # device-resident against host inputs: the same torch cells, inputs on the GPU, in a folder of their own
    host, device = configs["clean"], configs["io"]
    assert host.io == "host" and device.io == "device" and device.results_dir != host.results_dir
    assert "torch" in host.engines and device.engines == ["torch"] and device.precisions == host.precisions
    assert device.batch_sizes == host.batch_sizes


@pytest.mark.parametrize("steps", ["clean tests", "compile io"])
def test_chosen_steps_only_and_limits_cut_to_the_total(steps):
    not_run: list[str] = []
    plan_ = dry_run(not_run, STEPS=steps, TOTAL_S="150")
    assert [name for name, _, _ in plan_] + not_run == steps.split()  # in order, each said
    assert plan_ and sum(limit for _, limit, _ in plan_) <= 150
    assert dry_run(STEPS=steps)  # with the whole budget every chosen step runs

"""`infermeter tune` end to end on small real models: the front, the correctness gate as a constraint, the
budget, resume after kill -9, the files it writes, and GPU settings restored (fake NVML)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from infermeter.results.writer import read_results

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "models" / "example_mlp")
QUICK = ["--device", "cpu", "--quiet", "--warmup", "2", "--min-iterations", "5", "--screen-time-s", "0.3",
         "--max-time-s", "1", "--idle-time-s", "0"]


def tune(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "infermeter", "tune", *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    if check:
        assert res.returncode in (0, 1), res.stderr[-3000:]
    return res


def tune_folder(results: Path) -> Path:
    (db,) = results.glob("*/*/tune.db")
    return db.parent


def branchy_model(tmp_path) -> Path:
    """A torch model whose per-row, data-dependent branches TorchScript's tracing freezes: traced, it computes
    another function than the eager reference, so every torchscript configuration fails the check."""
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
        "    def forward(self, x):\n"
        "        return torch.stack([self.a(r) if float(r[0]) > 0 else self.b(r) for r in x])\n\n"
        "@register_loader\ndef load(config):\n    return Branchy()\n")
    return folder


@pytest.fixture(scope="module")
def branchy_tune(tmp_path_factory):
    """Every point of a small space measured: torch and torchscript at two batch sizes, one thread count. A
    --session-ci no two sessions of a real engine meet: the front's members take sessions past the minimum."""
    tmp = tmp_path_factory.mktemp("branchy-tune")
    model = branchy_model(tmp)
    res = tune(str(model), "--engines", "torch,torchscript", "--batch-sizes", "1,4", "--num-threads", "1",
               "--budget-s", "300", "--confirm-sessions", "2", "--max-confirm-sessions", "3",
               "--session-ci", "0.0001",
               "--results-dir", str(tmp / "r"), "--cache-dir", str(tmp / "c"), *QUICK)
    return tmp, tune_folder(tmp / "r"), res


@pytest.mark.slow
def test_a_mismatching_configuration_never_reaches_the_front(branchy_tune):
    _, folder, res = branchy_tune
    rows = [r for r in read_results(folder / "results.csv") if r["trial"] is not None]
    screened = [r for r in rows if r["stage"] == "screen"]
    assert {(r["engine"], r["batch_size"]) for r in screened} == {(e, b) for e in ("torch", "torchscript")
                                                                  for b in ("1", "4")}
    bad = [r for r in screened if r["engine"] == "torchscript"]
    assert bad and all(r["status"] == "mismatch" for r in bad)  # measured, and marked by the gate
    assert all(r["status"] == "ok" for r in screened if r["engine"] == "torch")
    front = pd.read_csv(folder / "front.csv")
    assert len(front) and set(front["engine"]) == {"torch"} and front["feasible"].all()
    points = pd.read_csv(folder / "tune_points.csv")
    assert not points[points["engine"] == "torchscript"]["feasible"].any()
    assert not points[points["engine"] == "torchscript"]["on_front"].any()
    assert res.returncode == 0 and "front of" in res.stdout


def test_cheap_knobs_vary_inside_one_session(branchy_tune):
    """The batch sizes of one engine configuration are cells of one worker session (one run, one build and
    check), each its own trial told its own values; the session's build time is in build_s, not the timing."""
    _, folder, _ = branchy_tune
    screened = [r for r in read_results(folder / "results.csv") if r["trial"] is not None and r["stage"] == "screen"]
    by_engine: dict[str, list[dict]] = {}
    for r in screened:
        by_engine.setdefault(r["engine"], []).append(r)
    for engine, rows in by_engine.items():
        assert len(rows) == 2 and len({r["run_id"] for r in rows}) == 1, (engine, [r["run_id"] for r in rows])
        assert len({r["trial"] for r in rows}) == 2 and len({r["load_s"] for r in rows}) == 1
    import optuna

    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'tune.db'}")
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert sum("sibling_of" in t.user_attrs for t in told) == 2  # each engine's second batch size
    assert all(t.user_attrs["session_trials"] == 2 for t in told if "session_trials" in t.user_attrs)


@pytest.mark.slow
def test_the_front_is_non_dominated(branchy_tune):
    from infermeter.tune.front import Point, clearly_dominates, half_widths, minimised
    from infermeter.tune.objectives import OBJECTIVES

    _, folder, _ = branchy_tune
    points = pd.read_csv(folder / "tune_points.csv")
    objectives = [OBJECTIVES["throughput"], OBJECTIVES["p99"]]  # energy cannot be measured on this CPU machine
    feas = points[points["feasible"]]
    pts = [Point(int(r.trial), r.stage, {}, [r.throughput_items_s, r.latency_ms_p99], r.ci95_rel, True, {})
           for r in feas.itertuples()]
    F, on = minimised(pts, objectives), feas["on_front"].to_numpy()
    H = half_widths(pts, F)
    members = np.flatnonzero(on)
    for i in members:  # no member beats another beyond both CIs
        assert not any(clearly_dominates(F[j], F[i], H[j], H[i]) for j in members if j != i)
    for i in np.flatnonzero(~on):  # and every point left off is clearly dominated by a member
        assert any(clearly_dominates(F[j], F[i], H[j], H[i]) for j in members)
    assert feas["knee"].sum() == 1 and feas[feas["knee"]]["on_front"].all()


@pytest.mark.slow
def test_the_front_is_confirmed_in_separate_sessions(branchy_tune):
    """Each front member is re-measured in at least --confirm-sessions worker sessions of its own; its value
    is their mean and its interval is never narrower than the t interval over them, nor than a session's own.
    A session past the minimum is taken only while the sessions before it disagree by more than --session-ci,
    and stops at --max-confirm-sessions (or the budget)."""
    from infermeter.scenarios.stats import mean_ci
    from infermeter.tune.front import ci_of, pooled
    from infermeter.tune.objectives import parse_objectives

    _, folder, _ = branchy_tune
    summary = json.loads((folder / "tune.json").read_text())
    want, most, target = summary["confirm_sessions"], summary["max_confirm_sessions"], summary["session_ci"]
    assert 2 <= want < most
    objectives = parse_objectives(",".join(o["name"] for o in summary["objectives"]))
    spent = summary["spent_s"] >= summary["budget_s"]
    rows = [r for r in read_results(folder / "results.csv") if r["trial"]]
    members = pd.read_csv(folder / "tune_points.csv").query("on_front")
    assert len(members)
    counts = []
    for m in members.itertuples():
        confirms = [r for r in rows if int(r["trial"]) == m.trial and r["stage"] == "confirm"]  # in session order
        n = len(confirms)
        counts.append(n)
        assert m.stage == "confirm" and want <= n == m.sessions <= most, (m.trial, n)
        assert len({r["run_id"] for r in confirms}) == n and len({r["cell_id"] for r in confirms}) == n
        thr = [float(r["throughput_items_s"]) for r in confirms]
        assert m.throughput_items_s == pytest.approx(np.mean(thr), rel=1e-9)
        mean, half = mean_ci(thr)
        assert m.ci95_rel >= half / mean * (1 - 1e-9)
        assert m.ci95_rel >= np.median([ci_of(r) for r in confirms]) * (1 - 1e-9)
        assert m.ci95_rel_between_sessions >= half / mean * (1 - 1e-9)
        for k in range(want, n):  # every session past the minimum was asked for by the ones before it
            assert pooled(confirms[:k], objectives)["ci95_rel_between_sessions"] > target, (m.trial, k)
        if n < most and not spent:  # stopped early: its sessions agree
            assert pooled(confirms, objectives)["ci95_rel_between_sessions"] <= target, m.trial
    if not spent:  # no two real sessions agree within 0.01%: the stop was reached by the sessions' count
        assert max(counts) == most
    if max(counts) > want:  # said once, with the trials
        (note,) = [n for n in summary["notes"] if f"took more than {want} sessions" in n]
        assert all(str(t) in note for t, n in zip(members.trial, counts, strict=True) if n > want)


@pytest.mark.slow
def test_outputs_and_best_yaml_runs(branchy_tune):
    tmp, folder, _ = branchy_tune
    for name in ("front.csv", "front_p99.png", "front_energy.png", "hypervolume.png", "front.html", "best.yaml",
                 "tune.json"):
        assert (folder / name).stat().st_size > 0, name
    summary = json.loads((folder / "tune.json").read_text())
    assert any(n.startswith("energy left out of the objectives") for n in summary["notes"])
    assert [o["name"] for o in summary["objectives"]] == ["throughput", "p99"]
    html = (folder / "front.html").read_text()
    assert "<script src=\"http" not in html and "Plotly.newPlot" in html  # plotly inline: no network
    best = yaml.safe_load((folder / "best.yaml").read_text())
    picked = pd.read_csv(folder / "front.csv").query("picked")
    assert best["engines"] == [picked["engine"].iloc[0]] and best["batch_sizes"] == [int(picked["batch_size"].iloc[0])]
    assert best["target_ci"] > 0  # reproduced with the CI stop, as the front was confirmed
    res = subprocess.run([sys.executable, "-m", "infermeter", "run", "--config", str(folder / "best.yaml"),
                          "--results-dir", str(tmp / "again"), "--max-time-s", "1", "--idle-time-s", "0"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = read_results(next((tmp / "again").glob("*/*/results.csv")))
    assert (row["engine"], int(row["batch_size"]), row["status"]) == (best["engines"][0], best["batch_sizes"][0], "ok")


@pytest.mark.slow
def test_the_budget_is_held(tmp_path):
    budget = 8.0
    res = tune(MLP, "--engines", "onnxruntime", "--budget-s", str(budget), "--results-dir", str(tmp_path / "r"),
               "--cache-dir", str(tmp_path / "c"), *QUICK)
    summary = json.loads((tune_folder(tmp_path / "r") / "tune.json").read_text())
    assert not any("was measured" in n for n in summary["notes"])  # the budget ended it, not the space
    assert summary["spent_s"] >= budget
    # overrun by at most the one session in progress (plus proposing it: milliseconds)
    assert summary["spent_s"] - budget <= summary["longest_session_s"] + 0.5, summary
    assert res.returncode == 0


@pytest.mark.slow
def test_resume_after_kill_9_repeats_no_trial(tmp_path):
    results, cache = tmp_path / "r", tmp_path / "c"
    # 9 points: 3 batch sizes x ONNX Runtime's 3 graph levels (one thread count, one execution mode)
    args = [MLP, "--engines", "onnxruntime", "--batch-sizes", "1,2,4", "--num-threads", "1", "--ort-execution-mode",
            "sequential", "--budget-s", "120", "--results-dir", str(results), "--cache-dir", str(cache), *QUICK]
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", "tune", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            csvs = list(results.glob("*/*/results.csv"))
            # sessions of {2, 1} trials (graph level all: the engine's first session holds two), then of 3 (one
            # per graph level): the 4th row is the third session's first, so the kill lands with its other
            # trials running
            if csvs and len([r for r in read_results(csvs[0]) if r["trial"]]) >= 4:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the tune wrote no 4 trials in time")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    folder = tune_folder(results)
    before = [r for r in read_results(folder / "results.csv") if r["trial"]]
    res = tune(*args, "--resume")
    rows = [r for r in read_results(folder / "results.csv") if r["trial"]]
    assert rows[: len(before)] == before  # nothing written before the kill is lost
    screened = [r for r in rows if r["stage"] == "screen"]
    trials = [r["trial"] for r in screened]
    configs = [(r["batch_size"], r["cell_id"].split("_t")[0], r["trial"]) for r in screened]
    assert len(set(trials)) == len(trials), trials  # no trial measured twice
    points = pd.read_csv(folder / "tune_points.csv")
    assert not points.duplicated(["engine", "batch_size", "ort_graph_level"]).any()
    assert len(points) == len(screened) == 9, configs  # every point of the space, once
    assert "every one of the 9 points was measured" in res.stderr
    import optuna

    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'tune.db'}")
    # the trial the kill interrupted was told from its row (written before the kill) or proposed again
    assert any({"recovered", "requeued_from"} & set(t.user_attrs) for t in study.trials)


def test_bad_tune_input_is_one_line_and_exit_2(tmp_path):
    for args, words in ((["--scenario", "single-stream"], "tune searches one of offline, server"),
                        (["--objectives", "speed"], "--objectives: unknown speed"),
                        (["--pick", "min-energy", "--objectives", "throughput,p99"], "energy is not among"),
                        (["--budget-s", "0"], "--budget-s: must be positive"),
                        (["--confirm-sessions", "3", "--max-confirm-sessions", "2"],
                         "--max-confirm-sessions: at least --confirm-sessions (3), got 2"),
                        (["--session-ci", "0"], "--session-ci: must be positive")):
        res = tune(MLP, "--device", "cpu", "--results-dir", str(tmp_path), *args, check=False, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, res.stderr)


@pytest.mark.slow
def test_gpu_settings_changed_by_the_tuner_are_restored(tmp_path):
    """The tuner with a GPU's power limit and clocks in its space (a fake NVML board): each trial sets its
    point's values, and when the search ends the board is as it was."""
    from _fake_nvml import FakeNvml

    from infermeter.config import RunConfig
    from infermeter.tune.gpu_knobs import GpuKnobs
    from infermeter.tune.options import TuneOptions
    from infermeter.tune.study import run_tune

    nv = FakeNvml(tmp_path / "board.json")
    original = nv.state()
    knobs = GpuKnobs(nv, 0, tmp_path / "records", say=lambda line: None)
    cfg = RunConfig(model=MLP, engines=["onnxruntime"], device="cpu", batch_sizes=[8], num_threads=1, warmup=2,
                    min_iterations=5, max_time_s=1.0, idle_time_s=0, quiet=True,
                    results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"))
    outcome = run_tune(cfg, TuneOptions(budget_s=10, screen_time_s=0.3), gpu_knobs=knobs)
    assert set(outcome.space.device_knobs) == {"power_limit_w", "locked_clocks_mhz"}
    set_limits = {c[1] for c in nv.state()["calls"] if c[0] == "power_limit_mw"}
    assert len(set_limits - {original["power_limit_mw"]}) >= 1  # trials ran at other power limits
    tried = {p.config["power_limit_w"] * 1000 for p in outcome.points}
    assert tried - {original["power_limit_mw"]} <= set_limits
    after = nv.state()
    assert after["power_limit_mw"] == original["power_limit_mw"] and after["locked"] is None
    assert not knobs.record.exists()
    best = (outcome.out_dir / "best.yaml").read_text()
    if outcome.picked.config["power_limit_w"] is not None:
        assert f"-pl {outcome.picked.config['power_limit_w']:g}" in best


def _screenshot(html: Path, png: Path) -> np.ndarray:
    from PIL import Image

    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1400,700", "--virtual-time-budget=10000",
                    html.as_uri()], capture_output=True, timeout=120, check=True)
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def _blobs(img: np.ndarray, rgb: str) -> int:
    """How many separate patches of this colour the image shows."""
    from scipy import ndimage

    target = np.array([int(rgb[i:i + 2], 16) for i in (1, 3, 5)])
    mask = np.abs(img - target).sum(axis=2) < 40
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= 12).sum())  # marker-sized, not anti-aliased edges


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_the_html_page_shows_the_points_in_a_browser(branchy_tune, tmp_path):
    """Rendered by headless Chromium with no network: the front's markers are on the screenshot, and a page
    built the same way with no points shows none of them (only the legend's swatch)."""
    from infermeter.tune.objectives import OBJECTIVES
    from infermeter.tune.output import FRONT_COLOR, front_html

    _, folder, _ = branchy_tune
    points = pd.read_csv(folder / "tune_points.csv")
    shown = _blobs(_screenshot(folder / "front.html", tmp_path / "front.png"), FRONT_COLOR)
    empty = tmp_path / "empty.html"
    empty.write_text(front_html(points.iloc[0:0], [OBJECTIVES["throughput"], OBJECTIVES["p99"]], "no points"))
    legend_only = _blobs(_screenshot(empty, tmp_path / "empty.png"), FRONT_COLOR)
    assert legend_only <= 1
    assert shown >= legend_only + 1, (shown, legend_only)


@pytest.mark.slow
def test_the_report_includes_the_front(branchy_tune, tmp_path):
    from pypdf import PdfReader

    from infermeter.analysis.report import build_report

    tmp, folder, _ = branchy_tune
    written = build_report([tmp / "r"], tmp_path / "report")
    text = "".join(page.extract_text() for page in PdfReader(written["pdf"]).pages)
    front = pd.read_csv(folder / "front.csv")
    assert "Tune front" in text and "knee" in text
    assert all(f"engine={e}" in text for e in front["engine"])
    assert any(k.startswith("plot:tune_front_p99__") for k in written)
    assert any(k.startswith("plot:tune_hypervolume__") for k in written)


@pytest.mark.slow
def test_engine_knobs_the_tuner_varies_reach_the_engine(tmp_path):
    """The knobs engines declare for the tuner are run settings: ONNX Runtime's execution mode and graph level
    and OpenVINO's hint land in the sessions (run.json records what each engine actually configured)."""
    from infermeter.config import RunConfig
    from infermeter.engines import load_all
    from infermeter.sweep import run_sweep

    engines = load_all()
    assert {"ort_execution_mode", "ort_graph_level"} <= set(engines["onnxruntime"].tunables)
    assert "ov_hint" in engines["openvino"].tunables
    status, sweep = run_sweep(RunConfig(
        model=MLP, engines=["onnxruntime", "openvino"], device="cpu", batch_sizes=[4], iterations=10, warmup=2,
        idle_time_s=0, quiet=True, ort_execution_mode="parallel", ort_graph_level="basic", ov_hint="throughput",
        results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c")))
    assert status == 0
    facts = json.loads((sweep.out_dir / "run.json").read_text())["engines"]
    ort = next(v["settings"] for k, v in facts.items() if k.startswith("onnxruntime/"))
    ov = next(v["settings"] for k, v in facts.items() if k.startswith("openvino/"))
    assert (ort["execution_mode"], ort["graph_optimization_level"]) == ("ORT_PARALLEL", "ORT_ENABLE_BASIC")
    assert ov["performance_hint"] == "THROUGHPUT" and "--ov-hint" in ov["offline_api"]


@pytest.mark.slow
def test_tune_on_the_ray_fleet_writes_a_front_per_device(tmp_path):
    """--address local: this machine's CPU is the fleet's device; its search runs as one Ray task on it (trials
    in sequence), each finished trial streams to the caller's folder at once, and the front comes back at the end."""
    pytest.importorskip("ray")
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", "tune", MLP, "--engines", "onnxruntime",
                             "--batch-sizes", "4", "--num-threads", "1", "--budget-s", "12", "--address", "local",
                             "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *QUICK],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    streamed = False
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        csvs = list((tmp_path / "r").glob("*/*/results.csv"))
        if csvs and [r for r in read_results(csvs[0]) if r["trial"]] and (csvs[0].parent / "tune.db").exists():
            streamed = proc.poll() is None  # rows and the study reached the caller while the search ran
            break
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert streamed
    (folder,) = [p.parent for p in (tmp_path / "r").glob("*/*/front.csv")]
    for name in ("tune.db", "front.html", "best.yaml", "tune_points.csv"):
        assert (folder / name).is_file(), name
    rows = [r for r in read_results(folder / "results.csv") if r["trial"]]
    assert rows and all(r["device_name"] == folder.name for r in rows)
    screened = [r["trial"] for r in rows if r["stage"] == "screen"]
    assert len(set(screened)) == len(screened)  # each trial screened once
    assert len({r["cell_id"] for r in rows}) == len(rows)  # each confirmation session its own cell
    for r in rows:
        assert (folder / "latency" / f"{r['cell_id']}.csv").is_file()
    assert f"{folder.name}: tune:" in out and str(folder) in out


@pytest.mark.slow
def test_limits_make_measured_points_infeasible(branchy_tune):
    """--max-p99-ms and --min-throughput on the tune's own rows: a point outside a limit is infeasible, says
    which limit, and stays off the front."""
    from infermeter.tune.front import Point, ci_of, front
    from infermeter.tune.objectives import OBJECTIVES, Constraints, objective_values

    _, folder, _ = branchy_tune
    objs = [OBJECTIVES["throughput"], OBJECTIVES["p99"]]
    rows = [r for r in read_results(folder / "results.csv") if r["stage"] == "screen" and r["status"] == "ok"]
    p99 = sorted(float(r["latency_ms_p99"]) for r in rows)
    thr = sorted(float(r["throughput_items_s"]) for r in rows)
    for limits, outside, flag in ((Constraints(max_p99_ms=p99[0]), lambda r: float(r["latency_ms_p99"]) > p99[0],
                                   "--max-p99-ms"),
                                  (Constraints(min_throughput=thr[-1]),
                                   lambda r: float(r["throughput_items_s"]) < thr[-1], "--min-throughput")):
        pts = [Point(int(r["trial"]), "screen", {}, objective_values(r, objs), ci_of(r), limits.why_not(r) is None, r,
                     limits.why_not(r)) for r in rows]
        assert {p.trial for p in pts if not p.feasible} == {int(r["trial"]) for r in rows if outside(r)}
        assert all(flag in p.why_infeasible for p in pts if not p.feasible)
        members = front(pts, objs)
        assert members and all(p.feasible for p in members)
    # a row whose window held too few requests for an interval (ci95_rel inf) is compared by its values alone:
    # an infinite interval would tie it with every point and keep it on the front however slow it is
    r = rows[0]
    worse = {**r, "trial": "999", "ci95_rel": "inf", "throughput_items_s": str(float(r["throughput_items_s"]) / 2),
             "latency_ms_p99": str(float(r["latency_ms_p99"]) * 2)}  # the same point, twice as slow, one request
    pts = [Point(int(x["trial"]), "screen", {}, objective_values(x, objs), ci_of(x), True, x) for x in (r, worse)]
    assert ci_of(worse) == 0.0 and [p.trial for p in front(pts, objs)] == [int(r["trial"])]


@pytest.mark.slow
def test_int8_competes_only_with_enough_agreement(tmp_path):
    """int8 and fp32 of ONNX Runtime: the int8 point is measured and gated like any other, and is feasible only
    when its top-1 agreement with fp32 on held-out inputs reaches --min-agreement."""
    from infermeter.tune.objectives import Constraints

    res = tune(MLP, "--engines", "onnxruntime", "--precisions", "fp32,int8", "--batch-sizes", "4", "--num-threads",
               "1", "--ort-execution-mode", "sequential", "--ort-graph-level", "all", "--min-agreement", "1.0",
               "--budget-s", "120", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *QUICK)
    folder = tune_folder(tmp_path / "r")
    assert "every one of the 2 points was measured" in res.stderr
    (int8,) = [r for r in read_results(folder / "results.csv") if r["precision"] == "int8" and r["stage"] == "screen"]
    agreement = float(int8["top1_agreement_fp32"])
    points = pd.read_csv(folder / "tune_points.csv").set_index("precision")
    assert bool(points.loc["int8", "feasible"]) == (agreement >= 1.0)
    if agreement < 1.0:
        assert "--min-agreement" in points.loc["int8", "why_infeasible"] and not points.loc["int8", "on_front"]
    assert Constraints(min_agreement=agreement).why_not(int8) is None  # at its own agreement it competes
    assert Constraints(min_agreement=min(1.0, agreement + 1e-3)).why_not(int8) is not None or agreement == 1.0


@pytest.mark.slow
def test_the_report_keeps_a_folders_grid_apart_from_its_tune(branchy_tune, tmp_path):
    """A folder holding a sweep and a tune: the sweep's cells fill the ordinary pages, the trials only the
    tune's pages (a search is no grid: several trials share a batch size)."""
    from infermeter.analysis.report import build_report
    from infermeter.config import RunConfig
    from infermeter.sweep import run_sweep

    tmp, folder, _ = branchy_tune
    status, sweep = run_sweep(RunConfig(model=str(tmp / "branchy"), engines=["torch"], device="cpu", batch_sizes=[1],
                                        iterations=5, warmup=1, idle_time_s=0, quiet=True,
                                        results_dir=str(tmp_path / "r"), cache_dir=str(tmp / "c")))
    assert status == 0
    both = tmp_path / "both"
    shutil.copytree(folder, both)
    with open(both / "results.csv", "a") as fh:  # the sweep's row beside the trials, as a run into this folder
        fh.write((sweep.out_dir / "results.csv").read_text().split("\n", 1)[1])
    written = build_report([both], tmp_path / "report")
    sheets = [df for df in pd.read_excel(written["xlsx"], sheet_name=None).values() if "cell_id" in df]
    (device_sheet,) = sheets  # every row of the folder the ordinary pages show: the sweep's cell alone
    assert list(device_sheet["cell_id"]) == [r["cell_id"] for r in sweep.rows]
    assert any(k.startswith("plot:tune_front_p99__") for k in written)
    # compare: the grid's cell, never the trials; a folder holding only a tune is left out with its reason
    from infermeter.analysis.compare import compare_main

    res = subprocess.run([sys.executable, "-m", "infermeter", "compare", str(both), str(folder), "--metric",
                          "throughput_items_s"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert f"left out: the trials of a tune (its front is front.csv there): {folder}" in res.stderr
    assert "torchscript" not in res.stdout and "torch" in res.stdout  # the sweep ran torch; the tune both
    assert compare_main([str(folder)]) == 2

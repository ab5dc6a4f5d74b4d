"""The fleet task: on its node, one ordinary sweep for one device, every row pushed to the caller.

The sweep writes into a scratch folder on the node, exactly as `infermeter run` would; each row, with
the per-cell files it refers to (latency, power, loadgen), goes to the caller's queue before the next
cell starts, so a node lost mid-sweep costs only its cell in progress.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from infermeter.config import RunConfig

CELL_FILE_DIRS = ("latency", "power", "loadgen")


def cell_files(out_dir: Path, cell_id: str) -> dict[str, bytes]:
    """The files a local run keeps for one cell, relative to its device folder."""
    files = {}
    for sub in CELL_FILE_DIRS:
        d = out_dir / sub
        for p in list(d.glob(f"{cell_id}.*")) + [q for q in (d / cell_id).rglob("*") if q.is_file()]:
            files[str(p.relative_to(out_dir))] = p.read_bytes()
    return files


def folder_files(out_dir: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in (out_dir / sub).rglob("*") if p.is_file()}


def undo_ray_niceness() -> int:
    """Ray starts its workers at a higher niceness than the raylet; the sweep runs at the raylet's, as a local
    run would at the user's. Returns the niceness the sweep runs at (unchanged where lowering is refused)."""
    try:
        target = os.getpriority(os.PRIO_PROCESS, os.getppid())
        if os.getpriority(os.PRIO_PROCESS, 0) > target:
            os.setpriority(os.PRIO_PROCESS, 0, target)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


@contextlib.contextmanager
def plain_spawn():
    """multiprocessing's spawn re-runs the parent's __main__ in each child: in a Ray task that is Ray's
    worker script, which would load Ray into every sweep worker (tens of MB in host_rss_peak_mb, threads
    a local run does not have). Hidden while the sweep runs, the children start as a local run's do."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


def run_device(cfg_dict: dict, device: dict, skip: list[str], queue) -> int:
    """Body of the Ray task (see driver.submit). Returns the sweep's exit status."""
    import ray

    from infermeter.errors import BadInput, StopSweep
    from infermeter.protocol import CellRow, Done, FromDevice, Planned, RunFacts
    from infermeter.results.run_info import RunInfo
    from infermeter.sweep import Sweep

    label = device["label"]
    if os.environ.get("OMP_NUM_THREADS") == "":  # see driver.submit
        del os.environ["OMP_NUM_THREADS"]
    ctx = ray.get_runtime_context()
    where = {"node_id": ctx.get_node_id(), "host": platform.node(), "pid": os.getpid(), "nice": undo_ray_niceness()}
    scratch = Path(tempfile.mkdtemp(prefix="infermeter-fleet-"))
    cfg = RunConfig.from_dict({**cfg_dict, "results_dir": str(scratch), "device_label": label,
                               "device": device["kind"], "gpu_id": device["gpu_id"], "json_path": None,
                               "resume": False, "quiet": True})
    if device["kind"] == "cuda" and cfg.gpu_id is not None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # --per gpu names the node's GPU by its NVML index
    # otherwise Ray's CUDA_VISIBLE_DEVICES holds the GPU it gave this task, and --gpu-id (none) is its entry 0
    try:
        sweep = Sweep(cfg, skip_cells=skip)
        sent: list[RunInfo] = []

        def send_run_facts() -> None:
            """run.json as it now stands, where it changed since last sent (the fingerprint comes first)."""
            run_json = sweep.out_dir / "run.json"
            if run_json.exists():
                info = RunInfo.load(run_json)
                if not sent or sent[-1] != info:
                    sent.append(info)
                    queue.put(FromDevice(label, RunFacts(info)))

        def push(row: dict) -> None:
            send_run_facts()
            queue.put(FromDevice(label, CellRow(row, files=cell_files(sweep.out_dir, row["cell_id"]))))

        sweep.on_row = push
        cells = {}
        for g in sweep.groups:
            for c in g.cells:
                if c.cell_id not in sweep.skip_cells:
                    cells[c.cell_id] = {**sweep.skipped_row(g, c, ""), "parallel_gpus": cfg.parallel_gpus}
        queue.put(FromDevice(label, Planned(cells=cells, node=where)))
        try:
            with plain_spawn():
                status = sweep.run()
        finally:
            send_run_facts()
            queue.put(FromDevice(label, Done(files=folder_files(sweep.out_dir, "logs"))))
        return status
    except StopSweep as e:
        raise BadInput(str(e)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

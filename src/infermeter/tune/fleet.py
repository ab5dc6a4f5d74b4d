"""`infermeter tune --address`: one search per device of a Ray cluster, each on its device, one front each.

One Ray task per device (holding that device's resource: its CPU label or one GPU of its type, on its node)
runs the whole search there, trials one after another, so no two trials ever share a device; GPUs of one
node are searched one at a time unless --parallel-gpus, as `infermeter fleet` sweeps them. When a search
ends, its results folder (results.csv, tune.db, the front, plots, HTML page, best.yaml) comes back to
`<results>/<model>/<device>/` on the caller. With --resume the caller's results.csv and tune.db go to the
node first, so the study continues where it stopped.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.errors import BadInput
from infermeter.tune.options import TuneOptions

#: what --resume sends to the node: the rows and the study
RESUME_FILES = ("results.csv", "tune.db")
POLL_S = 0.5


def tune_device(cfg_dict: dict, opts: TuneOptions, device: dict, upload: dict[str, bytes], queue) -> dict:
    """Body of the Ray task: the search for one device in a scratch folder. After each trial its row's files,
    results.csv and tune.db go to the caller's queue (a node lost mid-search keeps every finished trial, and
    --resume continues); returns every file of the folder and the front's summary."""
    from infermeter.fleet.node import cell_files, plain_spawn, undo_ray_niceness
    from infermeter.tune.output import print_front, write_outputs
    from infermeter.tune.study import Tuner

    if os.environ.get("OMP_NUM_THREADS") == "":  # see fleet.driver.device_task_options
        del os.environ["OMP_NUM_THREADS"]
    undo_ray_niceness()
    scratch = Path(tempfile.mkdtemp(prefix="infermeter-tune-"))
    cfg = RunConfig.from_dict({**cfg_dict, "results_dir": str(scratch), "device_label": device["label"],
                               "device": device["kind"], "gpu_id": device["gpu_id"], "json_path": None,
                               "quiet": True})
    if device["kind"] == "cuda" and cfg.gpu_id is not None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # --per gpu names the node's GPU by its NVML index
    try:
        tuner = Tuner(cfg, opts)
        for rel, data in upload.items():
            (tuner.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (tuner.out_dir / rel).write_bytes(data)
        def push(m) -> None:
            files = cell_files(tuner.out_dir, m.row["cell_id"])
            files.update({f: (tuner.out_dir / f).read_bytes() for f in RESUME_FILES})
            queue.put((device["label"], files))

        tuner.after_trial = push
        with plain_spawn():
            outcome = tuner.run()
        paths = write_outputs(outcome, cfg, opts)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            print_front(outcome, paths)
        files = {str(p.relative_to(tuner.out_dir)): p.read_bytes() for p in tuner.out_dir.rglob("*") if p.is_file()}
        return {"files": files, "text": text.getvalue().replace(str(tuner.out_dir), device["folder"]),
                "status": outcome.status}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_fleet_tune(cfg: RunConfig, opts: TuneOptions, address: str, per: str, devices: list[str] | None) -> int:
    from infermeter.fleet.devices import discover, select
    from infermeter.fleet.driver import (
        FleetOptions,
        connect,
        device_task_options,
        import_ray,
        model_folder_name,
    )
    from infermeter.results.writer import atomic_write_bytes

    FleetOptions(address=address, per=per, devices=devices)  # the same checks as `infermeter fleet`
    if cfg.gpu_id is not None or cfg.device_label is not None:
        raise BadInput("tune --address: --gpu-id and --device-label do not apply; every device of the cluster "
                       "is searched (--devices to choose)")
    if Path(cfg.model).exists():  # the nodes open the same path (a shared or copied file)
        cfg = replace(cfg, model=os.path.abspath(cfg.model))
    model_dir = Path(cfg.results_dir) / model_folder_name(cfg)
    ray = import_ray()
    connect(ray, address, cfg)
    try:
        devs = select(discover(ray.nodes(), per, cfg.device), devices)
        uploads = {}
        for dev in devs:
            local = model_dir / dev.folder
            if (local / "tune.db").exists() and not cfg.resume:
                raise BadInput(f"{local} already holds a tune (tune.db): --resume continues it, or give another "
                               "--results-dir")
            uploads[dev.label] = {f: (local / f).read_bytes() for f in RESUME_FILES if (local / f).is_file()} \
                if cfg.resume else {}
        print(f"tune: {len(devs)} device(s): {', '.join(d.label for d in devs)}", flush=True)
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()  # the queue lives where the files are written
        queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(here, False)})
        folder_of = {d.label: model_dir / d.folder for d in devs}

        def drain() -> None:
            n = queue.size()
            for label, files in (queue.get_nowait_batch(n) if n else []):
                for rel, data in files.items():
                    atomic_write_bytes(folder_of[label] / rel, data)

        task = ray.remote(tune_device)
        waiting, running, status = list(devs), {}, 0
        while waiting or running:
            busy = {d.node_id for d in running.values() if d.node_id}
            for dev in list(waiting):  # one GPU of a node at a time unless --parallel-gpus
                if dev.gpu_index is not None and not cfg.parallel_gpus and dev.node_id in busy:
                    continue
                waiting.remove(dev)
                busy.add(dev.node_id)
                device = {"label": dev.label, "kind": dev.kind, "gpu_id": dev.gpu_index,
                          "folder": str(model_dir / dev.folder)}
                running[task.options(**device_task_options(dev)).remote(cfg.to_dict(), opts, device,
                                                                        uploads[dev.label], queue)] = dev
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            drain()
            for ref in ready:
                dev = running.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    drain()
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    print(f"infermeter tune: {dev.label}: {str(cause).strip().splitlines()[-1][:300]}; the trials "
                          f"it finished are in {folder_of[dev.label]} (--resume continues)", file=sys.stderr)
                    status = max(status, 1)
                    continue
                for rel, data in out["files"].items():
                    atomic_write_bytes(model_dir / dev.folder / rel, data)
                print(f"{dev.label}: " + out["text"], flush=True)
                status = max(status, out["status"])
        return status
    finally:
        ray.shutdown()

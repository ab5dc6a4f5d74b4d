"""The caller's side of `infermeter fleet`: find the devices, submit one task each, write what streams back.

Rows arrive through a Ray queue living on the caller's node and are written at once with the results
writer of a local run. A task that dies with its node keeps every row it sent; its remaining cells go to
another node holding the same device, or become `failed` rows naming the lost node.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.errors import BadInput, StopSweep
from infermeter.fleet import INSTALL_HINT, PER_CHOICES, RESOURCE_PREFIX
from infermeter.fleet.devices import FleetDevice, discover, holders, select
from infermeter.protocol import CellRow, Done, Planned, RunFacts
from infermeter.results.folder import ResultsFolder
from infermeter.results.run_info import RunInfo
from infermeter.results.writer import atomic_write_bytes, atomic_write_json, clean_for_json, read_results

POLL_S = 0.25
CHECK_NODES_S = 2.0
MAX_ATTEMPTS = 3  # tries per device on different nodes before its remaining cells are failed


@dataclass
class FleetOptions:
    address: str = "local"
    per: str = "accelerator-type"
    devices: list[str] | None = None
    report: bool = True

    def __post_init__(self) -> None:
        if self.per not in PER_CHOICES:
            raise BadInput(f"--per: unknown {self.per!r}; choose from {', '.join(PER_CHOICES)}")


@dataclass
class DeviceRun:
    """One device of the fleet: its results folder on the caller, what is done, where its task runs now."""

    dev: FleetDevice
    folder: ResultsFolder
    skip: set[str]                                     # finished before this fleet run (--resume)
    planned: dict[str, dict] = field(default_factory=dict)  # cell id -> identity of the row
    written: dict[str, str] = field(default_factory=dict)   # cell id -> status, rows written by this run
    node: dict | None = None
    lost: list[str] = field(default_factory=list)
    attempts: int = 0
    ref: object = None
    status: int | None = None
    run_info: RunInfo | None = None  # the node's run.json as last sent

    def remaining(self) -> list[str]:
        return [c for c in self.planned if c not in self.written]


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput(INSTALL_HINT) from None
    return ray


def model_folder_name(cfg: RunConfig) -> str:
    from infermeter.models.registry import resolve_model
    from infermeter.parsing import safe_name
    from infermeter.sweep import model_options

    return safe_name(resolve_model(cfg.model, model_options(cfg, (cfg.input_shapes or [None])[0])).name)


@contextlib.contextmanager
def quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def connect(ray, address: str, cfg: RunConfig) -> None:
    import logging

    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address == "local":
        from infermeter.device import DeviceInfo, cpu_name, nvml_gpus

        resources = {}
        if cfg.device == "cpu" or not nvml_gpus()[0]:  # this machine's CPU is a device when it is the one measured
            resources[RESOURCE_PREFIX + DeviceInfo("cpu", cpu_name()).slug] = 1
        ray.init(address="local", num_cpus=os.cpu_count(), resources=resources, **common)
        return
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and "://" not in address:  # Ray itself retries an absent cluster for minutes
        import socket

        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise BadInput(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                           "`ray start --head`, or use --address local") from None
    try:
        with quiet_stderr():  # Ray's C++ client logs each retry to stderr; the outcome is said in one line
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"--address {address}: cannot join a Ray cluster ({first})") from None


def device_task_options(dev: FleetDevice) -> dict:
    """Ray options of the one task that holds a device: its CPU resource or one GPU of its type, on its node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # Ray sets OMP_NUM_THREADS=1 in a task without CPUs unless it is set: set it empty, and the task
    # drops it, so the sweep's workers get the environment of a local run
    opts: dict = {"num_cpus": 0, "max_retries": 0, "name": f"infermeter-{dev.folder}",
                  "runtime_env": {"env_vars": {"OMP_NUM_THREADS": ""}}}
    if dev.kind == "cpu":
        opts["resources"] = {dev.resource: 1}
    else:
        opts["num_gpus"] = 1
        if dev.accelerator_type != "GPU":
            opts["accelerator_type"] = dev.accelerator_type
    if dev.node_id:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(dev.node_id, soft=False)
    return opts


class Fleet:
    def __init__(self, cfg: RunConfig, opts: FleetOptions):
        if cfg.gpu_id is not None:
            raise BadInput("fleet: --gpu-id does not apply; every GPU of the cluster is a device (--per gpu "
                           "for each one, --devices to choose)")
        if cfg.device_label is not None:
            raise BadInput("fleet: --device-label does not apply; devices are named by the cluster "
                           f"(a CPU node's {RESOURCE_PREFIX}<label> resource, a GPU's accelerator type)")
        if Path(cfg.model).exists():  # the nodes open the same path (a shared or copied file)
            cfg = replace(cfg, model=os.path.abspath(cfg.model))
        self.cfg, self.opts = cfg, opts
        self.model_dir = Path(cfg.results_dir) / model_folder_name(cfg)
        self.runs: list[DeviceRun] = []
        self.out = sys.stdout
        self._task = None

    # ---- writing ----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.cfg.quiet:
            print(text, file=self.out, flush=True)

    @staticmethod
    def warn(text: str) -> None:
        """What went wrong with a device or node: on stderr, even with --quiet."""
        print(f"infermeter fleet: {text}", file=sys.stderr, flush=True)

    def write_row(self, dr: DeviceRun, row: dict, files: dict[str, bytes] | None = None) -> None:
        for rel, data in (files or {}).items():
            atomic_write_bytes(dr.folder.out_dir / rel, data)  # a row in results.csv always has its files
        row = dr.folder.write_row(row)
        dr.written[row["cell_id"]] = row["status"]
        tput = row.get("throughput_items_s")
        self.say(f"{dr.dev.label}: {row['engine']} {row['precision']} {row['scenario']} b{row['batch_size']} "
                 f"{row['status']}" + (f" {float(tput):,.1f} items/s" if tput not in (None, "") else "")
                 + (f" ({row['error']})" if row.get("error") and row["status"] != "ok" else ""))

    def write_run_json(self, dr: DeviceRun, info: RunInfo | None = None) -> None:
        """The node's run.json (its fingerprint, engines, telemetry), with where the fleet ran it."""
        if info is not None:
            dr.run_info = info
        if dr.run_info is None:
            return
        dr.folder.run_id = dr.run_info.run_id or dr.folder.run_id  # each attempt is a run of its own
        info = replace(dr.run_info, command=self.cfg.command or dr.run_info.command,
                       fleet={"address": self.opts.address, "per": self.opts.per, "device": asdict(dr.dev),
                              "node": dr.node, "lost_nodes": dr.lost})
        dr.folder.write_run_json(info.to_dict())

    def fail_remaining(self, dr: DeviceRun, why: str) -> None:
        for cid in dr.remaining():
            row = dict(dr.planned[cid])
            row.update({"status": "failed", "error": why, "check_status": f"not-run: {why}"})
            self.write_row(dr, row)

    # ---- the cluster --------------------------------------------------------------------------------
    def submit(self, ray, dr: DeviceRun, queue) -> None:
        from infermeter.fleet.node import run_device

        dev = dr.dev
        opts = device_task_options(dev)
        same_node = [d for d in self.runs if d.dev.node_id and d.dev.node_id == dev.node_id and d.dev.kind == "cuda"]
        cfg = replace(self.cfg, parallel_gpus=self.cfg.parallel_gpus and dev.kind == "cuda" and len(same_node) > 1)
        device = {"label": dev.label, "kind": dev.kind, "gpu_id": dev.gpu_index}
        skip = sorted(dr.skip | set(dr.written))
        dr.attempts += 1
        dr.node = None
        if self._task is None:
            self._task = ray.remote(run_device)
        dr.ref = self._task.options(**opts).remote(cfg.to_dict(), device, skip, queue)

    def drain(self, queue, by_label: dict[str, DeviceRun]) -> None:
        while True:
            n = queue.size()
            if not n:
                return
            for envelope in queue.get_nowait_batch(n):
                dr, msg = by_label[envelope.label], envelope.message
                if isinstance(msg, Planned):
                    dr.node = dict(msg.node)
                    dr.planned.update(msg.cells)
                elif isinstance(msg, RunFacts):  # a new attempt's fingerprint, or news of its engines
                    self.write_run_json(dr, msg.info)
                elif isinstance(msg, CellRow):
                    self.write_row(dr, msg.row, msg.files)
                elif isinstance(msg, Done):
                    for rel, data in msg.files.items():
                        atomic_write_bytes(dr.folder.out_dir / rel, data)
                    self.write_run_json(dr)

    def lost(self, ray, dr: DeviceRun, error: Exception, queue) -> None:
        """The device's task died with its node (or could not be placed): move it or fail what is left."""
        node = dr.node or {}
        where = f"node {node.get('host', '?')} ({node.get('node_id', '?')[:8]})" if node else "its node"
        if node:
            dr.lost.append(node["node_id"])
            self.write_run_json(dr)  # run.json names the lost node
        others = holders(ray.nodes(), dr.dev, exclude=set(dr.lost))
        kind = type(error).__name__
        if others and dr.attempts < MAX_ATTEMPTS:
            self.warn(f"{dr.dev.label}: {where} lost ({kind}); {len(dr.remaining()) or 'its'} remaining cell(s) "
                     f"move to another node of this device")
            self.submit(ray, dr, queue)
            return
        why = f"{where} lost mid-sweep ({kind}); no other node of device {dr.dev.label} to take its cells"
        self.warn(f"{dr.dev.label}: {why}")
        if not dr.planned:
            self.warn(f"{dr.dev.label}: its sweep never started; no rows (run again or --resume)")
        self.fail_remaining(dr, why)
        dr.status, dr.ref = 1, None

    def run(self) -> int:
        ray = import_ray()
        connect(ray, self.opts.address, self.cfg)
        try:
            return self._run(ray)
        finally:
            ray.shutdown()

    def _run(self, ray) -> int:
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        devices = select(discover(ray.nodes(), self.opts.per, self.cfg.device), self.opts.devices)
        for dev in devices:
            folder = ResultsFolder(self.model_dir / dev.folder, run_id="")
            self.runs.append(DeviceRun(dev, folder, folder.open(self.cfg.resume)))
        self.say(f"fleet: {len(devices)} device(s): {', '.join(d.label for d in devices)}")
        here = ray.get_runtime_context().get_node_id()  # the queue lives where the files are written
        queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(here, False)})
        by_label = {dr.dev.label: dr for dr in self.runs}
        waiting = list(self.runs)
        last_check = time.monotonic()
        while True:
            busy_nodes = {dr.dev.node_id for dr in self.runs if dr.ref is not None and dr.dev.node_id}
            for dr in list(waiting):  # one GPU of a node at a time unless --parallel-gpus
                if dr.dev.gpu_index is not None and not self.cfg.parallel_gpus and dr.dev.node_id in busy_nodes:
                    continue
                waiting.remove(dr)
                busy_nodes.add(dr.dev.node_id)
                self.submit(ray, dr, queue)
            active = [dr for dr in self.runs if dr.ref is not None]
            if not active and not waiting:
                break
            ready, _ = ray.wait([dr.ref for dr in active], num_returns=1, timeout=POLL_S)
            self.drain(queue, by_label)
            for dr in active:
                if dr.ref not in ready:
                    continue
                try:
                    dr.status, dr.ref = ray.get(dr.ref), None
                except ray.exceptions.RayTaskError as e:  # the sweep itself stopped (bad input on that node)
                    self.drain(queue, by_label)
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    why = f"{(dr.node or {}).get('host', 'node')}: {str(cause).strip().splitlines()[-1][:300]}"
                    self.warn(f"{dr.dev.label}: {why}")
                    self.fail_remaining(dr, why)
                    dr.status, dr.ref = 1, None
                except ray.exceptions.RayError as e:
                    self.drain(queue, by_label)
                    self.lost(ray, dr, e, queue)
            if time.monotonic() - last_check > CHECK_NODES_S:  # a task no live node can take would wait forever
                last_check = time.monotonic()
                nodes = ray.nodes()
                for dr in self.runs:
                    if dr.ref is not None and dr.node is None and not holders(nodes, dr.dev, exclude=set(dr.lost)):
                        ray.cancel(dr.ref, force=True)
        self.drain(queue, by_label)
        if self.cfg.json_path:
            rows = [r for dr in self.runs for r in read_results(dr.folder.csv.path)]
            atomic_write_json(self.cfg.json_path, {"results_dir": str(self.model_dir),
                                                   "rows": [clean_for_json(r) for r in rows]})
        statuses = [dr.status or 0 for dr in self.runs]
        bad = any(s in ("failed", "mismatch") for dr in self.runs for s in dr.written.values())
        return max(statuses + [1 if bad else 0])

    def folders(self) -> list[str]:
        return [str(dr.folder.out_dir) for dr in self.runs if read_results(dr.folder.csv.path)]


def run_fleet(cfg: RunConfig, opts: FleetOptions) -> tuple[int, Fleet]:
    """Python API and `infermeter fleet`: sweep every device, then compare and report over their folders."""
    fleet = Fleet(cfg, opts)
    try:
        status = fleet.run()
    except StopSweep as e:  # the caller's disk is full: finished rows are intact
        raise BadInput(str(e)) from None
    folders = fleet.folders()
    if folders and opts.report:
        from infermeter.analysis.compare import compare_main
        from infermeter.analysis.report import report_main

        compare_main(folders, str(fleet.model_dir / "fleet_compare.xlsx"), metric="throughput_items_s")
        report_main(folders, str(fleet.model_dir / "report"))
    return status, fleet

"""A real Ray cluster on this machine for the fleet tests: a head and worker nodes started with `ray start`,
each in its own process group, temp dir and ports, and nothing left behind when it stops."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# a lost node is noticed in about a second, not the default fifteen
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "300", "RAY_health_check_failure_threshold": "3",
                          "RAY_health_check_initial_delay_ms": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports(head: bool) -> list[str]:
    """Every port a node binds, chosen free: several nodes share this host."""
    names = ["--node-manager-port", "--object-manager-port", "--metrics-export-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
    if head:
        names += ["--ray-client-server-port", "--dashboard-port"]
    out = []
    for n in names:
        out += [n, str(free_port())]
    return out + ["--min-worker-port", "0", "--max-worker-port", "0"]


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    resources: dict = field(default_factory=dict)

    def kill(self) -> None:
        """Lose the node: every process of it at once (SIGKILL to its process group and to its Ray workers)."""
        _kill_tree(self.proc)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    pids = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:  # Ray starts its workers in sessions of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


class Cluster:
    def __init__(self, root: Path, num_cpus: int = 1):
        self.root = Path(root)
        # short: Ray's unix sockets live below it, and socket paths are limited to 107 bytes
        self.temp = Path(tempfile.mkdtemp(prefix="imray-", dir="/tmp"))
        self.num_cpus = num_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []
        # the cluster's own token: nothing read from or written to ~/.ray; and its own TMPDIR, so the
        # scratch folders of tasks killed with their node go when the cluster does
        (self.temp / "tmp").mkdir()
        self.env = {**os.environ, **FAST_FAILURE_DETECTION, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32), "TMPDIR": str(self.temp / "tmp")}

    def _start(self, name: str, args: list[str], resources: dict, head: bool) -> Node:
        log = self.root / f"{name}.log"
        cmd = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.num_cpus),
               "--num-gpus", "0", "--disable-usage-stats",
               # a temp dir per node: nodes on one host would otherwise race for the same socket names
               "--temp-dir", str(self.temp / name), *_ports(head), *args]
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        node = Node(name, proc, log, resources)
        self.nodes.append(node)
        return node

    def start_head(self) -> Node:
        return self._start("head", ["--head", "--port", str(self.port), "--include-dashboard=false"], {}, head=True)

    def add_worker(self, name: str, resources: dict) -> Node:
        return self._start(name, ["--address", self.address], resources, head=False)

    def wait_ready(self, nodes: list[Node], timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while "Ray runtime started" not in node.log.read_text(errors="replace"):
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray node {node.name} did not start:\n{node.log.read_text()[-3000:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _kill_tree(node.proc)
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Processes still running from this cluster (their command line names its temp dir)."""
        import psutil

        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(self.temp) in cmd or f":{self.port}" in cmd:
                out.append(f"{p.info['pid']} {cmd[:120]}")
        return out

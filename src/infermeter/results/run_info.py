"""run.json as one record: written from a RunInfo and read back into one, by the sweep, the fleet and the
analysis alike, so a key the writer stops writing or a reader expects but no writer writes shows up here.

The fingerprint's parts (host, GPU, packages) and each engine's facts stay mappings: their keys are what the
libraries report. What a reader looks up by name is a field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class DeviceFacts:
    """The device the run measured (results.metadata.fingerprint, from device.DeviceInfo)."""

    kind: str  # cpu | cuda
    name: str  # the CPU model or GPU name
    slug: str  # the results folder's name for it
    gpu_id: int | None = None  # NVML index
    uuid: str | None = None  # the GPU board's UUID
    worker_cuda_visible_devices: str | None = None  # what the worker was given (GPU-<uuid>)
    mig: bool = False
    selection: str = ""  # how the board was chosen (CUDA_VISIBLE_DEVICES already set, ...)


@dataclass
class RunInfo:
    """Everything run.json holds, one field per top-level key."""

    run_id: str
    created_at: str
    infermeter: dict  # version, git_commit
    command: str
    device: DeviceFacts
    host: dict  # cpu, cores, memory, os, python, hostname
    gpu: dict | None  # driver, cuda_driver (None on a CPU run)
    packages: dict  # distribution -> version (None: not installed)
    warnings: list  # installs that silently change what runs
    env: dict  # the environment variables that change what runs
    device_label: str  # the name results and reports use for the device (--device-label or its name)
    parallel_gpus: bool = False
    config: dict = field(default_factory=dict)  # RunConfig.to_dict()
    engines: dict = field(default_factory=dict)  # engine/precision/shape -> versions, settings, check
    groups: dict = field(default_factory=dict)  # engine group -> cells, how it ended, rows, telemetry facts
    artifacts: dict = field(default_factory=dict)  # artifact facts (hashes, exports)
    telemetry: dict | None = None  # sources, idle baseline
    previous_runs: list = field(default_factory=list)  # earlier runs into the same folder
    fleet: dict | None = None  # `infermeter fleet`: the cluster address, the node that ran it, lost nodes

    @property
    def label(self) -> str:
        return self.device_label or self.device.name

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.fleet is None:
            del out["fleet"]
        return out

    @classmethod
    def from_dict(cls, doc: dict) -> RunInfo:
        """From run.json's mapping. A key that is not a field is refused: writer and readers share this record."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"run.json keys RunInfo does not declare: {', '.join(unknown)}")
        device = doc.get("device") or {}
        return cls(**{**doc, "device": device if isinstance(device, DeviceFacts) else DeviceFacts(**device)})

    @classmethod
    def load(cls, path: str | Path) -> RunInfo:
        return cls.from_dict(json.loads(Path(path).read_text()))

"""What the sweep and a worker process send each other, typed: the job (pickled as the process's
argument) and the messages back over a one-way pipe. Frozen, so neither side edits what it was given.

A worker sends, in order: Info (facts for run.json), then per cell CellStart (the parent's per-cell
timeout starts) and CellRow; at the end Done. Instead of the rest it may send GroupFailed (the session
could not be built or checked: every remaining cell fails with that error), BadInputFound (the run must
stop: one line for the user) or DiskFull (a result file could not be written: the sweep stops with every
finished row intact).

A fleet node's sweep reports to the caller with the same messages, each wrapped in FromDevice (which device
it measures): Planned first (the cells it will run, and where), then RunFacts whenever its run.json changes,
CellRow per cell (with the cell's files, which the caller writes) and Done (with the sweep's logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infermeter.plan import Cell

if TYPE_CHECKING:
    from infermeter.config import RunConfig
    from infermeter.device import DeviceInfo
    from infermeter.models.base import ModelOptions
    from infermeter.results.run_info import RunInfo


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs: which model and device, where results go, and what to do there."""

    kind: str  # "prepare": build the model's artifacts; "engine": build one session and measure its cells
    config: RunConfig
    model: str  # as the user named it; resolved again in the worker with model_options
    model_options: ModelOptions
    device: DeviceInfo
    env: dict[str, str]  # set before any framework import (CUDA_VISIBLE_DEVICES etc.)
    run_id: str
    device_label: str
    out_dir: str
    artifact_kinds: tuple[str, ...] = ()  # prepare: what the model's builder makes
    engine: str = ""  # engine: the engine, precision and cells of one group
    precision: str = ""
    cells: tuple[Cell, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("prepare", "engine"):
            raise ValueError(f"unknown job kind {self.kind!r}")
        if self.kind == "engine" and not (self.engine and self.precision and self.cells):
            raise ValueError("an engine job names its engine, precision and at least one cell")


@dataclass(frozen=True)
class Info:
    """Facts for run.json: the artifacts' (prepare), or one session's settings and check, and telemetry."""

    artifacts: dict | None = None
    engine: dict = field(default_factory=dict)  # engine_key -> {settings, build_s, load_s, check}
    telemetry: dict | None = None


@dataclass(frozen=True)
class CellStart:
    cell_id: str


@dataclass(frozen=True)
class CellRow:
    row: dict  # the finished cell's result row
    # fleet: the cell's files (latency/, power/, loadgen/) by path in the device folder; a local worker writes its own
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupFailed:
    error: str


@dataclass(frozen=True)
class BadInputFound:
    message: str


@dataclass(frozen=True)
class DiskFull:
    what: str


@dataclass(frozen=True)
class Done:
    files: dict[str, bytes] = field(default_factory=dict)  # fleet: the sweep's logs/, by path in the device folder


# ---- fleet only --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """The cells a node's sweep will run (their identity rows, failed by the caller if the node is lost)."""

    cells: dict[str, dict]
    node: dict  # where it runs: node_id, host, pid, nice


@dataclass(frozen=True)
class RunFacts:
    """The node's run.json as it now stands (fingerprint, engines, telemetry)."""

    info: RunInfo


@dataclass(frozen=True)
class FromDevice:
    """A message of one device's sweep on its node, as the caller's queue carries it."""

    label: str
    message: Message


Message = Info | CellStart | CellRow | GroupFailed | BadInputFound | DiskFull | Done | Planned | RunFacts

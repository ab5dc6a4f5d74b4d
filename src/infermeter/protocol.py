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

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from infermeter.plan import Cell

if TYPE_CHECKING:
    from infermeter.config import RunConfig
    from infermeter.device import DeviceInfo
    from infermeter.models.base import ModelOptions
    from infermeter.results.run_info import RunInfo
    from infermeter.telemetry.records import TelemetryFacts


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
class ArtifactFacts:
    """A prepare worker's facts for run.json `artifacts[<input shape>]`, one flat mapping as before."""

    built: dict  # the model builder's facts (export tool, opset, passes): its keys are what each builder reports
    built_s: dict  # artifact -> seconds to build it (ArtifactStore.built)
    reference: dict = field(default_factory=dict)  # its spread over the check inputs (check.reference_problem)
    reference_uninformative: str | None = None  # --check warn: why the cells are timed unchecked

    def to_dict(self) -> dict:
        why = {"reference_uninformative": self.reference_uninformative} if self.reference_uninformative else {}
        return {**self.built, **self.reference, **why, "built_s": dict(self.built_s)}


@dataclass(frozen=True)
class EngineFacts:
    """One session's facts for run.json `engines[<engine/precision/shape>]`."""

    settings: dict  # Engine.info: its keys are what each engine reports
    build_s: float | None
    load_s: float | None
    shape_mode: str  # static | dynamic
    compile_s: dict[str, float]  # batch size (text: a JSON key) -> the compile of its artifact
    check: dict  # the gate's results.csv fields (CheckResult.row_fields, keyed by column) and its detail

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Info:
    """Facts for run.json: the artifacts' (prepare), or one session's settings and check, and telemetry."""

    artifacts: ArtifactFacts | None = None
    engine: dict[str, EngineFacts] = field(default_factory=dict)  # engine_key -> its facts
    telemetry: TelemetryFacts | None = None


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

"""Run a sweep: plan the cells, build the model's artifacts, hand each engine group to a worker, and write
each row as its cell ends.

The parts: results/folder.py owns the files (results.csv, run.json, resume, the disk-full policy);
supervisor.py owns the worker processes (spawn, timeouts, a crash becoming a failed cell); this module
decides what runs in which order and writes the rows no worker measured (skipped, failed).
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import uuid
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.device import DeviceInfo, resolve_device, worker_env
from infermeter.errors import BadInput, StopSweep
from infermeter.models.base import ModelOptions
from infermeter.models.registry import resolve_model
from infermeter.parsing import parse_input_ranges, safe_name
from infermeter.plan import Cell, Group, engine_key, plan
from infermeter.protocol import BadInputFound, CellRow, DiskFull, GroupFailed, Info, Message, WorkerJob
from infermeter.results.folder import ResultsFolder
from infermeter.results.metadata import fingerprint
from infermeter.results.run_info import RunInfo
from infermeter.results.schema import ACCURACY, CHECK, CellIdentity
from infermeter.supervisor import WorkerSupervisor


def model_options(c: RunConfig, shapes) -> ModelOptions:
    return ModelOptions(seed=c.seed, weights=c.weights, image=c.image, input_shapes=shapes, seq_len=c.seq_len,
                        check_samples=c.check_samples, extra=dict(c.model_extra), inputs=c.inputs,
                        input_ranges=parse_input_ranges(c.input_ranges))


class Sweep:
    def __init__(self, cfg: RunConfig, skip_cells=(), on_row=None):
        """skip_cells: cell ids not to run (done elsewhere); on_row(row): called after each row is written."""
        self.cfg = cfg
        self.skip_cells = set(skip_cells)
        self.on_row = on_row
        self.run_id = uuid.uuid4().hex[:12]
        if not (cfg.gpu_id is None or isinstance(cfg.gpu_id, int)):
            raise BadInput(f"--gpu-id {cfg.gpu_id}: one Sweep measures one device (run_sweeps expands lists)")
        self.dev: DeviceInfo = resolve_device(cfg.device, cfg.gpu_id)
        if self.dev.kind == "cuda" and cfg.worker_memory_limit_mb:
            raise BadInput("--worker-memory-limit-mb limits address space (RLIMIT_AS), which CUDA start-up "
                           "exceeds whatever the model needs; it applies to CPU runs only")
        self.device_label = cfg.device_label or self.dev.name
        shape_sets = cfg.input_shapes or [None]
        self.models = [resolve_model(cfg.model, self.model_options(s)) for s in shape_sets]
        self.groups: list[Group] = plan(cfg, self.models, self.dev.kind)
        slug = safe_name(cfg.device_label) if cfg.device_label else self.dev.slug
        self.folder = ResultsFolder(Path(cfg.results_dir) / safe_name(self.models[0].name) / slug, self.run_id,
                                    cfg.json_path)
        self.supervisor = WorkerSupervisor(self.folder.logs_dir, cfg.timeout_s, cfg.group_timeout_s)
        # groups: one entry per engine group run (its cells, how it ended, its log, its telemetry facts);
        # telemetry: the last group's, as before
        self.info: dict = {"engines": {}, "groups": {}, "artifacts": {}, "telemetry": None}
        self._group: dict | None = None  # the entry of the group whose worker is talking
        self._writing = False              # a row is being written: a stop signal waits for it
        self._stop_signal: str | None = None
        self.progress = None

    @property
    def out_dir(self) -> Path:
        return self.folder.out_dir

    @property
    def rows(self) -> list[dict]:
        return self.folder.rows

    def model_options(self, shapes) -> ModelOptions:
        return model_options(self.cfg, shapes)

    @property
    def driver(self) -> str | None:
        """The GPU driver version from run.json's fingerprint; None on a CPU (no device driver runs it)."""
        return ((getattr(self, "fp", None) or {}).get("gpu") or {}).get("driver")

    # ---- rows ---------------------------------------------------------------------------------
    def emit(self, row: dict) -> None:
        # run-wide identity the worker does not know: the GPU driver (NVML; a CPU run has none) and
        # how many GPUs ran at once
        self._writing = True
        try:
            row = self.folder.write_row({**row, "parallel_gpus": self.cfg.parallel_gpus, "driver": self.driver})
        finally:
            self._writing = False
        if self._stop_signal == "pending":  # a stop signal came while the row was written
            self._stop_signal = "stopping"
            raise KeyboardInterrupt
        if self.on_row:
            self.on_row(row)
        if self.progress:
            self.progress(row)

    # ---- stopping -----------------------------------------------------------------------------
    def _on_stop_signal(self, signum, _frame) -> None:
        """SIGTERM (a time limit around the sweep ran out) or SIGINT: stop, never in the middle of a row."""
        if self._stop_signal is not None:
            return  # already stopping: the rows of the unfinished cells are being written
        if self._writing:
            self._stop_signal = "pending"
            return
        self._stop_signal = "stopping"
        raise KeyboardInterrupt

    def _catch_stop_signals(self) -> dict:
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._on_stop_signal)
            except ValueError:  # not the main thread: whoever runs the sweep handles its signals
                break
        return previous

    def row_counts(self, cell_ids) -> dict[str, int]:
        """How many rows of each status this run wrote for these cells."""
        counts: dict[str, int] = {}
        for r in self.rows:
            if r["cell_id"] in cell_ids and r["run_id"] == self.run_id:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
        return counts

    def fail_unfinished(self, todo, why: str) -> None:
        """A failed row for every cell of this run that has none, so each engine group leaves its rows."""
        done = {r["cell_id"] for r in self.rows if r["run_id"] == self.run_id}
        for g, cells in todo:
            left = [c for c in cells if c.cell_id not in done]
            for c in left:
                self.emit(self.failed_row(g, c, why))
            entry = self.info["groups"].get(engine_key(g.engine, g.precision, g.model.shape_tag()))
            if entry is None and left:
                self.note_group(g, left, why, "failed")
            elif entry is not None:
                entry["rows"] = self.row_counts({c.cell_id for c in cells})

    def write_run_json(self) -> None:
        info = RunInfo.from_dict({"run_id": self.run_id, **self.fp, "device_label": self.device_label,
                                  "parallel_gpus": self.cfg.parallel_gpus, "config": self.cfg.to_dict(),
                                  **self.info})
        self.folder.write_run_json(info.to_dict())

    def skipped_row(self, group: Group, cell: Cell, reason: str) -> dict:
        ident = CellIdentity.of(run_id=self.run_id, cell=cell, model=group.model, engine=group.engine,
                                precision=group.precision, dev=self.dev, device_label=self.device_label, io=self.cfg.io,
                                shape_mode=self.cfg.shape_mode)
        return ident.row(status="skipped", error=reason, check_status=f"not-run: {reason}")

    def failed_row(self, group: Group, cell: Cell, error: str) -> dict:
        row = self.skipped_row(group, cell, error)
        row["status"] = "failed"
        check = self.info["engines"].get(engine_key(group.engine, group.precision, group.model.shape_tag()), {})
        if check.get("check"):  # the session passed its gate before the cell died
            row.update({k: check["check"].get(k) for k in CHECK + ACCURACY})
        return row

    # ---- workers ------------------------------------------------------------------------------
    def job(self, kind: str, model, **fields) -> WorkerJob:
        return WorkerJob(kind=kind, config=self.cfg, model=self.cfg.model, model_options=model.options,
                         device=self.dev, env=worker_env(self.dev), run_id=self.run_id,
                         device_label=self.device_label, out_dir=str(self.out_dir), **fields)

    def on_message(self, msg: Message) -> None:
        """What a worker says, applied: rows written, facts kept for run.json, stops raised."""
        if isinstance(msg, CellRow):
            self.emit(msg.row)
        elif isinstance(msg, Info):  # run.json holds the typed facts as their mappings
            self.info["engines"].update({key: facts.to_dict() for key, facts in msg.engine.items()})
            if msg.telemetry is not None:
                self.info["telemetry"] = msg.telemetry.to_dict()
                if self._group is not None:
                    self._group["telemetry"] = self.info["telemetry"]
        elif isinstance(msg, BadInputFound):
            raise StopSweep(msg.message)
        elif isinstance(msg, DiskFull):
            raise self.folder.disk_full(msg.what)

    def prepare_model(self, model, kinds: set[str]) -> str | None:
        """Build artifacts in the model's builder process. Returns an error line, or None."""
        failed: list[str] = []

        def on_message(msg: Message) -> None:
            if isinstance(msg, Info) and msg.artifacts is not None:
                self.info["artifacts"][model.shape_tag()] = msg.artifacts.to_dict()
                why = msg.artifacts.reference_uninformative
                if why:  # warn mode: timed, not checked; the rows say so too
                    print(f"infermeter: warning: {model.name}: the correctness check cannot run, reference outputs "
                          f"identical for every input ({why}); cells are timed unchecked (--check strict refuses "
                          "such a model)", file=sys.stderr)
            elif isinstance(msg, BadInputFound):
                raise StopSweep(f"{model.name}: {msg.message}")
            elif isinstance(msg, GroupFailed):
                failed.append(msg.error)

        end = self.supervisor.run(self.job("prepare", model, artifact_kinds=tuple(sorted(kinds))),
                                  f"prepare-{model.shape_tag()}", on_message)
        if failed:
            return f"building artifacts failed: {failed[0]}"
        return f"building artifacts failed: {end.cause}" if end.cause else None

    def note_group(self, group: Group, cells: list[Cell], ended: str, status: str) -> None:
        """run.json's entry for a group no worker ran (skipped, or its artifacts could not be built)."""
        self.info["groups"][engine_key(group.engine, group.precision, group.model.shape_tag())] = {
            "engine": group.engine, "precision": group.precision, "input_shape": group.model.shape_tag(),
            "cells": sorted(c.cell_id for c in cells), "ended": ended, "rows": {status: len(cells)}, "log": None,
            "telemetry": None}

    def run_group(self, group: Group, cells: list[Cell]) -> None:
        job = self.job("engine", group.model, engine=group.engine, precision=group.precision, cells=tuple(cells))
        name = f"{group.engine}-{group.precision}-{group.model.shape_tag()}"
        ids = {c.cell_id for c in cells}
        self._group = self.info["groups"][engine_key(group.engine, group.precision, group.model.shape_tag())] = {
            "engine": group.engine, "precision": group.precision, "input_shape": group.model.shape_tag(),
            "cells": sorted(ids), "ended": "running", "telemetry": None}
        cause: str | None = "the sweep stopped during this group"
        try:
            cause = self.supervisor.run_cells(job, name, self.on_message,
                                              lambda cell, why: self.emit(self.failed_row(group, cell, why)))
        finally:
            entry, self._group = self._group, None
            entry["rows"] = self.row_counts(ids)
            log = self.supervisor.logs_dir / f"{safe_name(name)}.log"
            entry["log"] = str(log.relative_to(self.out_dir)) if log.exists() else None  # kept only non-empty
            entry["ended"] = "finished" if cause is None else cause

    # ---- the whole sweep ------------------------------------------------------------------------
    def run(self) -> int:
        done = self.skip_cells | self.folder.open(self.cfg.resume)
        self.fp = fingerprint(self.dev, self.cfg.command)
        self.write_run_json()
        todo = [(g, [c for c in g.cells if c.cell_id not in done]) for g in self.groups]
        todo = [(g, cells) for g, cells in todo if cells]
        from infermeter.progress import SweepProgress

        previous = self._catch_stop_signals()
        try:
            with SweepProgress(sum(len(c) for _, c in todo), quiet=self.cfg.quiet) as progress:
                self.progress = progress.advance
                self._run_groups(todo, progress)
        except KeyboardInterrupt:
            self._stop_signal = "stopping"
            self.fail_unfinished(todo, "the sweep was stopped (SIGTERM or Ctrl-C: a time limit around it ran out, "
                                       "or it was asked to stop) before this cell finished")
            self.write_run_json()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.write_run_json()
        bad = [r for r in self.rows if r["status"] in ("failed", "mismatch")]
        return 1 if bad else 0

    def _run_groups(self, todo, progress) -> None:
        for g, cells in todo:
            if g.skip_reason:
                for c in cells:
                    self.emit(self.skipped_row(g, c, g.skip_reason))
                self.note_group(g, cells, f"skipped: {g.skip_reason}", "skipped")
        runnable = [(g, cells) for g, cells in todo if not g.skip_reason]
        for model in self.models:
            mine = [(g, cells) for g, cells in runnable if g.model is model]
            if not mine:
                continue
            progress.status(f"building {model.name} {model.shape_tag()} artifacts")
            err = self.prepare_model(model, artifact_kinds(model, [g.engine for g, _ in mine]))
            for g, cells in mine:
                if err:
                    for c in cells:
                        self.emit(self.failed_row(g, c, err))
                    self.note_group(g, cells, err, "failed")
                    continue
                progress.status(f"{g.engine} {g.precision}")
                self.run_group(g, cells)
                self.write_run_json()


def artifact_kinds(model, engine_names: list[str] | None = None) -> set[str]:
    """What the model's builder produces: the ONNX export and the reference always; the Keras file and
    SavedModel for a keras-source model when an engine takes them (every kind when no engine is named)."""
    from infermeter.engines import load_all

    kinds = {"reference", "onnx"}
    engines = load_all()
    if "keras" in model.sources and (engine_names is None
                                     or any("keras" in engines[e].sources for e in engine_names)):
        kinds |= {"keras", "savedmodel"}
    # an engine that also reads the SavedModel (OpenVINO's TF frontend) gets it where TensorFlow can build it
    elif "keras" in model.sources and importlib.util.find_spec("tensorflow") is not None and any(
            "keras" in engines[e].optional_sources for e in engine_names):
        kinds |= {"keras", "savedmodel"}
    return kinds


def prepare_only(cfg: RunConfig) -> dict:
    """Build every artifact of the model (all input-shape experiments) without measuring anything."""
    sweep = Sweep(cfg)  # its results folder is not opened: preparing measures nothing, so writes no results
    built = {}
    try:
        for model in sweep.models:
            err = sweep.prepare_model(model, artifact_kinds(model))
            if err:
                raise BadInput(f"{model.name} {model.shape_tag()}: {err}")
            from infermeter.artifacts import ArtifactStore

            built[model.shape_tag()] = str(ArtifactStore(cfg.cache_dir, model.key()).root)
    except StopSweep as e:
        raise BadInput(str(e)) from None
    return built


def run_sweep(cfg: RunConfig) -> tuple[int, Sweep]:
    """Python API: run a sweep and return (exit status, the Sweep with .rows and .out_dir)."""
    sweep = Sweep(cfg)
    try:
        status = sweep.run()
    except StopSweep as e:
        raise BadInput(str(e)) from None
    return status, sweep

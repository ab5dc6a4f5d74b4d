"""Run a sweep: plan the cells, build artifacts, run each engine group in its own worker process,
stream rows to durable files as each cell ends, and summarise.

A worker that crashes, is killed or outlives --timeout costs only the cell in progress: that cell
becomes a 'failed' row naming the cause and the rest of its group continues in a fresh worker.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from infermeter.config import RunConfig
from infermeter.device import DeviceInfo, resolve_device, worker_env
from infermeter.errors import BadInput
from infermeter.models.base import ModelOptions
from infermeter.models.registry import resolve_model
from infermeter.parsing import safe_name
from infermeter.plan import Group, engine_key, plan
from infermeter.results.metadata import fingerprint
from infermeter.results.schema import empty_row, normalise
from infermeter.results.writer import ResultsCsv, atomic_write_json, clean_for_json, read_results

POLL_S = 0.1


class StopSweep(Exception):
    """The sweep cannot go on (bad input discovered by a worker, disk full): one line, exit 2."""


def signal_cause(code: int | None) -> str:
    if code is None:
        return "worker vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = {"SIGSEGV": "segmentation fault", "SIGABRT": "aborted", "SIGBUS": "bus error",
                "SIGKILL": "killed (SIGKILL; the kernel's out-of-memory killer does this)",
                "SIGFPE": "floating-point exception", "SIGILL": "illegal instruction"}.get(name, "killed")
        return f"worker {what} ({name})"
    return f"worker exited with code {code}"


def _last_log_line(log_path: Path) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln or "Fatal" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""


def model_options(c: RunConfig, shapes) -> ModelOptions:
    return ModelOptions(seed=c.seed, weights=c.weights, image=c.image, input_shapes=shapes, seq_len=c.seq_len,
                        check_samples=c.check_samples, extra=dict(c.model_extra))


def finished_cells(results_csv) -> set[str]:
    """Cells --resume does not run again: those with a result (a failed cell is tried again)."""
    return {r["cell_id"] for r in read_results(results_csv) if r.get("status") in ("ok", "mismatch", "skipped")}


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
        self.out_dir = Path(cfg.results_dir) / safe_name(self.models[0].name) / slug
        self.rows: list[dict] = []
        self.info: dict = {"engines": {}, "artifacts": {}, "telemetry": None}
        self.progress = None

    def model_options(self, shapes) -> ModelOptions:
        return model_options(self.cfg, shapes)

    # ---- output -------------------------------------------------------------------------------
    def open_results(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise BadInput(f"results folder {self.out_dir} cannot be written: {e.strerror or e}") from None
        self.csv = ResultsCsv(self.out_dir / "results.csv")
        self.done = set(self.skip_cells)
        if self.cfg.resume:
            self.done |= finished_cells(self.csv.path)

    def write_run_json(self) -> None:
        path = self.out_dir / "run.json"
        previous = []
        if path.exists():
            import json

            try:
                old = json.loads(path.read_text())
                previous = old.get("previous_runs", []) + [{k: old.get(k) for k in ("run_id", "created_at", "command")}]
            except (ValueError, OSError):
                previous = []
        doc = {"run_id": self.run_id, **self.fp, "device_label": self.device_label,
               "parallel_gpus": self.cfg.parallel_gpus, "config": self.cfg.to_dict(),
               **self.info, "previous_runs": previous[-20:]}
        try:
            atomic_write_json(path, doc)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise self.disk_full(e.strerror) from None
            raise

    def emit(self, row: dict) -> None:
        row = normalise({**row, "parallel_gpus": self.cfg.parallel_gpus})
        try:
            self.csv.append(row)
            self.rows.append(row)
            if self.cfg.json_path:
                atomic_write_json(self.cfg.json_path, {"run_id": self.run_id, "results_dir": str(self.out_dir),
                                                       "rows": [clean_for_json(r) for r in self.rows]})
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise self.disk_full(e.strerror) from None
            raise StopSweep(f"cannot write results in {self.out_dir}: {e}") from None
        if self.on_row:
            self.on_row(row)
        if self.progress:
            self.progress(row)

    def disk_full(self, what: str) -> StopSweep:
        return StopSweep(f"disk full writing results in {self.out_dir} ({what}): stopped; "
                         f"{len(self.rows)} finished cell(s) are intact in results.csv; free space, then --resume")

    def skipped_row(self, group: Group, cell: dict, reason: str) -> dict:
        row = empty_row()
        row.update({"run_id": self.run_id, "cell_id": cell["cell_id"], "model": group.model.name,
                    "weights": group.model.weights_id(), "input_shape": group.model.shape_tag(),
                    "engine": group.engine, "precision": group.precision, "device": self.dev.kind,
                    "device_name": self.device_label, "gpu_id": self.dev.gpu_id, "scenario": cell["scenario"],
                    "batch_size": cell["batch_size"], "streams": cell["streams"], "target_qps": cell["target_qps"],
                    "io": self.cfg.io, "status": "skipped", "error": reason,
                    "check_status": f"not-run: {reason}"})
        return row

    def failed_row(self, group: Group, cell: dict, error: str) -> dict:
        row = self.skipped_row(group, cell, error)
        row["status"] = "failed"
        check = self.info["engines"].get(engine_key(group.engine, group.precision, group.model.shape_tag()), {})
        if check.get("check"):  # the session passed its gate before the cell died
            row.update({k: check["check"].get(k) for k in ("max_abs_err", "rel_err", "top1_agreement", "check_status")})
        return row

    # ---- workers ------------------------------------------------------------------------------
    def job(self, kind: str, model, **extra) -> dict:
        return {"kind": kind, "config": self.cfg.to_dict(), "model": self.cfg.model,
                "model_options": asdict(model.options), "device": asdict(self.dev), "env": worker_env(self.dev),
                "run_id": self.run_id, "device_label": self.device_label, "out_dir": str(self.out_dir), **extra}

    def spawn(self, job: dict, log_name: str):
        ctx = mp.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        from infermeter import worker

        log = self.out_dir / "logs" / f"{safe_name(log_name)}.log"
        proc = ctx.Process(target=worker.main, args=(job, send, str(log)), name=f"infermeter-{log_name}")
        proc.start()
        send.close()
        return proc, recv, log

    @staticmethod
    def stop_proc(proc) -> None:
        if proc.is_alive():
            proc.kill()
        proc.join(10)

    def drive(self, job: dict, log_name: str, on_msg, first_deadline_s: float):
        """Run one worker to its end. Returns (cause, current cell id) when it died, else (None, None)."""
        proc, conn, log = self.spawn(job, log_name)
        current = None
        deadline = time.monotonic() + first_deadline_s
        try:
            while True:
                if conn.poll(POLL_S):
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        cause = signal_cause(proc.exitcode)
                        tail = _last_log_line(log)
                        return (f"{cause}{': ' + tail if tail and proc.exitcode and proc.exitcode > 0 else ''}",
                                current)
                    if kind == "cell-start":
                        current, deadline = payload, time.monotonic() + self.cfg.timeout_s
                    elif kind == "row":
                        current, deadline = None, time.monotonic() + self.cfg.timeout_s
                    elif kind == "done":
                        proc.join(30)
                        return None, None
                    on_msg(kind, payload)
                elif not proc.is_alive():
                    proc.join(1)
                    if conn.poll(0):
                        continue  # drain what it said before dying
                    return signal_cause(proc.exitcode), current
                elif time.monotonic() > deadline:
                    self.stop_proc(proc)
                    what = f"cell {current}" if current else "session build"
                    limit = self.cfg.timeout_s if current else first_deadline_s
                    return f"timeout: {what} ran past --timeout {limit:g} s; worker killed", current
        finally:
            self.stop_proc(proc)
            conn.close()

    def prepare_model(self, model, kinds: set[str]) -> str | None:
        """Build artifacts in the model's builder process. Returns an error line, or None."""
        outcome: dict = {}

        def on_msg(kind, payload):
            if kind == "info":
                self.info["artifacts"][model.shape_tag()] = payload.get("artifacts")
            elif kind in ("bad-input", "group-failed"):
                outcome[kind] = payload

        cause, _ = self.drive(self.job("prepare", model, kinds=sorted(kinds)), f"prepare-{model.shape_tag()}", on_msg,
                              max(self.cfg.timeout_s, 600))
        if "bad-input" in outcome:
            raise StopSweep(f"{model.name}: {outcome['bad-input']}")
        if "group-failed" in outcome:
            return f"building artifacts failed: {outcome['group-failed']}"
        return f"building artifacts failed: {cause}" if cause else None

    def run_group(self, group: Group, cells: list[dict]) -> None:
        remaining = list(cells)  # shrinks as rows arrive; a fresh worker takes what is left
        failed: dict = {}

        def on_msg(kind, payload):
            if kind == "row":
                self.emit(payload)
                remaining[:] = [c for c in remaining if c["cell_id"] != payload["cell_id"]]
            elif kind == "info":
                self.info["engines"].update(payload.get("engine", {}))
                if payload.get("telemetry") is not None:
                    self.info["telemetry"] = payload["telemetry"]
            elif kind == "group-failed":
                failed["error"] = payload
            elif kind == "bad-input":
                raise StopSweep(payload)
            elif kind == "disk-full":
                raise self.disk_full(payload)

        while remaining:
            job = self.job("engine", group.model, engine=group.engine, precision=group.precision, cells=list(remaining))
            cause, current = self.drive(job, f"{group.engine}-{group.precision}-{group.model.shape_tag()}", on_msg,
                                        max(self.cfg.timeout_s, 600))
            if failed:  # the session could not be built or checked: nothing in this group can run
                for c in remaining:
                    self.emit(self.failed_row(group, c, failed["error"]))
                return
            if cause is None:
                return
            if current is None:  # died while building the session: retrying would die the same way
                for c in remaining:
                    self.emit(self.failed_row(group, c, cause))
                return
            cell = next(c for c in remaining if c["cell_id"] == current)
            self.emit(self.failed_row(group, cell, cause))
            remaining[:] = [c for c in remaining if c["cell_id"] != current]

    # ---- the whole sweep ------------------------------------------------------------------------
    def run(self) -> int:
        self.open_results()
        self.fp = fingerprint(self.dev, self.cfg.command)
        self.write_run_json()
        todo = [(g, [c for c in g.cells if c["cell_id"] not in self.done]) for g in self.groups]
        todo = [(g, cells) for g, cells in todo if cells]
        from infermeter.progress import SweepProgress

        with SweepProgress(sum(len(c) for _, c in todo), quiet=self.cfg.quiet) as progress:
            self.progress = progress.advance
            for g, cells in todo:
                if g.skip_reason:
                    for c in cells:
                        self.emit(self.skipped_row(g, c, g.skip_reason))
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
                        continue
                    progress.status(f"{g.engine} {g.precision}")
                    self.run_group(g, cells)
                    self.write_run_json()
        self.write_run_json()
        bad = [r for r in self.rows if r["status"] in ("failed", "mismatch")]
        return 1 if bad else 0


def artifact_kinds(model, engine_names: list[str] | None = None) -> set[str]:
    """What the model's builder produces: the ONNX export and the reference always; the Keras file and
    SavedModel for a keras-source model when an engine takes them (every kind when no engine is named)."""
    from infermeter.engines import load_all

    kinds = {"reference", "onnx"}
    engines = load_all()
    if "keras" in model.sources and (engine_names is None
                                     or any("keras" in engines[e].sources for e in engine_names)):
        kinds |= {"keras", "savedmodel"}
    return kinds


def prepare_only(cfg: RunConfig) -> dict:
    """Build every artifact of the model (all input-shape experiments) without measuring anything."""
    sweep = Sweep(cfg)
    sweep.open_results()
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

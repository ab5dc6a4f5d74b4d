"""The child process: build one engine session, gate it against the reference, measure its cells.

One worker serves one (model, engine, precision) group and streams a row back per cell over a pipe,
so a crash loses at most the cell in progress. TensorFlow and torch never meet in one process: the
sweep starts a fresh worker for every group (and one 'prepare' worker per model for its artifacts).
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path

from infermeter.protocol import (
    ArtifactFacts,
    BadInputFound,
    CellRow,
    CellStart,
    DiskFull,
    Done,
    EngineFacts,
    GroupFailed,
    Info,
    WorkerJob,
)

# What a worker says to the parent: the messages in protocol.py.

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc",
               "failed to allocate", "oom")


def describe_exception(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, MemoryError) or any(m in text.lower() for m in OOM_MARKERS):
        return f"out of memory ({text[:300]})"
    return text[:500]


def _redirect_output(log_path: str | None) -> None:
    """Framework chatter goes to the group's log file, not the user's terminal."""
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _limit_memory(limit_mb: int | None) -> None:
    if limit_mb:
        import resource

        limit = int(limit_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    """A worker whose sweep is gone (killed, node lost) has no one to report to: it goes too (Linux)."""
    try:
        import ctypes
        import signal

        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the guard was set
            os._exit(1)
    except (OSError, AttributeError):
        pass


def main(job: WorkerJob, conn, log_path: str | None = None) -> None:
    """Entry point of the worker process (multiprocessing 'spawn')."""
    _die_with_parent()
    os.environ.update(job.env)  # before any framework import: CUDA_VISIBLE_DEVICES etc.
    _redirect_output(log_path)
    _limit_memory(job.config.worker_memory_limit_mb)
    send = conn.send

    try:
        if job.kind == "prepare":
            prepare_artifacts(job, send)
        else:
            run_engine_group(job, send)
        send(Done())
    except BaseException as e:  # the parent must always hear why
        from infermeter.errors import BadInput, UninformativeReference

        traceback.print_exc()
        if isinstance(e, (BadInput, UninformativeReference)):
            send(BadInputFound(str(e)))
        else:
            send(GroupFailed(describe_exception(e)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def _model_from_job(job: WorkerJob):
    from infermeter.models.registry import resolve_model

    return resolve_model(job.model, job.model_options)


def prepare_artifacts(job: WorkerJob, send) -> None:
    """Build the model's artifacts in its source framework and judge whether the reference is informative:
    --check strict refuses an uninformative one (exit 2), warn records why its cells go unchecked."""
    from infermeter.artifacts import ArtifactStore
    from infermeter.check import reference_problem
    from infermeter.errors import UninformativeReference
    from infermeter.models.reference import read_reference_outputs

    model = _model_from_job(job)
    store = ArtifactStore(job.config.cache_dir, model.key())
    built = model.build_artifacts(store, set(job.artifact_kinds)) or {}
    mode = job.config.check
    spread, problem = {}, None
    if mode != "off":
        _, refs = read_reference_outputs(store)
        spread, problem = reference_problem(refs, model.task)
        if problem and mode == "strict":
            raise UninformativeReference(f"{problem} (--check strict)")
    send(Info(artifacts=ArtifactFacts(built=built, built_s=dict(store.built), reference=spread,
                                      reference_uninformative=problem)))


def _check(engine, model, store, precision: str, batch_sizes: list[int], first_ms: dict[int, float],
           mode: str = "warn"):
    """Run the engine on the K reference inputs and compare every output. The chunks are the largest cell batch size
    that fits in K, else the smallest cell batch size; a short chunk is filled up by repeating its rows
    (their outputs are dropped), so the check runs only shapes the cells run and, with static shapes,
    compiles nothing the cells would not. The first call at each chunk size is timed into first_ms: a
    compile or autotune at a shape's first call is that shape's first_inference_ms, not a cost the check hides."""
    import numpy as np

    from infermeter.check import CHECK_OFF, CheckResult, compare_outputs, reference_problem
    from infermeter.models.reference import read_reference_outputs

    if mode == "off":
        return CheckResult.not_run(CHECK_OFF)
    inputs, refs = read_reference_outputs(store)
    _, problem = reference_problem(refs, model.task)
    if problem:  # strict mode stopped the run in prepare; warn times the cells unchecked
        return CheckResult.not_run(f"reference outputs identical for every input ({problem})")
    k = len(refs[0])
    fitting = [b for b in batch_sizes if b <= k]
    chunk = max(fitting) if fitting else min(batch_sizes)
    engine.activate(chunk)
    parts: list[list[np.ndarray]] = [[] for _ in refs]
    for s in range(0, k, chunk):
        n = min(chunk, k - s)
        rows = np.arange(s, s + chunk) if n == chunk else s + np.arange(chunk) % n
        part = {name: np.ascontiguousarray(np.take(a, rows, axis=0)) for name, a in inputs.items()}
        staged = engine.stage(part)
        t0 = time.perf_counter()
        result = engine.infer(staged)
        if chunk not in first_ms:
            first_ms[chunk] = (time.perf_counter() - t0) * 1e3
        got = engine.outputs_to_numpy(result)
        if len(got) != len(refs):
            return compare_outputs(refs, got, precision, model.task)
        for i, g in enumerate(got):
            parts[i].append(np.asarray(g, dtype=np.float64)[:n])
    outs = [np.concatenate(p, axis=0) for p in parts]
    return compare_outputs(refs, outs, precision, model.task, _output_names(store, len(refs)))


def _output_names(store, n: int) -> list[str] | None:
    """The graph's output names (from model.onnx when there is one), to name the output that failed."""
    path = store.get("model.onnx") if n > 1 else None
    if path is None:
        return None
    try:
        import onnx
    except ImportError:
        return None
    names = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    return [f"output {i} {name!r}" for i, name in enumerate(names)] if len(names) == n else None


REDUCED_PRECISIONS = ("bf16", "int8")  # rows that carry top-1 agreement and SNR against fp32 on held-out inputs


def _heldout(engine, model, store, cfg, max_batch: int, first_ms: dict[int, float]):
    """check.HeldOutAccuracy: agreement with fp32 over the held-out inputs (neither calibration nor check inputs)."""
    import numpy as np

    from infermeter.models.reference import read_reference_outputs
    from infermeter.quantization import heldout_accuracy, input_sets

    _, held = input_sets(model, cfg.calibration_items, cfg.heldout_items)
    engine.activate(max_batch)  # the held-out inputs run in batches of max_batch items
    if max_batch not in first_ms:  # the cold first call at this shape is its cell's first_inference_ms
        inputs, _ = read_reference_outputs(store)
        rows = np.arange(max_batch) % len(next(iter(inputs.values())))
        staged = engine.stage({n: np.ascontiguousarray(np.take(a, rows, axis=0)) for n, a in inputs.items()})
        t0 = time.perf_counter()
        engine.infer(staged)
        first_ms[max_batch] = (time.perf_counter() - t0) * 1e3
    facts = heldout_accuracy(engine, model, store, held, max_batch)
    engine.info["heldout_set"] = {"items": len(held), "sha256": held.sha256,
                                  "fp32_outputs": "onnxruntime CPU execution provider on model.onnx"}
    return facts


def run_engine_group(job: WorkerJob, send) -> None:
    from infermeter.artifacts import ArtifactStore
    from infermeter.engines import EngineContext, EngineOptions, get_engine
    from infermeter.telemetry import open_monitor

    cfg, dev = job.config, job.device
    model = _model_from_job(job)
    store = ArtifactStore(cfg.cache_dir, model.key())
    cells = job.cells
    precision = job.precision
    max_batch = max(c.batch_size for c in cells)
    max_streams = max(c.streams for c in cells)
    ctx = EngineContext(device=dev.kind, gpu_id=dev.gpu_id, num_threads=cfg.num_threads, io=cfg.io,
                        cache_dir=cfg.cache_dir, options=EngineOptions.from_config(cfg, streams=max_streams))
    engine = get_engine(job.engine)(ctx)

    t0 = time.perf_counter()
    engine.prepare(model, store, precision, max_batch)
    prepare_s = time.perf_counter() - t0
    if engine.build_s is None and engine.load_s is None:
        engine.load_s = prepare_s
    first_ms: dict[int, float] = {}  # cold first call per batch size, wherever it happens
    check = _check(engine, model, store, precision, sorted({c.batch_size for c in cells}), first_ms, cfg.check)
    if precision in REDUCED_PRECISIONS and cfg.check != "off":
        check.heldout = _heldout(engine, model, store, cfg, max_batch, first_ms)

    monitor = open_monitor(dev, cfg.power_interval_ms, os.getpid())
    try:
        monitor.measure_counter_period()  # sets the shortest energy window the counter's steps allow
        if cfg.idle_time_s > 0:  # after the check's work: waits until power stops falling (monitor.IDLE_RULE)
            monitor.measure_idle(cfg.idle_time_s, max_wait_s=cfg.idle_max_wait_s)
        from infermeter.plan import engine_key

        def engine_info() -> dict[str, EngineFacts]:
            return {engine_key(job.engine, precision, model.shape_tag()): EngineFacts(
                settings=engine.info, build_s=engine.build_s, load_s=engine.load_s, shape_mode=engine.shape_mode,
                compile_s={str(k): v for k, v in engine.compile_s.items()},
                check={**check.row_fields(), "detail": check.detail})}

        send(Info(engine=engine_info(), telemetry=monitor.run_info()))
        from infermeter.measure import CellMeasurer

        measurer = CellMeasurer(cfg, dev, model, engine, monitor, check, job, first_ms)
        for cell in cells:
            send(CellStart(cell.cell_id))
            try:
                row = measurer.measure(cell)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # the sweep stops; the parent says so
                    send(DiskFull(f"{e.strerror}: {e.filename or job.out_dir}"))
                    return
                traceback.print_exc()
                row = measurer.failed_row(cell, describe_exception(e))
            except Exception as e:  # the cell fails; the session may still serve the next one
                traceback.print_exc()
                row = measurer.failed_row(cell, describe_exception(e))
            send(CellRow(row))
            if cfg.cooldown_s > 0:
                time.sleep(cfg.cooldown_s)
        send(Info(engine=engine_info()))  # what the cells compiled (per shape) and how they ran, for run.json
    finally:
        monitor.close()
        engine.close()


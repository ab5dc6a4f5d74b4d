"""Worker processes: spawn one per job, relay its messages, enforce the timeouts, and turn a crash into
a failed cell.

A worker that crashes, is killed or outlives --timeout-s costs only the cell in progress: that cell
fails with the cause and the rest of its group continues in a fresh worker. An engine group that outlives
--group-timeout-s is stopped as a whole: every cell it did not finish fails with that cause, so each
group leaves a row per cell whatever happens. A worker's log is kept only when it holds something.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from infermeter.parsing import safe_name
from infermeter.plan import Cell
from infermeter.protocol import CellRow, CellStart, Done, GroupFailed, Message, WorkerJob

POLL_S = 0.1
#: a session build (or artifact build) gets at least this long before the first cell starts
MIN_BUILD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WorkerExit:
    """How a worker ended: cause None = it finished; else why it died, and the cell it was measuring."""

    cause: str | None = None
    cell_id: str | None = None
    group_timeout: bool = False  # the engine group's time limit ran out: no fresh worker takes the rest


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


class WorkerSupervisor:
    def __init__(self, logs_dir: Path, timeout_s: float, group_timeout_s: float | None = None):
        self.logs_dir = Path(logs_dir)
        self.timeout_s = timeout_s
        self.group_timeout_s = group_timeout_s

    @property
    def build_timeout_s(self) -> float:
        return max(self.timeout_s, MIN_BUILD_TIMEOUT_S)

    def _spawn(self, job: WorkerJob, log_name: str):
        ctx = mp.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        from infermeter import worker

        log = self.logs_dir / f"{safe_name(log_name)}.log"
        proc = ctx.Process(target=worker.main, args=(job, send, str(log)), name=f"infermeter-{log_name}")
        proc.start()
        send.close()
        return proc, recv, log

    @staticmethod
    def _stop(proc) -> None:
        if proc.is_alive():
            proc.kill()
        proc.join(10)

    @staticmethod
    def _drop_if_empty(log: Path) -> None:
        """A worker that said nothing leaves no log: an empty file only hides that there was nothing to say."""
        try:
            if log.stat().st_size == 0:
                log.unlink()
        except OSError:
            pass

    def run(self, job: WorkerJob, log_name: str, on_message: Callable[[Message], None],
            group_deadline: float | None = None) -> WorkerExit:
        """Run one worker to its end, passing each message to on_message (which may raise to stop).
        group_deadline (time.monotonic()): past it the worker is killed whatever it is doing."""
        proc, conn, log = self._spawn(job, log_name)
        current = None
        deadline = time.monotonic() + self.build_timeout_s
        try:
            while True:
                if conn.poll(POLL_S):
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        cause = signal_cause(proc.exitcode)
                        tail = _last_log_line(log)
                        return WorkerExit(f"{cause}{': ' + tail if tail and proc.exitcode and proc.exitcode > 0 else ''}",
                                          current)
                    if isinstance(msg, CellStart):
                        current, deadline = msg.cell_id, time.monotonic() + self.timeout_s
                    elif isinstance(msg, CellRow):
                        current, deadline = None, time.monotonic() + self.timeout_s
                    elif isinstance(msg, Done):
                        proc.join(30)
                        return WorkerExit()
                    on_message(msg)
                elif not proc.is_alive():
                    proc.join(1)
                    if conn.poll(0):
                        continue  # drain what it said before dying
                    return WorkerExit(signal_cause(proc.exitcode), current)
                elif group_deadline is not None and time.monotonic() > group_deadline:
                    self._stop(proc)
                    where = f"during cell {current}" if current else "outside a cell (session build or check)"
                    return WorkerExit(f"timeout: engine group ran past --group-timeout-s {self.group_timeout_s:g} s "
                                      f"(worker killed {where}); this cell did not finish", current,
                                      group_timeout=True)
                elif time.monotonic() > deadline:
                    self._stop(proc)
                    what = f"cell {current}" if current else "session build"
                    limit = self.timeout_s if current else self.build_timeout_s
                    return WorkerExit(f"timeout: {what} ran past --timeout-s {limit:g} s; worker killed", current)
        finally:
            self._stop(proc)
            conn.close()
            self._drop_if_empty(log)

    def run_cells(self, job: WorkerJob, log_name: str, on_message: Callable[[Message], None],
                  fail_cell: Callable[[Cell, str], None]) -> str | None:
        """Measure every cell of an engine job: rows go to on_message as they come; a worker that dies
        takes its current cell with it (fail_cell(cell, cause)) and a fresh worker takes the rest. When
        the session cannot be built (it died before any cell, or said GroupFailed), or the group's time limit
        ran out, every remaining cell fails with that cause: a retry would die the same way. Returns that
        cause when the group stopped early so, else None (its crashed cells have their failed rows)."""
        remaining = list(job.cells)  # shrinks as rows arrive
        failed: list[str] = []
        group_deadline = time.monotonic() + self.group_timeout_s if self.group_timeout_s else None

        def relay(msg: Message) -> None:
            if isinstance(msg, CellRow):
                remaining[:] = [c for c in remaining if c.cell_id != msg.row["cell_id"]]
            elif isinstance(msg, GroupFailed):
                failed.append(msg.error)
                return
            on_message(msg)

        while remaining:
            end = self.run(replace(job, cells=tuple(remaining)), log_name, relay, group_deadline)
            if failed or end.group_timeout or (end.cause is not None and end.cell_id is None):
                for c in remaining:
                    fail_cell(c, failed[0] if failed else end.cause)
                return failed[0] if failed else end.cause
            if end.cause is None:
                return None
            cell = next(c for c in remaining if c.cell_id == end.cell_id)
            fail_cell(cell, end.cause)
            remaining[:] = [c for c in remaining if c.cell_id != end.cell_id]
        return None

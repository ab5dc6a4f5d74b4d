"""One device's results folder: results.csv (a row appended and synced as each cell ends), the optional
JSON copy, run.json, and what --resume skips. Its policy on a full disk: stop the sweep with one line
that says how many finished rows are intact, never lose one."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from infermeter.errors import BadInput, StopSweep
from infermeter.results.schema import normalise
from infermeter.results.writer import ResultsCsv, atomic_write_json, clean_for_json, read_results

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: statuses --resume keeps; a failed cell is tried again
FINISHED = ("ok", "mismatch", "skipped")
#: earlier runs' run ids and commands kept in run.json
PREVIOUS_RUNS_KEPT = 20


def finished_cells(results_csv) -> set[str]:
    """Cells --resume does not run again: those with a result (a failed cell is tried again)."""
    return {r["cell_id"] for r in read_results(results_csv) if r.get("status") in FINISHED}


class ResultsFolder:
    def __init__(self, out_dir: Path, run_id: str, json_path: str | None = None):
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.json_path = json_path
        self.rows: list[dict] = []  # written by this run, in order
        self.csv: ResultsCsv | None = None

    @property
    def logs_dir(self) -> Path:
        return self.out_dir / "logs"

    def open(self, resume: bool) -> set[str]:
        """Create the folder and results.csv (bad input if it cannot be written). Returns the cells
        already finished there when resuming, else none."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise BadInput(f"results folder {self.out_dir} cannot be written: {e.strerror or e}") from None
        self.csv = ResultsCsv(self.out_dir / "results.csv")
        return finished_cells(self.csv.path) if resume else set()

    def write_row(self, row: dict) -> dict:
        """Append one row to results.csv (and the JSON copy); returns the row as written."""
        row = normalise(row)
        try:
            self.csv.append(row)
            self.rows.append(row)
            if self.json_path:
                atomic_write_json(self.json_path, {"run_id": self.run_id, "results_dir": str(self.out_dir),
                                                   "rows": [clean_for_json(r) for r in self.rows]})
        except OSError as e:
            if e.errno in DISK_FULL:
                raise self.disk_full(e.strerror) from None
            raise StopSweep(f"cannot write results in {self.out_dir}: {e}") from None
        return row

    def write_run_json(self, doc: dict) -> None:
        """run.json: this run's facts, with earlier runs in this folder listed under previous_runs."""
        path = self.out_dir / "run.json"
        previous = []
        # Each engine's (and engine group's) facts name the run that measured them; a later run into the same
        # folder (another engine, say) keeps the facts of those it did not run, since their rows stay in
        # results.csv.
        merged = ("engines", "groups")
        mine = {key: {k: {**v, "run_id": self.run_id} for k, v in (doc.get(key) or {}).items()} for key in merged}
        kept: dict = {key: {} for key in merged}
        if path.exists():
            try:
                old = json.loads(path.read_text())
                previous = old.get("previous_runs", [])
                if old.get("run_id") != self.run_id:  # rewritten as the run goes on: list each run once
                    previous = previous + [{k: old.get(k) for k in ("run_id", "created_at", "command")}]
                kept = {key: {k: {"run_id": old.get("run_id"), **v} for k, v in (old.get(key) or {}).items()
                              if k not in mine[key] and isinstance(v, dict)} for key in merged}
            except (ValueError, OSError):
                previous, kept = [], {key: {} for key in merged}
        doc = {**doc, **{key: {**kept[key], **mine[key]} for key in merged if key in doc}}
        try:
            atomic_write_json(path, {**doc, "previous_runs": previous[-PREVIOUS_RUNS_KEPT:]})
        except OSError as e:
            if e.errno in DISK_FULL:
                raise self.disk_full(e.strerror) from None
            raise

    def disk_full(self, what: str) -> StopSweep:
        return StopSweep(f"disk full writing results in {self.out_dir} ({what}): stopped; "
                         f"{len(self.rows)} finished cell(s) are intact in results.csv; free space, then --resume")

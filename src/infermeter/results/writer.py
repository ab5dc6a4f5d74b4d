"""Durable writers: results.csv appended with flush+fsync per row; per-cell files written atomically.

`kill -9` at any moment leaves a results.csv that parses and holds every finished cell: a row is
written with one write() call on a line boundary, and a torn last line (power cut mid-write) is
dropped on the next open.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from infermeter.results.schema import FIELDS, check_keys, normalise


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) or type(v).__module__ == "numpy":  # numpy scalars: plain text, not np.float64(...)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return str(v)
        if f.is_integer() and not isinstance(v, float) and "int" in type(v).__name__:
            return str(int(f))
        return "" if math.isnan(f) else repr(f)
    return str(v).replace("\n", " ")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary sibling, flush, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def clean_for_json(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v) for k, v in row.items()}


def atomic_write_csv(path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_cell(x) for x in r])
    atomic_write_text(path, buf.getvalue())


class ResultsCsv:
    """results.csv with a fixed header. Opening repairs a torn last line left by a crash."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append_line(",".join(FIELDS) + "\n")
        else:
            self._upgrade_header()

    def _upgrade_header(self) -> None:
        """A results.csv written before columns were added (resume into an old folder): rewritten once with
        today's header, old rows keeping every value and empty in the new columns. A column today's
        schema does not know stops here rather than being dropped."""
        with open(self.path, newline="") as fh:
            header = next(csv.reader(fh), [])
        if header == FIELDS:
            return
        check_keys(dict.fromkeys(header))
        rows = read_results(self.path)
        atomic_write_csv(self.path, FIELDS, ([r.get(f) for f in FIELDS] for r in rows))

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())

    def _append_line(self, line: str) -> None:
        # one os.write on an O_APPEND descriptor: the line lands whole or (on a crash) is repaired away
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = line.encode()
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - written)
                raise OSError(28, "short write to results.csv (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, row: dict) -> None:
        row = normalise(row)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_cell(row[f]) for f in FIELDS])
        self._append_line(buf.getvalue())


def complete_lines(path) -> str:
    """A results file's text without a torn last line (one a crash left half-written): what readers parse."""
    text = Path(path).read_text()
    return text[: text.rfind("\n") + 1] if text and not text.endswith("\n") else text


def read_results(path) -> list[dict]:
    """Rows as dicts of strings (empty string -> None); a torn last line is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    reader = csv.DictReader(io.StringIO(complete_lines(path)))
    return [{k: (v if v != "" else None) for k, v in r.items()} for r in reader]

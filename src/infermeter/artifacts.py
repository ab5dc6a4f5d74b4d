"""Derived model formats, built once and cached by content key.

Layout: <cache>/<model key>/<name> plus <name>.sha256. A build writes into a temporary sibling
under an inter-process file lock and is renamed into place, so two sweeps building the same
artifact at once build it once and never see half a file. A cached artifact whose hash no longer
matches (a truncated or corrupted file) is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def hash_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode())
            _feed(h, f)
    else:
        _feed(h, p)
    return h.hexdigest()


def _feed(h, f: Path) -> None:
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


class ArtifactStore:
    def __init__(self, cache_dir: str | os.PathLike, model_key: str):
        self.root = Path(cache_dir) / model_key
        self.root.mkdir(parents=True, exist_ok=True)
        self.built: dict[str, float] = {}  # name -> build seconds, for artifacts built by this process

    def path(self, name: str) -> Path:
        if os.sep in name or name.startswith("."):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        return self.root / name

    def valid(self, name: str) -> bool:
        p, side = self.path(name), self.path(name + ".sha256")
        if not p.exists() or not side.exists():
            return False
        return side.read_text().strip() == hash_path(p)

    def get(self, name: str) -> Path | None:
        return self.path(name) if self.valid(name) else None

    def build(self, name: str, builder: Callable[[Path], object], *, lock_timeout_s: float = 3600) -> Path:
        """Return the artifact, building it with builder(tmp_path) when missing or corrupt.
        The builder writes a file or a folder at tmp_path."""
        final = self.path(name)
        with FileLock(str(self.root / f".{name}.lock"), timeout=lock_timeout_s):
            if self.valid(name):
                return final
            tmp = self.root / f".{name}.tmp-{os.getpid()}"
            _remove(tmp)
            t0 = time.perf_counter()
            try:
                builder(tmp)
                if not tmp.exists():
                    raise RuntimeError(f"building {name} produced nothing")
                digest = hash_path(tmp)
                _remove(final)
                os.replace(tmp, final)
                side_tmp = self.root / f".{name}.sha256.tmp-{os.getpid()}"
                side_tmp.write_text(digest)
                _fsync(side_tmp)
                os.replace(side_tmp, self.path(name + ".sha256"))
            finally:
                _remove(tmp)
            self.built[name] = time.perf_counter() - t0
        return final


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""GPU settings the tuner may vary: the board's power limit and locked graphics clocks, through NVML.

Only where NVML permits: each knob is tried once with a harmless write (the current power limit; a lock to
the full supported range, reset at once). A refusal (no root, not supported) is said once and the knob is
left out of the search.

Every setting changed is put back: before the first change the original settings are written to a record
file (in the artifact cache, one per board); `restore()` runs at the end of the search, at interpreter exit
(atexit) and on SIGTERM; and a record left behind by a process that could not run any of these (kill -9,
power loss) is restored the next time a tuner opens that board. NVML cannot read whether clocks were locked
before: a lock the tuner made is released with nvmlDeviceResetGpuLockedClocks (the driver default).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

#: power limits tried: these fractions of the range between NVML's minimum and maximum (the default added)
POWER_FRACTIONS = (0.5, 0.7, 0.85, 1.0)
#: locked graphics clocks tried: these fractions of the highest supported clock (None = not locked)
CLOCK_FRACTIONS = (0.6, 0.8, 1.0)


def _say(line: str) -> None:
    print(f"infermeter: tune: {line}", file=sys.stderr)


class GpuKnobs:
    """The settable knobs of one GPU. `nv` is the pynvml module (or a stand-in with the same functions)."""

    def __init__(self, nv, gpu_index: int, record_dir: str | os.PathLike, say=_say):
        self.nv, self.gpu_index, self.say = nv, gpu_index, say
        nv.nvmlInit()
        self.handle = nv.nvmlDeviceGetHandleByIndex(gpu_index)
        uuid = nv.nvmlDeviceGetUUID(self.handle)
        self.uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        self.record = Path(record_dir) / f"gpu-settings-{self.uuid}.json"
        self.original: dict | None = None  # set by the first change
        self.notes: list[str] = []  # knobs left out, and why
        self.restored_leftover = self.restore_leftover()

    # ---- the record of original settings ------------------------------------------------------------------
    def restore_leftover(self) -> bool:
        """Put back settings a previous tuner changed and could not restore (its record is still here)."""
        if not self.record.exists():
            return False
        try:
            original = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        self._put_back(original)
        self.say(f"GPU {self.gpu_index}: restored settings a previous tune left changed "
                 f"(power limit {original['power_limit_mw'] / 1000:g} W"
                 f"{', clocks unlocked' if original.get('clocks_locked') else ''})")
        self.record.unlink(missing_ok=True)
        return True

    def _remember(self) -> None:
        if self.original is not None:
            return
        self.original = {"gpu_index": self.gpu_index, "uuid": self.uuid,
                         "power_limit_mw": int(self.nv.nvmlDeviceGetPowerManagementLimit(self.handle)),
                         "clocks_locked": False}
        self._write_record()
        atexit.register(self.restore)
        try:  # SIGTERM ends the process through SystemExit, so finally blocks and atexit run
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
        except ValueError:  # not the main thread: atexit and the record still hold
            pass

    def _write_record(self) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.original))
        os.replace(tmp, self.record)

    def _put_back(self, original: dict) -> None:
        nv, h = self.nv, self.handle
        try:
            if original.get("clocks_locked"):
                nv.nvmlDeviceResetGpuLockedClocks(h)
            if int(nv.nvmlDeviceGetPowerManagementLimit(h)) != int(original["power_limit_mw"]):
                nv.nvmlDeviceSetPowerManagementLimit(h, int(original["power_limit_mw"]))
        except nv.NVMLError as e:  # said, and the record stays for the next start to try again
            self.say(f"GPU {self.gpu_index}: could not restore its settings ({type(e).__name__}: {e}); "
                     f"the original settings are in {self.record}")
            raise

    def restore(self) -> None:
        """Every setting back as it was before the first change; idempotent."""
        if self.original is None:
            return
        self._put_back(self.original)
        self.original = None
        self.record.unlink(missing_ok=True)
        atexit.unregister(self.restore)  # nothing left to put back at exit

    # ---- what may be set --------------------------------------------------------------------------------------
    def probe(self) -> dict[str, tuple]:
        """Candidate values of each knob NVML lets this process set: {"power_limit_w": (...),
        "locked_clocks_mhz": (None, ...)}. A knob refused is said once and left out."""
        nv, h = self.nv, self.handle
        knobs: dict[str, tuple] = {}
        try:
            lo, hi = nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
            current = int(nv.nvmlDeviceGetPowerManagementLimit(h))
            default = int(nv.nvmlDeviceGetPowerManagementDefaultLimit(h))
            self._remember()
            nv.nvmlDeviceSetPowerManagementLimit(h, current)  # harmless: proves the permission
            levels = {round((lo + f * (hi - lo)) / 1000) for f in POWER_FRACTIONS} | {round(default / 1000)}
            knobs["power_limit_w"] = tuple(sorted(levels))
        except nv.NVMLError as e:
            self._left_out("power limit", e)
        try:
            mem = max(nv.nvmlDeviceGetSupportedMemoryClocks(h))
            graphics = sorted(nv.nvmlDeviceGetSupportedGraphicsClocks(h, mem))
            self._remember()
            locked_before = self.original["clocks_locked"]
            self.original["clocks_locked"] = True
            self._write_record()  # before the change: a crash right after it still finds the record
            try:
                nv.nvmlDeviceSetGpuLockedClocks(h, graphics[0], graphics[-1])  # the full range: no real lock
            except nv.NVMLError:
                self.original["clocks_locked"] = locked_before
                self._write_record()
                raise
            nv.nvmlDeviceResetGpuLockedClocks(h)
            top = graphics[-1]
            levels = sorted({min(graphics, key=lambda c, t=f * top: abs(c - t)) for f in CLOCK_FRACTIONS})
            knobs["locked_clocks_mhz"] = (None, *levels)
        except nv.NVMLError as e:
            self._left_out("locked clocks", e)
        return knobs

    def _left_out(self, knob: str, e: Exception) -> None:
        line = f"GPU {self.gpu_index}: {knob} left out of the search: NVML refuses to set it ({type(e).__name__}: {e})"
        self.notes.append(line)
        self.say(line)

    def apply(self, power_limit_w: float | None = None, locked_clocks_mhz: int | None = None) -> None:
        """Set the knobs of one trial; None puts a knob back to its original value."""
        nv, h = self.nv, self.handle
        self._remember()
        target = int(power_limit_w * 1000) if power_limit_w is not None else self.original["power_limit_mw"]
        if int(nv.nvmlDeviceGetPowerManagementLimit(h)) != target:
            nv.nvmlDeviceSetPowerManagementLimit(h, target)
        if locked_clocks_mhz is not None:
            self.original["clocks_locked"] = True
            self._write_record()  # before the change: a crash right after it still finds the record
            nv.nvmlDeviceSetGpuLockedClocks(h, int(locked_clocks_mhz), int(locked_clocks_mhz))
        elif self.original.get("clocks_locked"):
            nv.nvmlDeviceResetGpuLockedClocks(h)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def open_gpu_knobs(gpu_index: int | None, record_dir: str, nv=None) -> tuple[GpuKnobs | None, str]:
    """(knobs, "") for this GPU, or (None, why not). nv: the NVML module (default: pynvml)."""
    if nv is None:
        try:
            import pynvml as nv
        except ImportError:
            return None, "nvidia-ml-py is not installed"
    try:
        return GpuKnobs(nv, gpu_index or 0, record_dir), ""
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"no NVML device ({type(e).__name__}: {e})"

"""A stand-in for the pynvml functions the tuner's GPU knobs call, with the board's settings kept in a JSON
file so that a change made by another process (one killed with SIGKILL, say) can be read back.

It models what the tests need of a real board: a power limit within constraints, supported clocks, locked
clocks, and NVML's permission error for a process that may not set them.
"""

from __future__ import annotations

import json
from pathlib import Path


class NVMLError(Exception):
    pass


class NVMLError_NoPermission(NVMLError):  # noqa: N801 - pynvml's spelling
    def __str__(self) -> str:
        return "Insufficient Permissions"


class FakeNvml:
    NVMLError = NVMLError
    NVMLError_NoPermission = NVMLError_NoPermission

    def __init__(self, state_path, *, allowed: bool = True, default_mw: int = 300_000, min_mw: int = 100_000,
                 max_mw: int = 350_000, clocks=(600, 900, 1200, 1500, 1800)):
        self.path = Path(state_path)
        self.allowed = allowed
        self.limits = (min_mw, max_mw)
        self.default_mw = default_mw
        self.clocks = list(clocks)
        if not self.path.exists():
            self._write({"power_limit_mw": default_mw, "locked": None, "calls": []})

    # ---- the board's state ----------------------------------------------------------------------------------
    def state(self) -> dict:
        return json.loads(self.path.read_text())

    def _write(self, st: dict) -> None:
        self.path.write_text(json.dumps(st))

    def _set(self, key, value, call) -> None:
        if not self.allowed:
            raise NVMLError_NoPermission()
        st = self.state()
        st[key] = value
        st["calls"].append(call)
        self._write(st)

    # ---- pynvml's functions ---------------------------------------------------------------------------------
    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-fake-{h[1]}"

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self.state()["power_limit_mw"]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h):
        return self.default_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        return self.limits

    def nvmlDeviceSetPowerManagementLimit(self, h, mw):
        lo, hi = self.limits
        if not lo <= mw <= hi:
            raise NVMLError(f"invalid power limit {mw}")
        self._set("power_limit_mw", int(mw), ["power_limit_mw", int(mw)])

    def nvmlDeviceGetSupportedMemoryClocks(self, h):
        return [5000, 9500]

    def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem):
        return list(self.clocks)

    def nvmlDeviceSetGpuLockedClocks(self, h, lo, hi):
        self._set("locked", [int(lo), int(hi)], ["locked", [int(lo), int(hi)]])

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self._set("locked", None, ["locked", None])

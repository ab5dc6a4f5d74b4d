"""GPU readings through NVML (nvidia-ml-py, `import pynvml`), imported and initialised only when opened.

Power: NVML_FI_DEV_POWER_INSTANT where the GPU has it; otherwise nvmlDeviceGetPowerUsage, which NVML
documents as instantaneous on GA100 (compute capability 8.0) and older and as a one-second average on
newer boards (GA10x, Ada, Hopper, ...): labelled by the board's compute capability ("instant" or
"average-1s"), so nobody mistakes one for the other. Energy: nvmlDeviceGetTotalEnergyConsumption (mJ
since driver load, Volta and newer). Clock-event reasons: nvmlDeviceGetCurrentClocksEventReasons, or
its older name nvmlDeviceGetCurrentClocksThrottleReasons where the driver lacks the new one.

Anything a reader implementing the same attributes and methods as NvmlReader can stand in for it
(tests script counters and power that way).
"""

from __future__ import annotations

from typing import Protocol

MB = 1024 * 1024

# NVML clocks-event (formerly "throttle") reason bits, as in nvml.h.
CLOCK_EVENT_REASONS = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
    0x200: "BoardLimit",
    0x400: "Reliability",
}

SAMPLE_KEYS = ("power_w", "gpu_util_pct", "mem_used_mb", "proc_mem_mb", "temp_c", "sm_clock_mhz",
               "mem_clock_mhz", "clock_event_bits")


def clock_event_names(bits: int) -> list[str]:
    """Names of the set bits, lowest first; a bit NVML may add later is named by its value."""
    names = []
    bit = 1
    while bit <= bits:
        if bits & bit:
            names.append(CLOCK_EVENT_REASONS.get(bit, f"bit0x{bit:x}"))
        bit <<= 1
    return names


def power_usage_label(compute_capability: tuple[int, int] | None) -> str:
    """What nvmlDeviceGetPowerUsage returns on this board: instantaneous on GA100 (8.0) and older, a
    one-second average on newer architectures (NVML's documentation of the call)."""
    if compute_capability is None:
        return "unknown-averaging (compute capability unreadable)"
    return "instant" if tuple(compute_capability) <= (8, 0) else "average-1s"


class ClockEventReasons:
    """nvmlDeviceGetCurrentClocksEventReasons, falling back for good to the older
    nvmlDeviceGetCurrentClocksThrottleReasons where the binding or the driver lacks it."""

    def __init__(self, pynvml, handle) -> None:
        self._nv, self._h = pynvml, handle
        self._new = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self.function = "nvmlDeviceGetCurrentClocksEventReasons" if self._new else \
            "nvmlDeviceGetCurrentClocksThrottleReasons"

    def __call__(self) -> int:
        if self._new is not None:
            try:
                return int(self._new(self._h))
            except self._nv.NVMLError_FunctionNotFound:  # a driver older than the binding
                self._new = None
                self.function = "nvmlDeviceGetCurrentClocksThrottleReasons"
        return int(self._nv.nvmlDeviceGetCurrentClocksThrottleReasons(self._h))


class GpuReader(Protocol):
    """What the monitor needs from a GPU; NvmlReader is the real one."""

    name: str
    uuid: str | None
    power_field: str | None   # "instant", "average-1s" (see power_usage_label), or None when power cannot be read
    power_why: str            # why power cannot be read ("" when it can)
    counter_why: str          # why the energy counter cannot be read ("" when it can)

    def energy_mj(self) -> int | None: ...
    def sample(self) -> dict: ...            # SAMPLE_KEYS, None where not readable
    def problems(self) -> list[str]: ...     # readings that failed, with why
    def run_info(self) -> dict: ...
    def close(self) -> None: ...


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _Reading:
    """One NVML query: stops asking once NVML says it is not supported, remembers why, never raises."""

    def __init__(self, label: str, fn, pynvml) -> None:
        self.label, self._fn, self._nv = label, fn, pynvml
        self.unsupported = ""
        self.errors = 0
        self.last_error = ""

    def __call__(self):
        if self.unsupported:
            return None
        try:
            return self._fn()
        except self._nv.NVMLError as e:
            if isinstance(e, (self._nv.NVMLError_NotSupported, self._nv.NVMLError_FunctionNotFound)):
                self.unsupported = f"{type(e).__name__}"
            else:
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
            return None

    def problem(self) -> str:
        if self.unsupported:
            return f"{self.label}: not supported ({self.unsupported})"
        if self.errors:
            return f"{self.label}: {self.errors} failed reads (last: {self.last_error})"
        return ""


_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class NvmlReader:
    """One physical GPU. Use open_nvml(); close() releases NVML (its init is reference-counted)."""

    def __init__(self, pynvml, handle, pid: int) -> None:
        self._nv, self._h, self.pid = pynvml, handle, pid
        nv, h = pynvml, handle
        self.name = _text(nv.nvmlDeviceGetName(h))
        try:
            self.uuid: str | None = _text(nv.nvmlDeviceGetUUID(h))
        except nv.NVMLError:
            self.uuid = None
        self._closed = False

        self.counter_why = ""
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(h)
        except nv.NVMLError as e:
            self.counter_why = f"energy counter not readable ({type(e).__name__}; needs Volta or newer)"

        self.power_field, self.power_why = None, ""
        instant_why = self._instant_power_why()
        if not instant_why:
            self.power_field = "instant"
            power_fn = self._instant_power_w
        else:
            try:
                nv.nvmlDeviceGetPowerUsage(h)
                self.power_field = power_usage_label(self._compute_capability())
            except nv.NVMLError as e:
                self.power_why = f"no power reading (instant field: {instant_why}; power usage: {type(e).__name__})"
            power_fn = lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0  # noqa: E731  (mW -> W)

        event_fn = ClockEventReasons(nv, h)
        self._readings = {
            "power_w": _Reading("power", power_fn, nv),
            "gpu_util_pct": _Reading("utilisation", lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu), nv),
            "mem_used_mb": _Reading("memory used", lambda: nv.nvmlDeviceGetMemoryInfo(h).used / MB, nv),
            "proc_mem_mb": _Reading("process memory", self._own_process_mem_mb, nv),
            "temp_c": _Reading("temperature",
                               lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)), nv),
            "sm_clock_mhz": _Reading("SM clock", lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)), nv),
            "mem_clock_mhz": _Reading("memory clock",
                                      lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)), nv),
            "clock_event_bits": _Reading("clock-event reasons", event_fn, nv),
        }
        if self.power_field is None:
            self._readings["power_w"].unsupported = self.power_why
        self._pid_seen = False

    # -- power ---------------------------------------------------------------------------------------
    def _compute_capability(self) -> tuple[int, int] | None:
        try:
            major, minor = self._nv.nvmlDeviceGetCudaComputeCapability(self._h)
            return int(major), int(minor)
        except self._nv.NVMLError:
            return None

    def _instant_field(self):
        nv = self._nv
        return nv.nvmlDeviceGetFieldValues(self._h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]

    def _instant_power_why(self) -> str:
        nv = self._nv
        if not hasattr(nv, "NVML_FI_DEV_POWER_INSTANT"):
            return "this nvidia-ml-py has no NVML_FI_DEV_POWER_INSTANT"
        try:
            fv = self._instant_field()
        except nv.NVMLError as e:
            return type(e).__name__
        if fv.nvmlReturn != nv.NVML_SUCCESS:
            return f"NVML return code {fv.nvmlReturn}"
        return ""

    def _instant_power_w(self) -> float | None:
        fv = self._instant_field()
        if fv.nvmlReturn != self._nv.NVML_SUCCESS:
            raise self._nv.NVMLError(fv.nvmlReturn)
        return float(getattr(fv.value, _VALUE_FIELDS.get(fv.valueType, "uiVal"))) / 1000.0  # mW -> W

    # -- memory of this process ------------------------------------------------------------------------
    def _own_process_mem_mb(self) -> float | None:
        for p in self._nv.nvmlDeviceGetComputeRunningProcesses(self._h):
            if p.pid == self.pid:
                self._pid_seen = True
                return None if p.usedGpuMemory is None else p.usedGpuMemory / MB
        return None

    # -- the reader interface ----------------------------------------------------------------------------
    def energy_mj(self) -> int | None:
        if self.counter_why:
            return None
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def sample(self) -> dict:
        return {key: read() for key, read in self._readings.items()}

    def problems(self) -> list[str]:
        out = [p for p in (r.problem() for r in self._readings.values()) if p]
        if not self._pid_seen and not self._readings["proc_mem_mb"].unsupported:
            out.append(f"process memory: pid {self.pid} not among NVML's compute processes (no CUDA context "
                       "yet, or a container PID namespace hides it), so device_mem_peak_mb is empty")
        return out

    def run_info(self) -> dict:
        nv, h = self._nv, self._h

        def ask(fn, *args):
            try:
                return fn(*args)
            except nv.NVMLError as e:
                return f"unavailable: {type(e).__name__}"

        cuda = ask(nv.nvmlSystemGetCudaDriverVersion)
        limit_mw = ask(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        default_mw = ask(nv.nvmlDeviceGetPowerManagementDefaultLimit, h)
        persistence = ask(nv.nvmlDeviceGetPersistenceMode, h)
        mig = ask(nv.nvmlDeviceGetMigMode, h)
        info = {
            "name": self.name, "uuid": self.uuid,
            "driver": _text(ask(nv.nvmlSystemGetDriverVersion)),
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else cuda,
            "power_limit_w": limit_mw / 1000 if isinstance(limit_mw, int) else limit_mw,
            "power_limit_default_w": default_mw / 1000 if isinstance(default_mw, int) else default_mw,
            "persistence_mode": {1: "enabled", 0: "disabled"}.get(persistence, persistence),
            "mig_mode": ({1: "enabled", 0: "disabled"}.get(mig[0], mig[0]) if isinstance(mig, list) else mig),
            "power_field": self.power_field or f"unavailable: {self.power_why}",
            "energy_counter": "available" if not self.counter_why else f"unavailable: {self.counter_why}",
        }
        others, ours_listed = [], False
        for kind, fn in (("compute", nv.nvmlDeviceGetComputeRunningProcesses),
                         ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses)):
            procs = ask(fn, h)
            if isinstance(procs, str):
                info[f"{kind}_processes"] = procs
                continue
            for p in procs:
                if p.pid == self.pid:
                    ours_listed = True
                    continue
                mem = None if p.usedGpuMemory is None else round(p.usedGpuMemory / MB, 1)
                others.append({"pid": p.pid, "kind": kind, "used_mb": mem})
        info["other_processes"] = others
        if others:
            note = (f"{len(others)} other process(es) use this GPU: the board's energy counter and power "
                    "include their draw")
            if not ours_listed:
                note += f" (this process, pid {self.pid}, is not listed: a PID namespace may hide it, so one of them may be us)"
            info["other_processes_note"] = note
        return info

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass  # already shut down elsewhere: nothing left to release


def open_nvml(gpu_id: int | None, uuid: str | None, pid: int) -> tuple[NvmlReader | None, str]:
    """(reader, "") for the GPU at physical index gpu_id (or with this UUID), or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, "no NVML (nvidia-ml-py is not installed)"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"no NVML device ({type(e).__name__})"
    try:
        if uuid:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0 if gpu_id is None else gpu_id)
        return NvmlReader(pynvml, handle, pid), ""
    except pynvml.NVMLError as e:
        pynvml.nvmlShutdown()
        which = f"UUID {uuid}" if uuid else f"index {gpu_id}"
        return None, f"no NVML device at {which} ({type(e).__name__}: {e})"

"""The device layer: which device a run uses, with a stand-in for "no GPU".

GPU ids are physical indices as nvidia-smi (NVML) shows them. The worker is given the chosen GPU by
UUID, CUDA_VISIBLE_DEVICES=GPU-<uuid>, so inside it that board is cuda:0 for every framework whatever
CUDA's own numbering, and NVML reads the same board by the same UUID.

A CUDA_VISIBLE_DEVICES already set (by the user or a scheduler) is respected: --gpu-id then indexes
within its list, the worker gets that one entry, and run.json says so (DeviceInfo.selection). Integer
entries are read as NVML/PCI-bus indices (CUDA_DEVICE_ORDER=PCI_BUS_ID, which infermeter sets), GPU-
entries as UUIDs or UUID prefixes, MIG- entries as MIG slices of their parent board.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass

from infermeter.errors import BadInput


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cpu" or "cuda"
    name: str
    gpu_id: int | None = None  # NVML index of the board
    uuid: str | None = None  # the board's UUID (NVML reads it by this)
    cuda_visible: str | None = None  # the worker's CUDA_VISIBLE_DEVICES entry (GPU-<uuid> or MIG-<uuid>)
    mig: bool = False  # the run uses a MIG slice: the board's energy and power include the other slices
    selection: str = ""  # how the GPU was chosen, for run.json

    @property
    def slug(self) -> str:
        """Folder name for results: 'nvidia-h100-80gb-hbm3', 'cpu-amd-epyc-7b13'."""
        base = self.name if self.kind == "cuda" else f"cpu-{self.name}"
        s = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
        return s or self.kind


@functools.lru_cache(maxsize=1)
def nvml_gpus() -> tuple[tuple[str, ...], str]:
    """(GPU names by physical index, why none) — probed once, lazily, never at import."""
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return (), f"no NVML device ({type(e).__name__}: {e})"
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            n = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(n.decode() if isinstance(n, bytes) else n)
        return tuple(names), "" if names else "NVML reports no GPU"
    finally:
        pynvml.nvmlShutdown()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# ---- CPU capabilities ------------------------------------------------------------------------------------

def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def cpu_has_vnni() -> bool:
    """Whether the CPU reports VNNI (AVX512-VNNI or AVX-VNNI), read from /proc/cpuinfo; False elsewhere."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


#: flags of native bfloat16 arithmetic: AVX512-BF16 (dot products, conversions), AMX-BF16 (tiles)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """Whether the CPU reports native bfloat16 arithmetic (BF16_FLAGS), read from /proc/cpuinfo."""
    return bool(cpu_flags() & set(BF16_FLAGS))


def resolve_device(device: str, gpu_id: int | None) -> DeviceInfo:
    """Turn --device/--gpu-id into a DeviceInfo, or raise BadInput before anything runs."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if device == "cpu":
        if gpu_id is not None:
            raise BadInput("--gpu-id given with --device cpu; drop one of them")
        return DeviceInfo("cpu", cpu_name())
    gpus, why = nvml_gpus()
    if device == "auto" and gpu_id is None and not gpus:
        return DeviceInfo("cpu", cpu_name())
    if not gpus:
        raise BadInput(f"--device cuda{'/--gpu-id' if gpu_id is not None else ''}: no GPU here ({why})")
    return choose_gpu(nvml_devices(), gpu_id, os.environ.get("CUDA_VISIBLE_DEVICES"))


@dataclass(frozen=True)
class NvmlDevice:
    """One board as NVML lists it, with the UUIDs of its MIG slices (empty when MIG is off)."""

    index: int
    name: str
    uuid: str
    mig_uuids: tuple[str, ...] = ()


def choose_gpu(devices: list[NvmlDevice], gpu_id: int | None, visible: str | None) -> DeviceInfo:
    """The GPU --gpu-id names: an NVML index, or, when CUDA_VISIBLE_DEVICES (`visible`) is set, an index
    into its list. Pure, so the mapping is tested on scripted device lists."""
    idx = 0 if gpu_id is None else gpu_id
    if visible is None or visible.strip() == "":
        if visible is not None:
            raise BadInput("CUDA_VISIBLE_DEVICES is set but empty: no GPU is visible to this process; "
                           "unset it or use --device cpu")
        if idx >= len(devices):
            raise BadInput(f"--gpu-id {idx}: no such GPU; this machine has {len(devices)} "
                           f"(ids 0..{len(devices) - 1}: {', '.join(d.name for d in devices)})")
        d = devices[idx]
        return DeviceInfo("cuda", d.name, d.index, d.uuid, f"GPU-{_bare(d.uuid)}", bool(d.mig_uuids),
                          f"--gpu-id {idx} = NVML index {d.index}, passed to the worker by UUID")
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if idx >= len(entries):
        raise BadInput(f"--gpu-id {idx}: CUDA_VISIBLE_DEVICES={visible} lists {len(entries)} device(s); "
                       f"--gpu-id indexes within it (0..{len(entries) - 1})")
    entry = entries[idx]
    d, mig_entry = _match_entry(devices, entry)
    if d is None:
        raise BadInput(f"CUDA_VISIBLE_DEVICES entry {entry!r} (--gpu-id {idx}) matches no GPU NVML lists "
                       f"({', '.join(f'{x.index}: {x.uuid}' for x in devices)})")
    how = (f"--gpu-id {idx} = entry {idx} ({entry}) of the CUDA_VISIBLE_DEVICES={visible} already set, "
           f"NVML index {d.index}")
    if mig_entry:
        return DeviceInfo("cuda", d.name, d.index, d.uuid, entry, True, how + " (a MIG slice)")
    return DeviceInfo("cuda", d.name, d.index, d.uuid, f"GPU-{_bare(d.uuid)}", bool(d.mig_uuids), how)


def _bare(uuid: str) -> str:
    return uuid[4:] if uuid.upper().startswith("GPU-") else uuid


def _match_entry(devices: list[NvmlDevice], entry: str) -> tuple[NvmlDevice | None, bool]:
    """(board, is a MIG slice) for one CUDA_VISIBLE_DEVICES entry."""
    if entry.isdigit():
        found = [d for d in devices if d.index == int(entry)]
        return (found[0] if found else None), False
    low = entry.lower()
    if low.startswith("mig-"):
        for d in devices:
            if any(m.lower() == low for m in d.mig_uuids):
                return d, True
        return None, True
    prefix = low if low.startswith("gpu-") else "gpu-" + low
    found = [d for d in devices if ("gpu-" + _bare(d.uuid).lower()).startswith(prefix)]
    return (found[0] if len(found) == 1 else None), False


def gpu_name_and_capability(index: int) -> tuple[str, str]:
    """(name, "major.minor" compute capability) of the board at this NVML index."""
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(h)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
        return (name.decode() if isinstance(name, bytes) else str(name)), f"{major}.{minor}"
    finally:
        pynvml.nvmlShutdown()


def nvml_devices() -> list[NvmlDevice]:
    """Every board NVML lists, with its MIG slices' UUIDs."""
    import pynvml

    def text(v) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    pynvml.nvmlInit()
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            migs: list[str] = []
            try:
                mig_on = pynvml.nvmlDeviceGetMigMode(h)[0] == 1
            except Exception:  # NVMLError_NotSupported: no MIG on this board (or a binding without the call)
                mig_on = False
            if mig_on:
                for k in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
                    try:
                        migs.append(text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, k))))
                    except pynvml.NVMLError:
                        continue  # no slice at this position
            out.append(NvmlDevice(i, text(pynvml.nvmlDeviceGetName(h)), text(pynvml.nvmlDeviceGetUUID(h)), tuple(migs)))
        return out
    finally:
        pynvml.nvmlShutdown()


def worker_env(dev: DeviceInfo) -> dict[str, str]:
    """Environment for a worker process on this device."""
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if dev.kind == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = dev.cuda_visible or str(dev.gpu_id)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # frameworks must not grab a GPU for a CPU run
    return env

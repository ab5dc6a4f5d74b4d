"""The device layer: which device a run uses, with a stand-in for "no GPU".

GPU ids are physical indices as nvidia-smi shows them. CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA
number devices the same way as NVML; each worker is then given CUDA_VISIBLE_DEVICES=<id>, so inside
it the chosen GPU is cuda:0 for every framework, while NVML keeps reading the physical index.
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
    gpu_id: int | None = None
    uuid: str | None = None

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
    idx = 0 if gpu_id is None else gpu_id
    if idx >= len(gpus):
        raise BadInput(f"--gpu-id {idx}: no such GPU; this machine has {len(gpus)} "
                       f"(ids 0..{len(gpus) - 1}: {', '.join(gpus)})")
    return DeviceInfo("cuda", gpus[idx], idx, _uuid(idx))


def _uuid(idx: int) -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(idx))
            return u.decode() if isinstance(u, bytes) else u
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def worker_env(dev: DeviceInfo) -> dict[str, str]:
    """Environment for a worker process on this device."""
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if dev.kind == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = str(dev.gpu_id)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""  # frameworks must not grab a GPU for a CPU run
    return env

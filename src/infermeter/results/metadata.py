"""The environment fingerprint stored in run.json: hardware, software, versions, the exact command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from infermeter import __version__
from infermeter.device import DeviceInfo, cpu_name

# Distribution names whose versions matter to a result; read from metadata, never imported.
PACKAGES = ("numpy", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "torch",
            "onnx2torch", "tensorrt", "transformers", "tokenizers", "nvidia-ml-py", "mlcommons-loadgen", "psutil")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def package_warnings(versions: dict[str, str | None] | None = None) -> list[str]:
    """Installs that silently change what runs (both ONNX Runtime packages: only the CPU providers remain)."""
    v = package_versions() if versions is None else versions
    out = []
    if v.get("onnxruntime") and v.get("onnxruntime-gpu"):
        out.append(f"both onnxruntime {v['onnxruntime']} and onnxruntime-gpu {v['onnxruntime-gpu']} are installed: "
                   "they share one module, so ONNX Runtime may offer only its CPU providers; keep one "
                   "(GPU machines: pip uninstall onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu)")
    return out


def git_commit() -> str | None:
    """The commit of infermeter's own checkout, if it runs from one. INFERMETER_GIT_COMMIT, when set,
    names it instead: a copied tree (a container image, a machine the source was copied to) may have no
    .git, or a stale one."""
    if os.environ.get("INFERMETER_GIT_COMMIT"):
        return os.environ["INFERMETER_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def host_info() -> dict:
    import psutil

    return {
        "cpu": cpu_name(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 2),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "hostname": platform.node(),
    }


def gpu_info(dev: DeviceInfo) -> dict | None:
    if dev.kind != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            drv = pynvml.nvmlSystemGetDriverVersion()
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            return {"driver": drv.decode() if isinstance(drv, bytes) else drv,
                    "cuda_driver": f"{cuda // 1000}.{(cuda % 1000) // 10}"}
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def fingerprint(dev: DeviceInfo, command: str) -> dict:
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "infermeter": {"version": __version__, "git_commit": git_commit()},
        "command": command,
        "device": {"kind": dev.kind, "name": dev.name, "slug": dev.slug, "gpu_id": dev.gpu_id, "uuid": dev.uuid,
                   "worker_cuda_visible_devices": dev.cuda_visible, "mig": dev.mig, "selection": dev.selection},
        "host": host_info(),
        "gpu": gpu_info(dev),
        "packages": package_versions(),
        "warnings": package_warnings(),
        "env": {k: os.environ.get(k) for k in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "XLA_FLAGS",
                                               "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS") if os.environ.get(k)},
    }

"""Every GPU of one machine: `--gpu-id 0,2` or `--gpu-id all` runs one ordinary sweep per GPU, each into its
own `<model>/<device>` folder.

One GPU after another by default, because GPUs in one host share its CPU, PCIe and power budget;
`--parallel-gpus` runs them at once, each sweep in its own process, and every row says so.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass, field, replace

from infermeter.config import RunConfig
from infermeter.device import choose_gpu, nvml_devices, nvml_gpus
from infermeter.errors import BadInput


@dataclass
class SweepOutcome:
    """What the CLI needs of a sweep that ran in another process."""

    status: int
    out_dir: str
    rows: list[dict] = field(default_factory=list)


def gpu_indices(spec, gpus: tuple[str, ...], why: str) -> list[int]:
    """Physical indices a --gpu-id value names on a machine whose GPUs (by index) are `gpus`."""
    if not gpus:
        raise BadInput(f"--gpu-id {_text(spec)}: no GPU here ({why})")
    ids = list(range(len(gpus))) if spec == "all" else ([spec] if isinstance(spec, int) else list(spec))
    for i in ids:
        if i >= len(gpus):
            raise BadInput(f"--gpu-id {i}: no such GPU; this machine has {len(gpus)} "
                           f"(ids 0..{len(gpus) - 1}: {', '.join(gpus)})")
    return ids


def selectable_gpus() -> tuple[tuple[str, ...], str]:
    """(names of the GPUs --gpu-id numbers, why none): NVML's boards, or where CUDA_VISIBLE_DEVICES is set,
    its entries in order (as --gpu-id N indexes within it: device.choose_gpu)."""
    gpus, why = nvml_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not gpus or visible is None:
        return gpus, why
    entries = [e for e in visible.split(",") if e.strip()]
    if not entries:
        return (), "CUDA_VISIBLE_DEVICES is set but empty"
    devices = nvml_devices()
    return tuple(choose_gpu(devices, k, visible).name for k in range(len(entries))), ""


def _text(spec) -> str:
    return ",".join(map(str, spec)) if isinstance(spec, list) else str(spec)


def per_gpu_configs(cfg: RunConfig) -> list[RunConfig]:
    """One config per selected GPU; a single device (or none named) stays one config, unchanged.

    The folder of each GPU is named after the GPU; when two selected GPUs have the same name, or
    --device-label names them all, '-gpuN' tells them apart.
    """
    if cfg.gpu_id is None or isinstance(cfg.gpu_id, int):
        return [replace(cfg, parallel_gpus=False)]
    if cfg.device == "cpu":
        raise BadInput("--gpu-id given with --device cpu; drop one of them")
    gpus, why = selectable_gpus()
    ids = gpu_indices(cfg.gpu_id, gpus, why)
    names = [gpus[i] for i in ids]
    suffix = cfg.device_label is not None or len(set(names)) < len(names)
    parallel = cfg.parallel_gpus and len(ids) > 1
    out = []
    for i in ids:
        label = f"{cfg.device_label or gpus[i]}-gpu{i}" if suffix else cfg.device_label
        out.append(replace(cfg, device="cuda", gpu_id=i, device_label=label, parallel_gpus=parallel,
                           json_path=_per_gpu_json(cfg.json_path, i) if len(ids) > 1 else cfg.json_path))
    return out


def _per_gpu_json(path: str | None, idx: int) -> str | None:
    if not path:
        return None
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-gpu{idx}.{ext}" if dot else f"{path}-gpu{idx}"


def run_sweeps(cfg: RunConfig) -> list[SweepOutcome]:
    """Run the sweep on every selected device; returns one outcome per device, in --gpu-id order."""
    return run_configs(per_gpu_configs(cfg))


def run_configs(configs: list[RunConfig]) -> list[SweepOutcome]:
    """One sweep per config: in turn, or all at once in separate processes when they say parallel_gpus."""
    from infermeter.sweep import run_sweep

    if not configs[0].parallel_gpus:
        outcomes = []
        for c in configs:
            status, sweep = run_sweep(c)
            outcomes.append(SweepOutcome(status, str(sweep.out_dir), sweep.rows))
        return outcomes
    ctx = mp.get_context("spawn")
    children = []
    for c in configs:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(replace(c, quiet=True).to_dict(), send),
                           name=f"infermeter-gpu{c.gpu_id}")
        proc.start()
        send.close()
        children.append((c, proc, recv))
    outcomes, errors = [], []
    for c, proc, recv in children:
        try:
            kind, payload = recv.recv()
        except (EOFError, OSError):
            kind, payload = "error", f"GPU {c.gpu_id}: its sweep process died (exit code {proc.exitcode})"
        proc.join()
        if kind == "error":
            errors.append(payload)
        else:
            outcomes.append(SweepOutcome(**payload))
    if errors:
        raise BadInput("; ".join(errors))
    return outcomes


def _child(cfg_dict: dict, conn) -> None:
    from infermeter.sweep import run_sweep

    try:
        status, sweep = run_sweep(RunConfig.from_dict(cfg_dict))
        conn.send(("ok", {"status": status, "out_dir": str(sweep.out_dir), "rows": sweep.rows}))
    except BadInput as e:
        conn.send(("error", f"GPU {cfg_dict['gpu_id']}: {e}"))
    finally:
        conn.close()

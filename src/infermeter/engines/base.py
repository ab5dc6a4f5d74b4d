"""The engine contract: build a session from cached artifacts, run one synchronous inference.

Device synchronisation, IO binding and thread settings live inside each engine, never in scenarios.
Engine modules import their framework lazily (inside methods), so importing them is cheap.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

ENGINES: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine selectable by its `name`."""
    if cls.name in ENGINES and ENGINES[cls.name] is not cls:
        raise ValueError(f"engine name {cls.name!r} registered twice")
    ENGINES[cls.name] = cls
    return cls


def modules_missing(*modules: str) -> list[str]:
    """Which of these importable modules are absent, without importing them."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


@dataclass
class EngineContext:
    """Where and how an engine runs; filled by the worker from the run config."""

    device: str  # "cpu" or "cuda"
    gpu_id: int | None = None  # physical index (NVML); inside the worker CUDA sees it as cuda:0
    num_threads: int | None = None
    io: str = "host"  # "host": host->device copy inside timing; "device": inputs resident
    cache_dir: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return self.num_threads or os.cpu_count() or 1


class Engine:
    """Base class. Subclasses set the ClassVars and implement prepare/infer/to_numpy."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: device -> precisions this engine can run there
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: model sources it can take: "keras" (SavedModel/Keras file), "onnx" (any model exported to ONNX)
    sources: ClassVar[tuple[str, ...]] = ("onnx",)
    #: Python modules it needs
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.build_s: float | None = None  # conversion/compilation wall time
        self.load_s: float | None = None  # load into a ready session
        self.info: dict[str, Any] = {}  # how it is configured, for run.json

    # ---- availability -------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = modules_missing(*cls.requires)
        if missing:
            return False, f"not installed: {', '.join(missing)}"
        return True, ""

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        if device not in cls.precisions:
            return False, f"{cls.name} does not run on {device}"
        if precision not in cls.precisions[device]:
            return False, f"{cls.name} has no {precision} on {device}"
        if not set(model.sources) & set(cls.sources):
            return False, f"{cls.name} takes {'/'.join(cls.sources)} models; {model.name} is {'/'.join(model.sources)}"
        return True, ""

    # ---- the session --------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        raise NotImplementedError

    def infer(self, inputs: Any) -> Any:
        """One synchronous inference: returns only when outputs are ready (device synchronised)."""
        raise NotImplementedError

    def to_numpy(self, outputs: Any) -> np.ndarray:
        """Outputs as one float array [batch, ...] (the first output), for the check only."""
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        if isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        return np.asarray(outputs)

    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        """Convert host inputs to what `infer` takes. With io=device, this is the resident copy."""
        return inputs

    def make_clients(self, n: int) -> list[Callable[[Any], Any]]:
        """N callables that may run concurrently, one per client thread. Engines with multi-request
        APIs (OpenVINO infer requests, CUDA streams) override this; the default shares `infer`."""
        return [self.infer] * n

    def offline_clients(self) -> list[Callable[[Any], Any]]:
        """Clients for the offline (maximum-throughput) scenario, run concurrently when there are several.
        Engines whose best throughput needs several requests in flight (OpenVINO's THROUGHPUT mode, as
        benchmark_app runs it) return them here; the default is one synchronous client."""
        return [self.infer]

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
        """Optional: {"h2d_ms", "compute_ms", "d2h_ms"} for one inference, where the engine can split them."""
        return None

    def reset_allocator_peak(self) -> None:
        """Start a new peak for allocator_peak_mb (called before each measured cell)."""

    def allocator_peak_mb(self) -> float | None:
        """The engine's own allocator peak on the device since the last reset, where it keeps one."""
        return None

    def close(self) -> None:
        pass


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.s` — wall seconds of a block."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        return False

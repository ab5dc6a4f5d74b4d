"""The engine contract: build a session from cached artifacts, run one synchronous inference.

Device synchronisation, IO binding and thread settings live inside each engine, never in scenarios.
Engine modules import their framework lazily (inside methods), so importing them is cheap.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from infermeter.device import nvml_gpus

ENGINES: dict[str, type[Engine]] = {}

#: how staged_timings splits H2D / compute / D2H (the row's stage_split_method): figures taken differently
#: are not comparable, so every split names its method
STAGE_SPLIT_CUDA_EVENTS = "CUDA events on the engine's stream, pinned host memory"
STAGE_SPLIT_HOST_CLOCK = "host clock around synchronous ORT calls, pageable memory, binding inside compute"


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine selectable by its `name`."""
    if cls.name in ENGINES and ENGINES[cls.name] is not cls:
        raise ValueError(f"engine name {cls.name!r} registered twice")
    ENGINES[cls.name] = cls
    return cls


def gpu_present(engine: str) -> tuple[bool, str]:
    """The one GPU requirement check: NVML sees an NVIDIA GPU (cached by nvml_gpus; imports no framework)."""
    gpus, no_gpu_why = nvml_gpus()
    if not gpus:
        return False, f"{engine} on cuda needs an NVIDIA GPU: {no_gpu_why}"
    return True, ""


def modules_missing(*modules: str) -> list[str]:
    """Which of these importable modules are absent, without importing them."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


SHAPE_MODES = ("static", "dynamic")
#: the key of the one artifact that serves every batch size in dynamic shape mode
DYNAMIC = "dynamic"


@dataclass(frozen=True)
class EngineOptions:
    """The options engines read, typed and validated in one place. The worker builds them from the run
    config (`from_config`: every field here that RunConfig also has, plus the group's stream count);
    an engine reads the ones that concern it and ignores the rest. A new engine option is a field here
    (and a RunConfig field of the same name when users set it)."""

    #: the most concurrent clients any cell of the group drives (OpenVINO compiles NUM_STREAMS for it)
    streams: int = 1
    #: torch-compile: torch.compile's mode, --compile-mode (None: max-autotune on cuda, default on the CPU)
    compile_mode: str | None = None
    #: onnxruntime: execution mode (sequential/parallel) and graph optimisation level (None: sequential, all)
    ort_execution_mode: str | None = None
    ort_graph_level: str | None = None
    #: openvino offline: the performance hint (None: a probe picks per batch size) and THROUGHPUT's stream count
    ov_hint: str | None = None
    ov_streams: int | None = None
    #: tensorrt: the builder optimisation level (None: TensorRT's default)
    trt_opt_level: int | None = None
    #: int8: how many calibration inputs quantization takes, --calibration-items
    calibration_items: int = 64
    #: "static": one artifact compiled for each cell's exact input shape; "dynamic": one for every batch size
    shape_mode: str = "static"

    def __post_init__(self) -> None:
        if not isinstance(self.streams, int) or self.streams <= 0:
            raise ValueError(f"streams must be a positive integer, got {self.streams!r}")
        if not isinstance(self.calibration_items, int) or self.calibration_items <= 0:
            raise ValueError(f"calibration_items must be a positive integer, got {self.calibration_items!r}")
        if self.shape_mode not in SHAPE_MODES:
            raise ValueError(f"shape_mode must be one of {', '.join(SHAPE_MODES)}, got {self.shape_mode!r}")

    @classmethod
    def from_config(cls, cfg, **given) -> EngineOptions:
        """The options a run config sets (fields of the same name), overridden by `given`."""
        names = {f.name for f in fields(cls)}
        taken = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
        return cls(**{**taken, **given})


@dataclass(frozen=True)
class EngineContext:
    """Where and how an engine runs; filled by the worker from the run config."""

    device: str  # "cpu" or "cuda"
    gpu_id: int | None = None  # physical index (NVML); inside the worker CUDA sees it as cuda:0
    num_threads: int | None = None
    io: str = "host"  # "host": host->device copy inside timing; "device": inputs resident
    cache_dir: str = ""
    options: EngineOptions = field(default_factory=EngineOptions)

    @property
    def threads(self) -> int:
        return self.num_threads or os.cpu_count() or 1


class Engine:
    """Base class. Subclasses set the ClassVars and implement prepare/infer/to_numpy.

    Shapes: an engine runs as its own tool would, compiled for the exact input shape of the cell
    (ctx.options.shape_mode "static", the default), or, in "dynamic" mode, one artifact compiled for a
    range of batch sizes serves them all. The caller names the batch size before running it:
    `activate(batch)` is called by the check before its chunks and by the measurer before every cell.
    In static mode the engine compiles for that batch at its first activation and keeps the result in a
    dict keyed by shape (`by_shape`, for the life of the worker, so a group's cells at one batch size
    share one compile); in dynamic mode the key is DYNAMIC and one compile serves every batch size.
    `compile_s[key]` holds each compile's seconds; `active_compile_s` the compile seconds of the artifact
    serving now, which the measurer records on the cell (never inside timing). Engines that compile
    lazily at the first call (torch.compile, XLA) make that first call inside `activate`, so the compile
    is timed there too. After `prepare` the engine is active at `max_batch`, so a prepared engine runs
    at that batch size without an explicit activation.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: device -> precisions this engine can run there
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: model sources it can take: "keras" (SavedModel/Keras file), "onnx" (any model exported to ONNX)
    sources: ClassVar[tuple[str, ...]] = ("onnx",)
    #: sources it also reads when the model has them and they can be built here (it chooses between them)
    optional_sources: ClassVar[tuple[str, ...]] = ()
    #: Python modules it needs
    requires: ClassVar[tuple[str, ...]] = ()
    #: precision -> why this engine has no path for it (the skipped row's reason)
    no_path: ClassVar[dict[str, str]] = {}
    #: settings `infermeter tune` may vary for this engine: RunConfig field -> device -> values worth trying,
    #: the engine's own default first (the search starts from it)
    #: (the thread count every engine honours on the CPU is the tuner's own; see tune/space.py)
    tunables: ClassVar[dict[str, dict[str, tuple]]] = {}

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.build_s: float | None = None  # conversion/compilation wall time
        self.load_s: float | None = None  # load into a ready session
        self.info: dict[str, Any] = {}  # how it is configured, for run.json
        self.by_shape: dict[Any, Any] = {}  # compiled artifacts: batch size (static) or DYNAMIC -> artifact
        self.compile_s: dict[Any, float] = {}  # the same keys -> seconds that compile took
        self.active_compile_s: float | None = None  # compile seconds of the artifact serving now
        self.batch: int | None = None  # the batch size activated last

    @property
    def shape_mode(self) -> str:
        return self.ctx.options.shape_mode

    def shape_key(self, batch: int) -> Any:
        """The by_shape key that serves `batch`: the batch size itself (static) or DYNAMIC."""
        return batch if self.shape_mode == "static" else DYNAMIC

    def compiled_for(self, key: Any, compile_fn: Callable[[Any], Any]) -> Any:
        """The artifact for `key`, compiled by compile_fn(key) at its first use (timed into compile_s)
        and kept; active_compile_s becomes its compile time."""
        if key not in self.by_shape:
            with Stopwatch() as sw:
                self.by_shape[key] = compile_fn(key)
            self.compile_s[key] = sw.s
        self.active_compile_s = self.compile_s[key]
        return self.by_shape[key]

    # ---- availability -------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = modules_missing(*cls.requires)
        if missing:
            return False, f"not installed: {', '.join(missing)}"
        if set(cls.precisions) == {"cuda"}:  # a GPU-only engine is unavailable without a GPU
            return gpu_present(cls.name)
        return True, ""

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        """Whether this engine can run this model at this precision there; the general rules here,
        engine-specific ones (after calling this) in subclasses."""
        if device not in cls.precisions:
            return False, f"{cls.name} does not run on {device}"
        if precision not in cls.precisions[device]:
            return False, f"{cls.name} has no {precision} on {device}" + (
                f": {cls.no_path[precision]}" if precision in cls.no_path else "")
        if not set(model.sources) & set(cls.sources):
            return False, f"{cls.name} takes {'/'.join(cls.sources)} models; {model.name} is {'/'.join(model.sources)}"
        if device == "cuda":
            return gpu_present(cls.name)
        return True, ""

    # ---- the session --------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        raise NotImplementedError

    def activate(self, batch: int) -> None:
        """Run inputs of `batch` items from now on (see the class doc). Engines with nothing to compile
        per shape keep this default, which only remembers the batch."""
        self.batch = batch

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

    def outputs_to_numpy(self, outputs: Any) -> list[np.ndarray]:
        """Every output, in graph order, as arrays [batch, ...], for the check only."""
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return [np.asarray(self.to_numpy([o])) for o in outputs]

    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        """Convert host inputs to what `infer` takes. With io=device, this is the resident copy."""
        return inputs

    def make_clients(self, n: int) -> list[Callable[[Any], Any]]:
        """N callables that may run concurrently, one per client thread. Engines with multi-request
        APIs (OpenVINO infer requests, CUDA streams) override this; the default shares `infer`. A
        client's outputs may live in buffers it reuses (valid until that client's next call): the
        scenarios discard them, and `infer` is the call whose outputs are kept."""
        return [self.infer] * n

    def offline_clients(self) -> list[Callable[[Any], Any]]:
        """Clients for the offline (maximum-throughput) scenario, run concurrently when there are several.
        Engines whose best throughput needs several requests in flight (OpenVINO's THROUGHPUT mode, as
        benchmark_app runs it) return them here; the default is one synchronous client."""
        return [self.infer]

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
        """Optional: {"h2d_ms", "compute_ms", "d2h_ms", "stage_split_method"} for one inference, where the
        engine can split them (the method: STAGE_SPLIT_CUDA_EVENTS or STAGE_SPLIT_HOST_CLOCK)."""
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

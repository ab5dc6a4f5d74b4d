"""One config object for a run: the same dataclass behind the CLI, config files and the Python API."""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field, fields

from infermeter.errors import BadInput
from infermeter.parsing import (
    gpu_id_spec,
    input_shape_sets,
    input_shapes,
    name_list,
    parse_input_ranges,
    positive_float_list,
    positive_int_list,
)
from infermeter.scenarios.registry import SCENARIOS

DEVICES = ("auto", "cpu", "cuda")
#: how precisions are listed (widest first); which exist is what the registered engines declare
PRECISION_ORDER = ("fp32", "tf32", "bf16", "fp16", "int8")
# what --precisions auto leaves out: bf16 and int8 (int8 builds calibrated artifacts) run only when asked
NOT_AUTO = ("bf16", "int8")
IO_MODES = ("host", "device")
SHAPE_MODES = ("static", "dynamic")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
ORT_EXECUTION_MODES = ("sequential", "parallel")
ORT_GRAPH_LEVELS = ("disable", "basic", "extended", "all")
OV_HINTS = ("latency", "throughput")
TRT_OPT_LEVELS = (0, 1, 2, 3, 4, 5)
CHECK_MODES = ("warn", "strict", "off")


def _help(text: str, *, flag: str | None = None, aliases: tuple[str, ...] = (), choices: tuple[str, ...] | None = None,
          cli: bool = True, positional: bool = False, repeatable: bool = False, metavar: str | None = None, **kw):
    """A RunConfig field with everything the CLI needs: its help text, its flag (default: the field name with
    dashes), older spellings still accepted (as flags and as config-file keys), choices, whether it is on
    the command line at all, whether the flag may be given several times (a list[str] field: one item per
    use, taken as written) and the metavar shown in --help. The argparse type comes from the field's
    annotation (see cli.add_run_options)."""
    return field(metadata={"help": text, "flag": flag, "aliases": tuple(aliases), "choices": choices, "cli": cli,
                           "positional": positional, "repeatable": repeatable, "metavar": metavar}, **kw)


@dataclass
class RunConfig:
    model: str = _help("model name, path to an .onnx file, or a model folder", positional=True, default="mobilenet_v3_large")
    engines: list[str] = _help("engine names (comma list), or all: every engine available here", default_factory=lambda: ["all"])
    precisions: list[str] = _help("precisions (comma list, e.g. fp32,fp16,bf16,int8); auto: every precision each "
                                  "engine supports on the device except bf16 and int8",
                                  default_factory=lambda: ["auto"])
    device: str = _help("cpu, cuda, or auto (cuda when a GPU is visible)", choices=DEVICES, default="auto")
    gpu_id: int | list[int] | str | None = _help(
        "physical GPU index as nvidia-smi shows it; a comma list (0,2) or 'all' sweeps each GPU in turn, "
        "each into its own results folder", default=None)
    parallel_gpus: bool = _help("with several --gpu-id, sweep every GPU at once (separate processes) instead of "
                                "one after another; recorded in run.json and every row", default=False)
    device_label: str | None = _help("name the device in results (e.g. to compare settings on one machine)", default=None)
    batch_sizes: list[int] | None = _help("batch sizes to sweep; default: " + "; ".join(
        f"{','.join(map(str, s.default_batch_sizes))} for {s.name}" for s in SCENARIOS.values()), default=None)
    scenarios: list[str] = _help(f"load scenarios: {', '.join(SCENARIOS)} (comma list)",
                                  flag="--scenario", default_factory=lambda: ["offline"])
    streams: list[int] = _help("concurrent clients for multi-stream", default_factory=lambda: [1])
    target_qps: list[float] = _help("arrival rates for the server scenario", default_factory=list)
    latency_bound_ms: float | None = _help("p99 bound the server scenario must meet", default=None)
    warmup: int = _help("warm-up iterations", default=10)
    warmup_time_s: float | None = _help("warm-up seconds (overrides --warmup)", aliases=("--warmup-time",),
                                       default=None)
    iterations: int | None = _help("measured iterations", default=None)
    time_s: float | None = _help("measured seconds", aliases=("--time",), default=None)
    min_iterations: int = _help("measured iterations at least, whatever the time", default=10)
    target_ci: float | None = _help("run until the 95% CI half-width is within this fraction of the mean", default=None)
    max_time_s: float = _help("upper bound in seconds for --target-ci runs", aliases=("--max-time",), default=60.0)
    results_dir: str = _help("results root", default_factory=lambda: os.environ.get("INFERMETER_RESULTS_DIR", "benchmark_results"))
    cache_dir: str = _help("artifact cache", default_factory=lambda: os.environ.get(
        "INFERMETER_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "infermeter")))
    json_path: str | None = _help("also write all rows as JSON here", flag="--json", default=None)
    resume: bool = _help("skip cells already in results.csv", default=False)
    timeout_s: float = _help("per-cell time limit in seconds", aliases=("--timeout",), default=900.0)
    group_timeout_s: float | None = _help("time limit in seconds for one engine group (session build, check and "
                                          "all its cells); past it the worker is killed and every unfinished cell "
                                          "gets a failed row with the reason", default=None)
    weights: str | None = _help("weights file or checkpoint folder; default: seeded synthetic weights", default=None)
    seed: int = _help("seed for synthetic weights and inputs", default=0)
    image: str | None = _help("photograph to build inputs from", default=None)
    input_shapes: list[list[list[int]]] | None = _help(
        'input shape sets, e.g. "[1,224,224,3]"; several experiments separated by ";"', default=None)
    inputs: str | None = _help("your own input items: an .npz with one array per input name (batch on axis 0), "
                               "or a folder of .npy files; they feed the check and the timing pool", default=None)
    input_ranges: list[str] | None = _help("NAME=LOW:HIGH value range of a synthetic input (integers in "
                                           "[LOW, HIGH), floats uniform); repeatable", flag="--input-range",
                                           repeatable=True, metavar="NAME=LOW:HIGH", default=None)
    check: str = _help("correctness check: warn (time models whose reference cannot tell inputs apart, "
                       "unchecked, with a warning), strict (refuse them, exit 2), off (skip the check)",
                       choices=CHECK_MODES, default="warn")
    seq_len: int = _help("sequence length for text models", default=128)
    power_interval_ms: float = _help("telemetry sampling interval (floor 50 ms)", default=100.0)
    energy_time_s: float = _help("minimum energy window in seconds; shorter cells get an extra energy pass (longer "
                                  "where the GPU energy counter's measured update period needs it for <= 1% error)",
                                  aliases=("--energy-time",), default=5.0)
    cooldown_s: float = _help("pause between cells in seconds", aliases=("--cooldown",), default=0.0)
    idle_time_s: float = _help("seconds of idle baseline before the sweep (0 = none)", aliases=("--idle-time",),
                                default=2.0)
    idle_max_wait_s: float = _help("the longest the idle baseline waits for power to stop falling (its last "
                                   "--idle-time-s within 2% of the one before) in seconds", default=60.0)
    num_threads: int | None = _help("intra-op threads per engine; default: all cores", default=None)
    io: str = _help("host: input copies inside the timed region; device: inputs resident on the device",
                     choices=IO_MODES, default="host")
    loadgen: bool = _help("drive the scenario through mlcommons-loadgen", default=False)
    check_samples: int = _help("distinct inputs for the correctness gate", default=8)
    calibration_items: int = _help("int8: real inputs to calibrate quantization on (disjoint from the check inputs)",
                                   default=64)
    heldout_items: int = _help("int8/bf16: held-out real inputs for top-1 agreement and SNR against fp32",
                               default=256)
    worker_memory_limit_mb: int | None = _help("address-space limit for each worker (CPU runs only: CUDA "
                                               "reserves more address space than any sane limit)", default=None)
    compile_mode: str | None = _help("torch.compile mode (default: max-autotune on cuda, default on cpu)",
                                     choices=COMPILE_MODES, default=None)
    ort_execution_mode: str | None = _help("ONNX Runtime: sequential, or parallel (independent graph branches on "
                                           "inter-op threads; default sequential)", choices=ORT_EXECUTION_MODES,
                                           default=None)
    ort_graph_level: str | None = _help("ONNX Runtime graph optimisation level (default all)",
                                        choices=ORT_GRAPH_LEVELS, default=None)
    ov_hint: str | None = _help("OpenVINO offline: latency (one request) or throughput (OpenVINO's optimal "
                                "requests in flight); default: whichever a short probe finds faster per batch size",
                                choices=OV_HINTS, default=None)
    ov_streams: int | None = _help("OpenVINO NUM_STREAMS with --ov-hint throughput (default: OpenVINO's own)",
                                   default=None)
    trt_opt_level: int | None = _help("TensorRT builder optimisation level 0-5 (default: TensorRT's, 3)",
                                      default=None)
    shape_mode: str = _help("static: every cell runs the engine compiled for that cell's exact input shape (as the "
                            "engine's own tools run it); dynamic: one artifact compiled for every batch size "
                            "(the dynamic-batch deployment; its range is recorded in run.json)",
                            choices=SHAPE_MODES, default="static")
    quiet: bool = _help("no progress bar", default=False)
    wide: bool = _help("summary table: every column and every reason in full (default: it fits 120 columns, "
                       "long reasons as numbered notes under it)", default=False)
    model_extra: dict = _help("model-specific options (e.g. tiny BERT sizes for tests)", cli=False,
                              default_factory=dict)
    command: str = _help("the command line that started the run", cli=False, default="")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        if self.device not in DEVICES:
            raise BadInput(f"--device: unknown {self.device!r}; choose from {', '.join(DEVICES)}")
        for s in self.scenarios:
            if s not in SCENARIOS:
                raise BadInput(f"--scenario: unknown {s!r}; choose from {', '.join(SCENARIOS)}")
            if SCENARIOS[s].takes_qps and not self.target_qps:
                raise BadInput(f"--scenario {s} needs --target-qps")
        known = known_precisions() if self.precisions != ["auto"] else ()
        for p in self.precisions:
            if p != "auto" and p not in known:
                raise BadInput(f"--precisions: unknown {p!r}; choose from {', '.join(known)}")
        if self.check not in CHECK_MODES:
            raise BadInput(f"--check: unknown {self.check!r}; choose from {', '.join(CHECK_MODES)}")
        parse_input_ranges(self.input_ranges)
        if self.io not in IO_MODES:
            raise BadInput(f"--io: unknown {self.io!r}; choose from {', '.join(IO_MODES)}")
        if self.shape_mode not in SHAPE_MODES:
            raise BadInput(f"--shape-mode: unknown {self.shape_mode!r}; choose from {', '.join(SHAPE_MODES)}")
        for name in ("batch_sizes", "streams"):
            vals = getattr(self, name)
            if vals is None and name == "batch_sizes":
                continue
            if not vals or any((not isinstance(v, int)) or v <= 0 for v in vals):
                raise BadInput(f"{_flag(name)}: must be positive integers, got {vals}")
        for name in ("warmup", "min_iterations", "check_samples"):
            if getattr(self, name) < 0:
                raise BadInput(f"{_flag(name)}: must not be negative")
        for name in ("iterations",):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise BadInput(f"--{name}: must be positive, got {v}")
        for name in ("time_s", "warmup_time_s", "target_ci", "latency_bound_ms", "group_timeout_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise BadInput(f"{_flag(name)}: must be positive, got {v}")
        if self.target_ci is not None and self.target_ci >= 1:
            raise BadInput(f"--target-ci: a fraction below 1 (0.01 = 1%), got {self.target_ci}")
        for name in ("max_time_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise BadInput(f"{_flag(name)}: must be positive, got {getattr(self, name)}")
        for name in ("energy_time_s", "cooldown_s", "idle_time_s", "idle_max_wait_s"):
            if getattr(self, name) < 0:
                raise BadInput(f"{_flag(name)}: must not be negative, got {getattr(self, name)}")
        if self.power_interval_ms < 50:
            raise BadInput(f"--power-interval-ms: {self.power_interval_ms} is below the 50 ms floor "
                           "(NVML's readings do not update faster)")
        if self.seq_len <= 0:
            raise BadInput(f"--seq-len: must be positive, got {self.seq_len}")
        for name in ("calibration_items", "heldout_items"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        if self.check_samples < 2:
            raise BadInput("--check-samples: at least 2 distinct inputs are needed to prove the reference informative")
        if self.num_threads is not None and self.num_threads <= 0:
            raise BadInput(f"--num-threads: must be positive, got {self.num_threads}")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise BadInput(f"--compile-mode: unknown {self.compile_mode!r}; choose from {', '.join(COMPILE_MODES)}")
        for name, allowed in (("ort_execution_mode", ORT_EXECUTION_MODES), ("ort_graph_level", ORT_GRAPH_LEVELS),
                              ("ov_hint", OV_HINTS), ("trt_opt_level", TRT_OPT_LEVELS)):
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                raise BadInput(f"{_flag(name)}: unknown {getattr(self, name)!r}; choose from "
                               f"{', '.join(map(str, allowed))}")
        if self.ov_streams is not None and self.ov_streams <= 0:
            raise BadInput(f"--ov-streams: must be positive, got {self.ov_streams}")

    def batch_sizes_for(self, scenario: str) -> list[int]:
        if self.batch_sizes:
            return self.batch_sizes
        return list(SCENARIOS[scenario].default_batch_sizes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Config files and the worker: field names, or any of a field's flag spellings with underscores
        (`max_time`, `time`, `scenario`, ...)."""
        data = canonical_keys(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise BadInput(f"config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def known_precisions() -> tuple[str, ...]:
    """Every precision some registered engine declares on some device: a precision becomes valid when an
    engine supports it. Engine modules import no framework, so this is cheap."""
    from infermeter.engines import load_all

    declared = {p for cls in load_all().values() for ps in cls.precisions.values() for p in ps}
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    return tuple(sorted(declared, key=lambda p: (rank.get(p, len(rank)), p)))


def flags_of(f) -> list[str]:
    """Every spelling of a field's flag, the main one first."""
    return [f.metadata.get("flag") or "--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ())]


_FLAG = {f.name: flags_of(f)[0] for f in fields(RunConfig)}
# older and flag spellings of each field, as keys (`max_time` -> `max_time_s`, `scenario` -> `scenarios`)
_OLD_KEYS = {flag[2:].replace("-", "_"): f.name for f in fields(RunConfig) for flag in flags_of(f)
             if flag[2:].replace("-", "_") != f.name}


def _flag(name: str) -> str:
    return _FLAG.get(name, "--" + name.replace("_", "-"))


def canonical_keys(data: dict) -> dict:
    """Rename older spellings of a setting to its field name; one setting given twice is bad input."""
    out: dict = {}
    given_as: dict = {}
    for key, value in data.items():
        name = _OLD_KEYS.get(key, key)
        if name in out:
            raise BadInput(f"config: {name} is given twice (as {given_as[name]} and {key})")
        out[name], given_as[name] = value, key
    return out


def _accept_old_names(init):
    @functools.wraps(init)
    def __init__(self, *args, **kw):
        init(self, *args, **canonical_keys(kw))
    return __init__


RunConfig.__init__ = _accept_old_names(RunConfig.__init__)  # RunConfig(max_time=...) keeps working


def _coerce(name: str, annotation: str, value):
    """Check a value against its field's type; accept the string forms config files and env use."""
    flag = _flag(name)
    optional = "None" in annotation
    if name == "gpu_id" and value is not None:
        return gpu_id_spec(value)
    if value is None:
        if optional:
            return None
        raise BadInput(f"{flag}: a value is required")
    base = annotation.replace(" | None", "")
    if base == "list[int]":
        if isinstance(value, str):
            return positive_int_list(value, flag)
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise BadInput(f"{flag}: expected a list of integers, got {value!r}")
        return value
    if base == "list[float]":
        if isinstance(value, str):
            return positive_float_list(value, flag)
        value = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and v > 0 for v in value):
            raise BadInput(f"{flag}: expected a list of positive numbers, got {value!r}")
        return [float(v) for v in value]
    if base == "list[str]":
        if isinstance(value, str):
            return name_list(value, flag)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise BadInput(f"{flag}: expected a list of names, got {value!r}")
        return value
    if base == "list[list[list[int]]]":
        if isinstance(value, str):
            return input_shape_sets(value)
        if not isinstance(value, list) or not value:
            raise BadInput(f"{flag}: expected shapes like [[1,224,224,3]], got {value!r}")
        import json

        return [input_shapes(",".join(json.dumps(s) for s in shape_set)) if isinstance(shape_set, list)
                and shape_set else input_shapes(repr(shape_set)) for shape_set in value]
    if base == "bool":
        if not isinstance(value, bool):
            raise BadInput(f"{flag}: expected true or false, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(f"{flag}: expected an integer, got {value!r}")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise BadInput(f"{flag}: expected a number, got {value!r}")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise BadInput(f"{flag}: expected text, got {value!r}")
        return value
    if base == "dict":
        if not isinstance(value, dict):
            raise BadInput(f"{flag}: expected a mapping, got {value!r}")
        return value
    return value

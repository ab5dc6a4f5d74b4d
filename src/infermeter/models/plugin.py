"""Users' own models: a folder with config.yaml + load.py, or a `UserModel` subclass in Python.

config.yaml::

    name: my_model                     # letters, digits, _ . -
    framework: torch                   # torch: load() returns a torch.nn.Module; onnx: a path to an .onnx file
    task: classification               # or generic
    inputs:
      - name: image
        dtype: float32
        dims_names: [batch, channels, height, width]
        example_shape: [1, 3, 224, 224]      # the shape inputs are generated with (batch axis included)
        runtime_dims: [-1, 3, 224, 224]      # -1: dynamic in the exported graph
        tensorrt_profile: {min: [1, 3, 224, 224], opt: [8, 3, 224, 224], max: [32, 3, 224, 224]}  # optional
    outputs:
      - name: logits
        dims_names: [batch, classes]         # optional

load.py::

    from infermeter.models.plugin import register_loader

    @register_loader
    def load(config):      # config: config.yaml's mapping plus 'folder' (the model folder's absolute path)
        return MyNet()     # or, for framework onnx, a path (relative to the folder or absolute)

Torch models: weights are built once, seeded (torch.manual_seed(options.seed) before load() is
called), stored as a state dict in the artifact store and loaded back with weights_only=True, so the
ONNX export, the reference and the torch engines all use the same weights. --weights PATH replaces
them with a state dict file. Forward is called with the inputs by position, in config order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.check import reference_problem
from infermeter.errors import BadInput
from infermeter.models.base import InputSpec, Model, ModelOptions
from infermeter.models.onnx_file import (
    SUPPORTED_DTYPES,
    copy_onnx,
    onnxruntime_outputs,
    read_onnx_graph,
    specs_from_dims,
)
from infermeter.models.reference import (
    export_onnx,
    load_state_dict,
    random_item,
    save_state_dict,
    torch_reference,
    write_reference,
)

FRAMEWORKS = ("torch", "onnx")
TASKS = ("classification", "generic")
TORCH_WEIGHTS = "weights.pt"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

# ---- the loader registry ----------------------------------------------------------------------------
_LOADERS: dict[str, list[Callable]] = {}


def register_loader(fn: Callable) -> Callable:
    """Decorator for load.py's loader: `@register_loader def load(config): ...`."""
    _LOADERS.setdefault(fn.__module__, []).append(fn)
    return fn


@functools.lru_cache(maxsize=32)
def _import_loader(load_py: str, digest: str) -> Callable:
    """Import a folder's load.py (once per content) and return the one function it registered."""
    module_name = f"infermeter_user_model_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, load_py)
    if spec is None or spec.loader is None:
        raise BadInput(f"{load_py}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _LOADERS.pop(module_name, None)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise BadInput(f"{load_py}: import failed ({type(e).__name__}: {' '.join(str(e).split())})") from e
    loaders = _LOADERS.get(module_name, [])
    if len(loaders) != 1:
        raise BadInput(f"{load_py}: expected exactly one function decorated with @register_loader, found {len(loaders)}")
    return loaders[0]


# ---- config.yaml --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputConfig:
    name: str
    dtype: str
    dims_names: tuple[str, ...]
    example_shape: tuple[int, ...]
    runtime_dims: tuple[int, ...]
    tensorrt_profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # (min, opt, max)


@dataclass(frozen=True)
class OutputConfig:
    name: str
    dims_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PluginConfig:
    name: str
    framework: str
    task: str
    inputs: tuple[InputConfig, ...]
    outputs: tuple[OutputConfig, ...]
    raw: dict


class _Fields:
    """Field checks that raise BadInput with one line naming the field, e.g. 'config.yaml: inputs[0].dtype'."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, problem: str):
        raise BadInput(f"{self.where}: {field} {problem}")

    def mapping(self, value, field: str, required: set[str], optional: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(field, f"must be a mapping, got {type(value).__name__}")
        prefix = f"{field}." if field else ""
        for key in value:
            if key not in required | optional:
                self.fail(f"{prefix}{key}", f"is not a known field (known: {', '.join(sorted(required | optional))})")
        for key in sorted(required):
            if key not in value:
                self.fail(f"{prefix}{key}", "is missing")
        return value

    def text(self, value, field: str, pattern: re.Pattern | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.fail(field, f"must be a non-empty string, got {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(field, f"{value!r} may hold only letters, digits, '_', '.', '-'")
        return value

    def choice(self, value, field: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(field, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def ints(self, value, field: str, allow_dynamic: bool = False) -> tuple[int, ...]:
        ok = isinstance(value, list) and value and all(
            isinstance(d, int) and not isinstance(d, bool) and (d > 0 or (allow_dynamic and d == -1)) for d in value)
        if not ok:
            kind = "positive integers or -1" if allow_dynamic else "positive integers"
            self.fail(field, f"must be a non-empty list of {kind}, got {value!r}")
        return tuple(value)

    def names(self, value, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(n, str) and n for n in value):
            self.fail(field, f"must be a non-empty list of names, got {value!r}")
        return tuple(value)

    def items(self, value, field: str) -> list:
        if not isinstance(value, list) or not value:
            self.fail(field, f"must be a non-empty list, got {value!r}")
        return value


def _parse_input(f: _Fields, value, i: int) -> InputConfig:
    at = f"inputs[{i}]"
    d = f.mapping(value, at, {"name", "dtype", "dims_names", "example_shape", "runtime_dims"}, {"tensorrt_profile"})
    name = f.text(d["name"], f"{at}.name")
    dtype = d["dtype"]
    if dtype not in SUPPORTED_DTYPES:
        f.fail(f"{at}.dtype", f"{dtype!r} is not a dtype (supported: {', '.join(SUPPORTED_DTYPES)})")
    dims_names = f.names(d["dims_names"], f"{at}.dims_names")
    example = f.ints(d["example_shape"], f"{at}.example_shape")
    runtime = f.ints(d["runtime_dims"], f"{at}.runtime_dims", allow_dynamic=True)
    rank = len(example)
    for field, seq in ((f"{at}.dims_names", dims_names), (f"{at}.runtime_dims", runtime)):
        if len(seq) != rank:
            f.fail(field, f"has {len(seq)} entries but example_shape has {rank}")
    for a, (r, e) in enumerate(zip(runtime, example, strict=True)):
        if r != -1 and r != e:
            f.fail(f"{at}.example_shape", f"axis {a} is {e} but runtime_dims fixes it to {r}")
    profile = None
    if d.get("tensorrt_profile") is not None:
        p = f.mapping(d["tensorrt_profile"], f"{at}.tensorrt_profile", {"min", "opt", "max"})
        shapes = tuple(f.ints(p[k], f"{at}.tensorrt_profile.{k}") for k in ("min", "opt", "max"))
        for k, s in zip(("min", "opt", "max"), shapes, strict=True):
            if len(s) != rank:
                f.fail(f"{at}.tensorrt_profile.{k}", f"has {len(s)} entries but example_shape has {rank}")
            for a, (r, v) in enumerate(zip(runtime, s, strict=True)):
                if r != -1 and r != v:
                    f.fail(f"{at}.tensorrt_profile.{k}", f"axis {a} is {v} but runtime_dims fixes it to {r}")
        lo, mid, hi = shapes
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            f.fail(f"{at}.tensorrt_profile", f"needs min <= opt <= max on every axis, got {list(map(list, shapes))}")
        profile = shapes
    return InputConfig(name, dtype, dims_names, example, runtime, profile)


def parse_config(data, where: str = "config.yaml") -> PluginConfig:
    """Validate a plugin configuration mapping; BadInput names the first bad field."""
    f = _Fields(where)
    d = f.mapping(data, "", {"name", "framework", "task", "inputs", "outputs"})
    name = f.text(d["name"], "name", _NAME_RE)
    framework = f.choice(d["framework"], "framework", FRAMEWORKS)
    task = f.choice(d["task"], "task", TASKS)
    inputs = tuple(_parse_input(f, v, i) for i, v in enumerate(f.items(d["inputs"], "inputs")))
    outputs = []
    for i, v in enumerate(f.items(d["outputs"], "outputs")):
        o = f.mapping(v, f"outputs[{i}]", {"name"}, {"dims_names"})
        dims = f.names(o["dims_names"], f"outputs[{i}].dims_names") if o.get("dims_names") is not None else None
        outputs.append(OutputConfig(f.text(o["name"], f"outputs[{i}].name"), dims))
    for kind, items in (("inputs", inputs), ("outputs", outputs)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                f.fail(f"{kind}[{i}].name", f"{item.name!r} is used twice")
            seen.add(item.name)
    return PluginConfig(name, framework, task, inputs, tuple(outputs), dict(d))


def read_config(folder: Path) -> PluginConfig:
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        raise BadInput(f"model folder {folder}: no config.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"config.yaml: not valid YAML{at} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    except UnicodeDecodeError:
        raise BadInput("config.yaml: not UTF-8 text") from None
    return parse_config(data, "config.yaml")


# ---- the Python API ------------------------------------------------------------------------------------
class UserModel:
    """Subclass to benchmark a model written in Python; pass an instance to `from_user_model`.

    Set `name`, `task`, `inputs` and `outputs` (the same fields as config.yaml) and implement
    `build()`. Override `example_inputs` to feed real data and `export_onnx` to export differently.
    In a sweep the object is sent to worker processes: define the class in an importable module.
    """

    name: str = "user_model"
    framework: str = "torch"
    task: str = "classification"
    inputs: list[dict] = []
    outputs: list[dict] = []

    def config(self) -> PluginConfig:
        data = {"name": self.name, "framework": self.framework, "task": self.task,
                "inputs": list(self.inputs), "outputs": list(self.outputs)}
        return parse_config(data, type(self).__name__)

    def build(self):
        """A fresh torch.nn.Module (weights are overwritten by the stored ones); for framework 'onnx',
        a path to an ONNX file."""
        raise NotImplementedError(f"{type(self).__name__}.build() is not implemented")

    def example_inputs(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """`batch` distinct items as one batch, by input name; default: seeded synthetic values
        (floats ~ N(0,1), integers in [0, 100), masks 1s) of each input's example_shape."""
        specs = config_specs(self.config(), None)
        items = [random_item(specs, seed, i) for i in range(batch)]
        return {s.name: np.concatenate([it[s.name] for it in items], axis=0) for s in specs}

    def export_onnx(self, path: str | Path, module=None, inputs: dict[str, np.ndarray] | None = None) -> dict:
        """Write the ONNX graph to `path`; default torch.onnx.export of `module` (or a fresh build())
        with the dynamic axes of runtime_dims. Returns facts for run.json."""
        cfg = self.config()
        module = module if module is not None else self.build()
        inputs = inputs if inputs is not None else self.example_inputs(2)
        dynamic = {i.name: {a: i.dims_names[a] for a, d in enumerate(i.runtime_dims) if d == -1} for i in cfg.inputs}
        batch_name = next((i.dims_names[0] for i in cfg.inputs if i.runtime_dims[0] == -1), None)
        if batch_name is not None:
            for o in cfg.outputs:
                dynamic[o.name] = {0: o.dims_names[0] if o.dims_names else batch_name}
        return export_onnx(module.eval(), {i.name: inputs[i.name] for i in cfg.inputs}, Path(path),
                           [o.name for o in cfg.outputs], {k: v for k, v in dynamic.items() if v})


class _FolderUserModel(UserModel):
    """A model folder seen through the UserModel API: build() calls load.py's registered loader."""

    def __init__(self, folder: Path, config: PluginConfig):
        self.folder = folder
        self._config = config
        self.name, self.framework, self.task = config.name, config.framework, config.task

    def config(self) -> PluginConfig:
        return self._config

    def build(self):
        load_py = self.folder / "load.py"
        from infermeter.artifacts import hash_path

        loader = _import_loader(str(load_py), hash_path(load_py))
        return loader({**self._config.raw, "folder": str(self.folder)})


def config_specs(cfg: PluginConfig, input_shapes: list[list[int]] | None) -> list[InputSpec]:
    """InputSpecs from a plugin config: example_shape, or --input-shapes checked against runtime_dims."""
    graph_like = [(i.name, i.dtype, [d if d > 0 else i.dims_names[a] for a, d in enumerate(i.runtime_dims)])
                  for i in cfg.inputs]
    shapes = input_shapes if input_shapes is not None else [list(i.example_shape) for i in cfg.inputs]
    specs = specs_from_dims(graph_like, shapes, f"model {cfg.name}")
    return [InputSpec(s.name, s.dtype, s.shape, i.dims_names) for s, i in zip(specs, cfg.inputs, strict=True)]


# ---- the Model ------------------------------------------------------------------------------------
class UserModelAdapter(Model):
    """A UserModel (or model folder) as an infermeter Model."""

    def __init__(self, user: UserModel, options: ModelOptions | None = None):
        super().__init__(options)
        self.user = user
        self.config = user.config()
        self.name = self.config.name
        self.task = self.config.task
        if self.config.framework == "torch":
            self.sources, self.builder, self.requires = ("torch", "onnx"), "torch", ("torch", "onnx")
        else:
            self.sources, self.builder, self.requires = ("onnx",), "onnx", ("onnx", "onnxruntime")
        if self.config.framework == "onnx" and self.options.weights is not None:
            raise BadInput(f"--weights does not apply to {self.name}: an ONNX model carries its weights")
        self._specs = config_specs(self.config, self.options.input_shapes)

    # ---- identity ------------------------------------------------------------------------------
    def code_hash(self) -> str:
        """What the model's code is, for the artifact key: the class source where it can be read."""
        try:
            src = inspect.getsource(type(self.user))
        except (OSError, TypeError):
            src = f"{type(self.user).__module__}.{type(self.user).__qualname__}"
        return hashlib.sha256(src.encode()).hexdigest()

    def key(self) -> str:
        extra = {"code": self.code_hash(), "config": self.config.raw}
        digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{super().key()}-{digest}"

    def weights_origin(self) -> str:
        if self.config.framework == "onnx":
            return "the weights inside the ONNX file the loader returns"
        return "whatever build()/load.py makes, seeded with torch.manual_seed(seed), unless --weights STATE_DICT"

    # ---- inputs ----------------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        return list(self._specs)

    def tensorrt_profiles(self) -> dict[str, tuple[tuple[int, ...], ...]] | None:
        """{input name: (min, opt, max)} when every input gives a tensorrt_profile, else None."""
        profiles = {i.name: i.tensorrt_profile for i in self.config.inputs}
        return profiles if all(p is not None for p in profiles.values()) else None

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        if type(self.user).example_inputs is UserModel.example_inputs:
            return [random_item(self._specs, self.options.seed, i) for i in range(n)]
        batch = self.user.example_inputs(n, seed=self.options.seed)
        for s in self._specs:
            got = np.shape(batch.get(s.name))
            if got != (n, *s.shape[1:]):
                raise BadInput(f"{self.name}: example_inputs({n}) gave {s.name} shape {got}, expected {s.with_batch(n)}")
        return [{s.name: np.asarray(batch[s.name], dtype=s.dtype)[i:i + 1] for s in self._specs} for i in range(n)]

    # ---- torch source ---------------------------------------------------------------------------
    def _fresh_module(self):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed)
            module = self.user.build()
        if not isinstance(module, torch.nn.Module):
            raise BadInput(f"{self.name}: the loader returned {type(module).__name__}, expected a torch.nn.Module "
                           "(framework: torch)")
        return module.float().eval()

    def _build_weights(self, tmp: Path) -> None:
        module = self._fresh_module()
        if self.options.weights is not None:
            try:
                load_state_dict(module, Path(self.options.weights))
            except Exception as e:  # unpickling refused, missing/unexpected keys, wrong shapes
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise BadInput(f"--weights {self.options.weights}: not a state dict for {self.name} ({first})") from e
        save_state_dict(module, tmp)

    def load_torch(self, store):
        if self.config.framework != "torch":
            raise NotImplementedError(f"{self.name} has no torch source (framework: {self.config.framework})")
        path = store.build(TORCH_WEIGHTS, self._build_weights)
        module = self._fresh_module()
        load_state_dict(module, path)
        return module.eval()

    def _onnx_file(self) -> Path:
        returned = self.user.build()
        if not isinstance(returned, (str, Path)):
            raise BadInput(f"{self.name}: the loader returned {type(returned).__name__}, expected a path to an ONNX "
                           "file (framework: onnx)")
        path = Path(returned)
        if not path.is_absolute() and isinstance(self.user, _FolderUserModel):
            path = self.user.folder / path
        read_onnx_graph(path)
        return path

    # ---- artifacts -------------------------------------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        allowed = {"torch-source", "onnx", "reference"} if self.config.framework == "torch" else {"onnx", "reference"}
        unknown = set(kinds) - allowed
        if unknown:
            raise ValueError(f"{self.name} ({self.config.framework}) cannot build {', '.join(sorted(unknown))}")
        facts: dict[str, Any] = {"weights": self.weights_id(), "framework": self.config.framework}
        inputs = self.check_inputs()
        if self.config.framework == "torch":
            store.build(TORCH_WEIGHTS, self._build_weights)  # every other artifact derives from these weights
            if "onnx" in kinds:
                export_facts: dict[str, Any] = {}
                store.build("model.onnx", lambda tmp: export_facts.update(
                    self.user.export_onnx(tmp, module=self.load_torch(store), inputs=inputs) or {}))
                facts.update(export_facts)
            if "reference" in kinds:
                outputs = torch_reference(self.load_torch(store), inputs)
                facts["reference"] = "torch float64 (module.double())"
        else:
            onnx_path = store.build("model.onnx", lambda tmp: copy_onnx(self._onnx_file(), tmp))
            if "reference" in kinds:
                import onnxruntime

                outputs = onnxruntime_outputs(onnx_path, inputs, self.max_batch())
                facts["reference"] = (f"onnxruntime {onnxruntime.__version__} CPU in the file's own precision "
                                      f"({outputs[0].dtype.name} outputs), not float64")
        if "reference" in kinds:  # a user's model: the worker applies --check to an uninformative reference
            facts.update(reference_problem(outputs if isinstance(outputs, list) else [outputs], self.task)[0])
            write_reference(store, inputs, outputs)
        return facts


class PluginModel(UserModelAdapter):
    """A model folder: config.yaml (validated here) and load.py (imported only when building)."""

    def __init__(self, folder: str | Path, options: ModelOptions | None = None):
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise BadInput(f"model folder {folder}: no such folder")
        cfg = read_config(folder)
        if not (folder / "load.py").is_file():
            raise BadInput(f"model folder {folder}: no load.py")
        self.folder = folder
        super().__init__(_FolderUserModel(folder, cfg), options)

    def code_hash(self) -> str:
        """The folder's files (not __pycache__, which importing load.py writes)."""
        h = hashlib.sha256()
        for f in sorted(p for p in self.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(self.folder)).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()


def from_user_model(obj: UserModel, options: ModelOptions | None = None) -> Model:
    """A UserModel instance as a Model the sweep can run."""
    if not isinstance(obj, UserModel):
        raise BadInput(f"from_user_model: expected a UserModel instance, got {type(obj).__name__}")
    return UserModelAdapter(obj, options)

"""Any ONNX file as a model: inputs read from the graph, synthetic inputs, reference from ONNX Runtime.

The file is validated when the model is created (missing, empty, unreadable, failing onnx.checker,
dynamic non-batch dimensions without --input-shapes), so a bad file stops the run before any worker
starts. The batch axis (axis 0) may stay dynamic: the sweep's batch sizes fill it. A graph that fixes
the batch size says so through `max_batch()` / `supports_batch()`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.errors import BadInput, one_line
from infermeter.models.base import InputSpec, Model, ModelOptions
from infermeter.models.reference import random_item, write_reference

#: numpy dtypes infermeter can generate inputs for
SUPPORTED_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                    "float16", "float32", "float64")


def read_onnx_graph(path: Path):
    """The ONNX model proto (without external tensor data), or BadInput naming the file."""
    import onnx

    if not path.exists():
        raise BadInput(f"ONNX file {path}: no such file")
    if not path.is_file():
        raise BadInput(f"ONNX file {path}: not a file")
    if path.stat().st_size == 0:
        raise BadInput(f"ONNX file {path}: the file is empty")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends: the file is not an ONNX model
        raise BadInput(f"ONNX file {path}: cannot be read as ONNX ({one_line(e)})") from None
    try:
        onnx.checker.check_model(str(path))  # by path: also checks external data and >2 GB models
    except Exception as e:
        raise BadInput(f"ONNX file {path}: fails onnx.checker ({one_line(e)})") from None
    return proto


def _graph_inputs(proto) -> list[tuple[str, str, list[int | str]]]:
    """(name, numpy dtype, dims) of the real inputs; a dim is an int or its symbolic name ('' if none)."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    out = []
    for value in proto.graph.input:
        if value.name in initializers:  # old exporters list weights as inputs
            continue
        if not value.type.HasField("tensor_type"):
            raise BadInput(f"input {value.name!r} is not a tensor; only tensor inputs are supported")
        ttype = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
        if dtype not in SUPPORTED_DTYPES:
            raise BadInput(f"input {value.name!r} has dtype {dtype}; supported: {', '.join(SUPPORTED_DTYPES)}")
        if not ttype.HasField("shape"):
            raise BadInput(f"input {value.name!r} has no shape in the graph: give --input-shapes")
        dims: list[int | str] = []
        for d in ttype.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else d.dim_param)
        out.append((value.name, dtype, dims))
    if not out:
        raise BadInput("the graph has no inputs")
    return out


def specs_from_dims(graph_inputs, input_shapes: list[list[int]] | None, source: str) -> list[InputSpec]:
    """InputSpecs for graph inputs; `input_shapes` (one per input, batch included) fixes dynamic dims.
    Axis 0 stays dynamic (-1) when the graph leaves it dynamic."""
    if input_shapes is not None and len(input_shapes) != len(graph_inputs):
        names = ", ".join(n for n, _, _ in graph_inputs)
        raise BadInput(f"--input-shapes: {len(input_shapes)} shape(s) given but {source} has "
                       f"{len(graph_inputs)} input(s) ({names})")
    if input_shapes is None:
        _refuse_dynamic_dims(graph_inputs, source)
    specs = []
    for i, (name, dtype, dims) in enumerate(graph_inputs):
        if not dims:
            raise BadInput(f"input {name!r} is a scalar: infermeter batches inputs along axis 0")
        names = tuple(d if isinstance(d, str) and d else ("batch" if a == 0 else f"dim{a}")
                      for a, d in enumerate(dims))
        given = input_shapes[i] if input_shapes is not None else None
        if given is not None:
            if len(given) != len(dims):
                raise BadInput(f"--input-shapes: input {name!r} has {len(dims)} dimensions in {source}, "
                               f"got {given}")
            for a, (d, g) in enumerate(zip(dims, given, strict=True)):
                if isinstance(d, int) and d != g:
                    raise BadInput(f"--input-shapes: input {name!r} axis {a} is fixed to {d} in {source}, got {g}")
            shape = [-1 if isinstance(dims[0], str) else dims[0], *given[1:]]
        else:
            shape = [-1 if isinstance(dims[0], str) else dims[0], *dims[1:]]
        specs.append(InputSpec(name, dtype, tuple(int(d) for d in shape), names))
    return specs


def _refuse_dynamic_dims(graph_inputs, source: str) -> None:
    """One line naming every dynamic non-batch dimension, with a flag that would fix them."""
    dynamic, example = [], []
    for name, _, dims in graph_inputs:
        shape, axes = [], []
        for a, d in enumerate(dims):
            if isinstance(d, str) and a > 0:
                axes.append(f"axis {a}" + (f" ({d!r})" if d else ""))
                shape.append(_EXAMPLE_DIM)
            else:
                shape.append(1 if isinstance(d, str) else d)
        if axes:
            dynamic.append(f"input {name!r} {', '.join(axes)}")
        example.append("[" + ",".join(str(x) for x in shape) + "]")
    if dynamic:
        raise BadInput(f"{source} has dynamic dimensions: {'; '.join(dynamic)}; fix them for the run, e.g. "
                       f"--input-shapes \"{','.join(example)}\" (one shape per input, batch first), "
                       "or give --inputs")


#: stands in for a dynamic dimension in the example --input-shapes flag
_EXAMPLE_DIM = 64


# ---- graph facts that shape the synthetic inputs -------------------------------------------------
#: ops that pass an integer input on unchanged in value (only its type or shape changes)
_PASS_THROUGH = ("Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten")


def gather_ranges(proto, names: list[str]) -> dict[str, tuple[float, float]]:
    """Input name -> (0, rows) for an integer input that indexes a Gather table stored in the graph
    (an embedding): synthetic indices beyond the table would make engines fail or read garbage."""
    graph = proto.graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    tables[node.output[0]] = list(attr.t.dims)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    ranges = {}
    for name in names:
        rows, todo, seen = [], [name], set()
        while todo:
            value = todo.pop()
            if value in seen:
                continue
            seen.add(value)
            for node, slot in consumers.get(value, []):
                if node.op_type == "Gather" and slot == 1 and node.input[0] in tables:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    dims = tables[node.input[0]]
                    if dims:
                        rows.append(dims[axis % len(dims)])
                elif node.op_type in _PASS_THROUGH and slot == 0:
                    todo.extend(node.output)
        if rows:
            ranges[name] = (0.0, float(min(rows)))
    return ranges


# ---- the user's own inputs -------------------------------------------------------------------------
def load_user_inputs(path: str | Path, graph_inputs) -> dict[str, np.ndarray]:
    """The arrays of --inputs by input name (batch on axis 0): an .npz with one array per input name, or
    a folder of NAME.npy files (one per input); a single-input graph also takes a folder of .npy items."""
    p = Path(path)
    names = [n for n, _, _ in graph_inputs]
    if not p.exists():
        raise BadInput(f"--inputs {p}: no such file or folder")
    try:
        if p.is_dir():
            files = sorted(p.glob("*.npy"))
            if not files:
                raise BadInput(f"--inputs {p}: the folder has no .npy files")
            by_stem = {f.stem: f for f in files}
            if set(names) <= set(by_stem):
                arrays = {n: np.load(by_stem[n], allow_pickle=False) for n in names}
            elif len(names) == 1:  # one item per file
                items = [np.load(f, allow_pickle=False) for f in files]
                rank = len(graph_inputs[0][2])
                items = [a if a.ndim == rank else a[None] for a in items]
                arrays = {names[0]: np.concatenate(items, axis=0)}
            else:
                raise BadInput(f"--inputs {p}: expected files {', '.join(n + '.npy' for n in names)}, "
                               f"found {', '.join(f.name for f in files[:8])}")
        else:
            with np.load(p, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(f"--inputs {p}: cannot be read as .npz/.npy ({type(e).__name__}: {one_line(e)})") from None
    missing, extra = [n for n in names if n not in arrays], sorted(set(arrays) - set(names))
    if missing or extra:
        raise BadInput(f"--inputs {p}: the graph's inputs are {', '.join(names)}; "
                       + "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                               f"unknown {', '.join(extra)}" if extra else "") if x))
    out, counts = {}, set()
    for name, dtype, dims in graph_inputs:
        a = arrays[name]
        if a.ndim != len(dims):
            raise BadInput(f"--inputs {p}: input {name!r} has shape {list(a.shape)}; the graph wants "
                           f"{len(dims)} dimensions {_dims_text(dims)} (batch on axis 0)")
        for axis, (d, got) in enumerate(zip(dims, a.shape, strict=True)):
            if axis > 0 and isinstance(d, int) and d != got:
                raise BadInput(f"--inputs {p}: input {name!r} has shape {list(a.shape)}; the graph wants "
                               f"{_dims_text(dims)}")
        want = np.dtype(dtype)
        if a.dtype != want and not np.can_cast(a.dtype, want, casting="same_kind"):
            raise BadInput(f"--inputs {p}: input {name!r} is {a.dtype.name}; the graph wants {want.name}")
        out[name] = np.ascontiguousarray(a.astype(want, copy=False))
        counts.add(a.shape[0])
    if len(counts) != 1 or 0 in counts:
        raise BadInput(f"--inputs {p}: every input needs the same number of items (axis 0), got "
                       + ", ".join(f"{n}: {a.shape[0]}" for n, a in out.items()))
    return out


def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in dims) + "]"


def copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX file to `dst` as one self-contained file (external tensor data folded in)."""
    import onnx

    proto = onnx.load(str(src), load_external_data=False)
    has_external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    if not has_external:
        shutil.copyfile(src, dst)
        return
    full = onnx.load(str(src))  # loads the external data beside src
    if full.ByteSize() >= 2**31:
        raise BadInput(f"ONNX file {src}: over 2 GB with external data; infermeter needs one self-contained file")
    onnx.save_model(full, str(dst), save_as_external_data=False)


def onnxruntime_outputs(onnx_path: Path, inputs: dict[str, np.ndarray], chunk: int | None) -> list[np.ndarray]:
    """Every output of the graph on the CPU with ONNX Runtime; `chunk` items per run for graphs
    that fix the batch size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(inputs.values())))
    step = chunk or n
    if n % step:
        raise BadInput(f"the graph fixes the batch size to {step}: --check-samples must be a multiple of it, got {n}")
    parts = [session.run(None, {k: v[i:i + step] for k, v in inputs.items()}) for i in range(0, n, step)]
    return [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0]))]


def output_task(proto) -> str:
    """'classification' when the only output is 2-D [N, C] with a fixed C > 1, else 'generic'
    (top-1 agreement means nothing for a detector's boxes or a second output)."""
    if len(proto.graph.output) != 1:
        return "generic"
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 1:
        return "classification"
    return "generic"


class OnnxFileModel(Model):
    """A model given as an ONNX file. Its inputs are the user's (--inputs) or synthetic (seeded; an
    embedding's indices stay inside its table), its reference is ONNX Runtime on the CPU in the file's own
    precision (float32 for most files), every output of the graph."""

    sources = ("onnx",)
    builder = "onnx"
    requires = ("onnx", "onnxruntime")
    accepts_inputs = True

    def __init__(self, path: str | Path, options: ModelOptions | None = None):
        super().__init__(options)
        self.path = Path(path)
        if self.options.weights is not None:
            raise BadInput(f"--weights does not apply to the ONNX file {self.path.name}: its weights are inside it")
        proto = read_onnx_graph(self.path)
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.stem) or "onnx_model"
        self.task = output_task(proto)
        graph_inputs = _graph_inputs(proto)
        self._user: dict[str, np.ndarray] | None = None
        shapes = self.options.input_shapes
        if self.options.inputs:
            self._user = load_user_inputs(self.options.inputs, graph_inputs)
            if shapes is None:  # the items fix the graph's dynamic dimensions
                shapes = [[1, *self._user[n].shape[1:]] for n, _, _ in graph_inputs]
            else:
                for (n, _, _), shape in zip(graph_inputs, shapes, strict=False):
                    if list(self._user[n].shape[1:]) != list(shape[1:]):
                        raise BadInput(f"--inputs {self.options.inputs}: input {n!r} items are "
                                       f"{list(self._user[n].shape[1:])}, --input-shapes says {shape[1:]}")
        self._specs = specs_from_dims(graph_inputs, shapes, f"{self.path.name}")
        integer = [n for n, dtype, _ in graph_inputs if np.issubdtype(np.dtype(dtype), np.integer)]
        unknown = sorted(set(self.options.input_ranges) - {n for n, _, _ in graph_inputs})
        if unknown:
            raise BadInput(f"--input-range: {', '.join(unknown)} is not an input of {self.path.name} "
                           f"(inputs: {', '.join(n for n, _, _ in graph_inputs)})")
        self._ranges = {**gather_ranges(proto, integer), **self.options.input_ranges}
        self._file_hash: str | None = None

    # ---- identity ------------------------------------------------------------------------------
    def weights_id(self) -> str:
        if self._file_hash is None:
            from infermeter.artifacts import hash_path

            self._file_hash = hash_path(self.path)
        return f"file:{self._file_hash[:12]}"

    def weights_origin(self) -> str:
        return f"the weights inside {self.path}"

    # ---- inputs ----------------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        return list(self._specs)

    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """Value ranges of the synthetic inputs: the embedding tables' sizes, then --input-range."""
        return dict(self._ranges)

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        if self._user is not None:  # the user's items, rotating when the pool is larger
            count = len(next(iter(self._user.values())))
            return [{k: a[i % count:i % count + 1] for k, a in self._user.items()} for i in range(n)]
        return [random_item(self._specs, self.options.seed, i, self._ranges) for i in range(n)]

    def check_inputs(self) -> dict[str, np.ndarray]:
        if self._user is not None:  # the first --check-samples of the user's items, no repeats
            k = min(self.options.check_samples, len(next(iter(self._user.values()))))
            return {name: a[:k] for name, a in self._user.items()}
        return super().check_inputs()

    # ---- artifacts -------------------------------------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        unknown = set(kinds) - {"onnx", "reference"}
        if unknown:
            raise ValueError(f"{self.name} is an ONNX file: it cannot build {', '.join(sorted(unknown))}")
        import onnxruntime

        onnx_path = store.build("model.onnx", lambda tmp: copy_onnx(self.path, tmp))
        facts: dict[str, Any] = {"onnx_source": str(self.path), "onnx_sha256": self.weights_id()}
        if self.options.inputs:
            facts.update({"inputs": str(self.options.inputs), "inputs_sha256": self.inputs_hash()})
        elif self._ranges:
            facts["input_ranges"] = {k: list(v) for k, v in self._ranges.items()}
        if "reference" in kinds:
            inputs = self.check_inputs()
            outputs = onnxruntime_outputs(onnx_path, inputs, self.max_batch())
            write_reference(store, inputs, outputs)  # every output; the worker judges informativeness
            facts["reference"] = (f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider in the file's own "
                                  f"precision ({outputs[0].dtype.name} outputs: float32 for most files), not float64")
            facts["reference_outputs"] = len(outputs)
        return facts

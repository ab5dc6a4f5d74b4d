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

from infermeter.check import assert_informative
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
            for a, d in enumerate(dims[1:], start=1):
                if isinstance(d, str):
                    raise BadInput(f"input {name!r} has dynamic dimension {names[a]!r} (axis {a}): "
                                   "give --input-shapes")
            shape = [-1 if isinstance(dims[0], str) else dims[0], *dims[1:]]
        specs.append(InputSpec(name, dtype, tuple(int(d) for d in shape), names))
    return specs


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


def onnxruntime_outputs(onnx_path: Path, inputs: dict[str, np.ndarray], chunk: int | None) -> np.ndarray:
    """The first output of the graph on the CPU with ONNX Runtime; `chunk` items per run for graphs
    that fix the batch size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(inputs.values())))
    step = chunk or n
    if n % step:
        raise BadInput(f"the graph fixes the batch size to {step}: --check-samples must be a multiple of it, got {n}")
    parts = [session.run(None, {k: v[i:i + step] for k, v in inputs.items()})[0] for i in range(0, n, step)]
    return np.concatenate(parts, axis=0)


def output_task(proto) -> str:
    """'classification' when the first output is 2-D [N, C] with a fixed C > 1, else 'generic'."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 1:
        return "classification"
    return "generic"


class OnnxFileModel(Model):
    """A model given as an ONNX file. Its inputs are synthetic (seeded), its reference is ONNX Runtime
    on the CPU in the file's own precision (float32 for most files)."""

    sources = ("onnx",)
    builder = "onnx"
    requires = ("onnx", "onnxruntime")

    def __init__(self, path: str | Path, options: ModelOptions | None = None):
        super().__init__(options)
        self.path = Path(path)
        if self.options.weights is not None:
            raise BadInput(f"--weights does not apply to the ONNX file {self.path.name}: its weights are inside it")
        proto = read_onnx_graph(self.path)
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.stem) or "onnx_model"
        self.task = output_task(proto)
        self._specs = specs_from_dims(_graph_inputs(proto), self.options.input_shapes, f"{self.path.name}")
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

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        return [random_item(self._specs, self.options.seed, i) for i in range(n)]

    # ---- artifacts -------------------------------------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        unknown = set(kinds) - {"onnx", "reference"}
        if unknown:
            raise ValueError(f"{self.name} is an ONNX file: it cannot build {', '.join(sorted(unknown))}")
        import onnxruntime

        onnx_path = store.build("model.onnx", lambda tmp: copy_onnx(self.path, tmp))
        facts: dict[str, Any] = {"onnx_source": str(self.path), "onnx_sha256": self.weights_id()}
        if "reference" in kinds:
            inputs = self.check_inputs()
            outputs = onnxruntime_outputs(onnx_path, inputs, self.max_batch())
            facts.update(assert_informative(outputs, self.task))
            write_reference(store, inputs, outputs)
            facts["reference"] = (f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider in the file's own "
                                  f"precision ({outputs.dtype.name} outputs: float32 for most files), not float64")
        return facts

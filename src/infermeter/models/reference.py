"""Helpers every model shares: the stored reference, synthetic inputs, torch weights and ONNX export.

The reference is "reference.npz" in the artifact store: keys `inputs__<name>` (the K check inputs as
one batch, in their own dtypes), `outputs` (float64, the first output of the source model on them) and,
for graphs with several outputs, `outputs__1`, `outputs__2`, ... and `output_names`.
Frameworks are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "reference.npz"
INPUT_PREFIX = "inputs__"
OUTPUT_PREFIX = "outputs__"

#: torch.onnx.export settings shared by every torch-source model
ONNX_OPSET = 17
ONNX_EXPORTER = "torch.onnx.export(dynamo=False): TorchScript-based exporter"


# ---- the reference ------------------------------------------------------------------------------
def write_reference(store, inputs: dict[str, np.ndarray], outputs) -> Path:
    """Store the check inputs and the reference outputs (as float64) as 'reference.npz'.
    `outputs` may be a callable, evaluated only when the artifact has to be built; it may return
    (outputs, facts) where facts are short strings (e.g. the dtype it was computed in) kept beside."""
    arrays = {f"{INPUT_PREFIX}{name}": np.asarray(a) for name, a in inputs.items()}

    def build(tmp: Path) -> None:
        value = outputs() if callable(outputs) else outputs
        if isinstance(value, tuple):
            value, facts = value
            arrays.update({k: np.array(str(v)) for k, v in facts.items()})
        if isinstance(value, list):  # every output of the graph, first one under the historic key
            for i, v in enumerate(value):
                arrays["outputs" if i == 0 else f"{OUTPUT_PREFIX}{i}"] = np.asarray(v, dtype=np.float64)
        else:
            arrays["outputs"] = np.asarray(value, dtype=np.float64)
        with open(tmp, "wb") as fh:  # a file handle: np.savez would append '.npz' to a bare path
            np.savez(fh, **arrays)

    return store.build(REFERENCE, build)


def read_reference(store) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(check inputs by name, float64 reference outputs) from the store (or a reference.npz path)."""
    inputs, outputs = read_reference_outputs(store)
    return inputs, outputs[0]


def read_reference_outputs(store) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """(check inputs by name, every reference output in graph order, float64)."""
    if isinstance(store, (str, os.PathLike)):
        path = store
    else:
        path = store.get(REFERENCE)
        if path is None:
            raise FileNotFoundError(f"no valid {REFERENCE} in {store.root}: build the 'reference' artifact first")
    with np.load(path, allow_pickle=False) as data:
        inputs = {k[len(INPUT_PREFIX):]: data[k] for k in data.files if k.startswith(INPUT_PREFIX)}
        outputs = [data["outputs"].astype(np.float64)]
        while f"{OUTPUT_PREFIX}{len(outputs)}" in data.files:
            outputs.append(data[f"{OUTPUT_PREFIX}{len(outputs)}"].astype(np.float64))
        return inputs, outputs


# ---- synthetic inputs ---------------------------------------------------------------------------
def random_item(specs, seed: int, index: int, ranges: dict | None = None) -> dict[str, np.ndarray]:
    """One input item (leading axis 1) for each InputSpec, the same for the same (seed, index).

    `ranges` maps an input name to (low, high): integers in [low, high), floats uniform in [low, high).
    Otherwise floats ~ N(0, 1); integers in [0, 100), except names with 'mask' (all 1s) and 'token_type'
    (all 0s) so BERT-like graphs get valid values; bools at random. Non-batch axes must be fixed."""
    rng = np.random.default_rng([seed, index, zlib.crc32(b"infermeter-inputs")])
    item = {}
    for spec in specs:
        shape = spec.with_batch(1)
        if any(d <= 0 for d in shape):
            raise ValueError(f"input {spec.name!r} has no fixed shape {tuple(spec.shape)}: give --input-shapes")
        dtype = np.dtype(spec.dtype)
        low = spec.name.lower()
        span = (ranges or {}).get(spec.name)
        if span is not None and dtype != np.bool_:
            low, high = span
            if np.issubdtype(dtype, np.integer):
                a = rng.integers(int(np.ceil(low)), max(int(np.ceil(high)), int(np.ceil(low)) + 1), size=shape)
                a = a.astype(dtype)
            else:
                a = rng.uniform(low, high, size=shape).astype(dtype)
        elif dtype == np.bool_:
            a = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.floating):
            a = rng.standard_normal(shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            if "mask" in low:
                a = np.ones(shape, dtype)
            elif "token_type" in low:
                a = np.zeros(shape, dtype)
            else:
                a = rng.integers(0, 100, size=shape).astype(dtype)
        else:
            raise ValueError(f"input {spec.name!r}: cannot generate values of dtype {spec.dtype}")
        item[spec.name] = a
    return item


# ---- torch weights and export ---------------------------------------------------------------------
def save_state_dict(module, path: Path) -> None:
    """torch.save of the state dict (tensors only), to be read back with weights_only=True."""
    import torch

    torch.save({k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, str(path))


def load_state_dict(module, path: Path) -> None:
    """Load weights saved by save_state_dict into `module`; every key must match."""
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)


def export_onnx(module, inputs: dict[str, np.ndarray], path: Path, output_names: list[str],
                dynamic_axes: dict[str, dict[int, str]]) -> dict[str, Any]:
    """Export `module` (called with the inputs positionally, in dict order) to one ONNX file.

    The TorchScript-based exporter is used: it needs no onnxscript and works on torch 2.4..2.14;
    the dynamo exporter needs onnxscript, which is not a dependency. Returns facts for run.json."""
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, do_constant_folding=True,
                          dynamo=False)
    return {"onnx_exporter": ONNX_EXPORTER, "onnx_opset": ONNX_OPSET, "torch": torch.__version__}


def torch_reference(module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The module's first output in float64: float inputs and the module itself (in place) cast to float64."""
    import torch

    module = module.double().eval()
    args = []
    for a in inputs.values():
        t = torch.from_numpy(np.ascontiguousarray(a))
        args.append(t.double() if t.is_floating_point() else t)
    with torch.no_grad():
        out = module(*args)
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.detach().cpu().numpy().astype(np.float64)

"""Calibrated int8 and the accuracy of reduced precisions, shared by the engines.

Every engine quantizes from the same calibration set: the model's own real inputs (photo crops for
image models, texts for BERT) that come after the check inputs in its pool. A held-out set after it
measures top-1 agreement and SNR against fp32 outputs. `input_sets` proves the three sets disjoint
(by item hash) and names each by a hash of its contents, which enters every quantized artifact's name,
so a changed calibration set can never reuse a stale artifact.

The fp32 outputs on the held-out set come from ONNX Runtime's CPU execution provider on the model's
ONNX export (IEEE fp32, the engine every other one is gated against), computed once per model and
held-out set and cached in the artifact store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from infermeter.device import cpu_has_vnni, is_x86
from infermeter.errors import BadInput

if TYPE_CHECKING:
    from infermeter.check import HeldOutAccuracy

DEFAULT_CALIBRATION_ITEMS = 64
DEFAULT_HELDOUT_ITEMS = 256
# ONNX Runtime's static quantization in QDQ form, per-channel symmetric int8 weights, MinMax calibration (ranges
# from the calibration set's observed extremes), in the flavour each consumer of the graph recommends:
# - "u8s8" for ONNX Runtime's CPU provider: uint8 asymmetric activations, int8 weights, the format ORT
#   documents for x86 (its int8 GEMM/conv kernels take unsigned activations; a symmetric int8-activation
#   graph ran 3.5x slower than this one on an AVX2 CPU, slower than fp32). Without VNNI the AVX2 kernels
#   multiply-add pairs of u8 x s8 products into int16 with saturation, so ORT advises 7-bit weights
#   (reduce_range) there: "u8s8-r7".
# - "s8s8" for TensorRT (its explicit quantization takes only symmetric int8 Q/DQ), also used by
#   onnxruntime-trt.
ORT_CALIBRATION = "MinMax"
QDQ_FLAVOURS = {
    "u8s8": {"activation_type": "QUInt8", "activation_symmetric": False, "reduce_range": False},
    "u8s8-r7": {"activation_type": "QUInt8", "activation_symmetric": False, "reduce_range": True},
    "s8s8": {"activation_type": "QInt8", "activation_symmetric": True, "reduce_range": False},
}


def qdq_settings(flavour: str) -> dict:
    """Everything that shapes the QDQ graph of this flavour, as recorded in run.json."""
    return {"quant_format": "QDQ", "flavour": flavour, **QDQ_FLAVOURS[flavour], "weight_type": "QInt8",
            "per_channel": True, "weight_symmetric": True, "calibrate_method": ORT_CALIBRATION}


def ort_cpu_qdq_flavour() -> str:
    return "u8s8-r7" if is_x86() and not cpu_has_vnni() else "u8s8"


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below its first VNNI level: with one of them set,
# oneDNN dispatches u8 x s8 kernels without VNNI even on a CPU that has it.
ONEDNN_ISAS_WITHOUT_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def onednn_int8_saturates() -> bool:
    """Whether oneDNN's int8 convolutions and matmuls (torch's X86 Inductor path and OpenVINO's CPU
    plugin both run on oneDNN) multiply-add without VNNI here: an x86 CPU that reports no VNNI, or
    ONEDNN_MAX_CPU_ISA capping oneDNN below it. Those kernels (vpmaddubsw) add pairs of u8 x s8 products
    into int16 with saturation, so full-range 8-bit operands can clip; both quantizers document the
    remedy, a 7-bit operand (PT2E's reduce_range: activations 0..127; NNCF's overflow fix: weights).
    Measured on MobileNetV3-Large (224x224) on a VNNI CPU with ONEDNN_MAX_CPU_ISA=AVX2, default recipes:
    check SNR 10.8 dB on OpenVINO and torch-compile, held-out agreement 0.906 and 0.871, as on a CPU
    without VNNI; with VNNI 23.5 and 29.6 dB."""
    import os

    if not is_x86():
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return not cpu_has_vnni() or cap in ONEDNN_ISAS_WITHOUT_VNNI


def recipe_tag(settings: dict) -> str:
    """A short hash of a quantization recipe's settings, part of the quantized artifact's cache name, so
    an artifact built with other settings is never reused."""
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


# ---- PT2E: torch's int8 (the torch-compile engine) ------------------------------------------------------
def pt2e_api():
    """(prepare_pt2e, convert_pt2e, x86_inductor_quantizer module, where from): torchao's maintained copy,
    else the one torch itself shipped before 2.14."""
    import importlib.metadata

    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torchao {importlib.metadata.version('torchao')}"
    except ImportError:
        import torch
        import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torch.ao {torch.__version__}"


def pt2e_recipe() -> dict:
    """The X86InductorQuantizer's settings, as recorded in run.json and hashed into the saved program's
    name: its default static config (HistogramObserver on uint8 per-tensor activations, per-channel
    symmetric int8 weights), with reduce_range (7-bit activations) where oneDNN runs int8 without VNNI, as
    get_default_x86_inductor_quantization_config advises for CPUs without VNNI
    (onednn_int8_saturates)."""
    reduce_range = onednn_int8_saturates()
    return {"config": "get_default_x86_inductor_quantization_config (static)",
            "activations": f"uint8 per-tensor affine, 0..{127 if reduce_range else 255}, HistogramObserver",
            "weights": "int8 per-channel symmetric, PerChannelMinMaxObserver", "reduce_range": reduce_range}


def pt2e_missing() -> str:
    """Why PT2E int8 cannot run here ('' when it can), without importing torch."""
    import importlib.util

    if importlib.util.find_spec("torchao") is not None:
        return ""
    torch_dir = importlib.util.find_spec("torch")
    if torch_dir and torch_dir.submodule_search_locations and \
            (Path(next(iter(torch_dir.submodule_search_locations))) / "ao/quantization/quantize_pt2e.py").exists():
        return ""
    return "not installed: torchao (PT2E quantization moved out of torch 2.14; the torch extra has it)"


def item_hash(item: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(item):
        a = np.ascontiguousarray(item[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class InputSet:
    """Named, hashed single-item inputs (each with leading axis 1)."""

    purpose: str  # "calibration" / "heldout"
    items: tuple
    sha256: str

    @classmethod
    def of(cls, purpose: str, items: list[dict[str, np.ndarray]]) -> InputSet:
        h = hashlib.sha256()
        for it in items:
            h.update(item_hash(it).encode())
        return cls(purpose, tuple(items), h.hexdigest())

    def __len__(self) -> int:
        return len(self.items)

    def batches(self, batch: int, pad: bool = False):
        """The items as batches of `batch`, in order; the last one shorter, or with pad=True filled up with
        the first items again (for sessions compiled for that batch size only). Yields (batch, real rows)."""
        for s in range(0, len(self.items), batch):
            part = list(self.items[s:s + batch])
            real = len(part)
            if pad:
                part += [self.items[i % len(self.items)] for i in range(batch - real)]
            yield {k: np.concatenate([it[k] for it in part], axis=0) for k in part[0]}, real

    def facts(self) -> dict:
        return {"items": len(self.items), "sha256": self.sha256, "disjoint_from_check_inputs": True}


def input_sets(model, calibration_items: int = DEFAULT_CALIBRATION_ITEMS,
               heldout_items: int = DEFAULT_HELDOUT_ITEMS) -> tuple[InputSet, InputSet]:
    """(calibration set, held-out set), both proven disjoint from the check inputs and from each other."""
    cal, held = model.quantization_pools(calibration_items, heldout_items)
    if len(cal) != calibration_items or len(held) != heldout_items:
        raise BadInput(f"{model.name} gave {len(cal)} calibration and {len(held)} held-out inputs, "
                       f"{calibration_items} and {heldout_items} were asked")
    check = model.check_inputs()
    k = len(next(iter(check.values())))
    check_hashes = {item_hash({n: a[i:i + 1] for n, a in check.items()}) for i in range(k)}
    cal_hashes = [item_hash(it) for it in cal]
    held_hashes = [item_hash(it) for it in held]
    for name, hashes in (("calibration", cal_hashes), ("held-out", held_hashes)):
        if set(hashes) & check_hashes:
            raise BadInput(f"{model.name}: its {name} inputs repeat a check input; the accuracy figures would "
                           "not be independent (the model's sample_pool must give distinct items)")
    if set(cal_hashes) & set(held_hashes):
        raise BadInput(f"{model.name}: its held-out inputs repeat calibration inputs")
    return InputSet.of("calibration", cal), InputSet.of("heldout", held)


def calibration_set(model, n: int = DEFAULT_CALIBRATION_ITEMS) -> InputSet:
    return input_sets(model, n, 1)[0]


# ---- ONNX Runtime QDQ quantization (ONNX Runtime and TensorRT engines) -------------------------------
def qdq_artifact_name(calib: InputSet, flavour: str) -> str:
    return f"model_int8_qdq_{flavour}_{ORT_CALIBRATION.lower()}_{calib.sha256[:16]}.onnx"


def build_qdq_onnx(fp32_onnx: str, calib: InputSet, feed: dict[str, str], dst: Path, flavour: str) -> None:
    """Static QDQ quantization of the fp32 ONNX with onnxruntime.quantization, as ORT recommends it:
    quant_pre_process (shape inference, graph optimisation) first, then quantize_static on the
    calibration set. feed maps graph input names to the items' keys."""
    import onnxruntime.quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib.items)

        def get_next(self):
            item = next(self.it, None)
            return None if item is None else {g: item[k] for g, k in feed.items()}

    pre = dst.with_name(dst.name + ".pre.onnx")
    try:
        quant_pre_process(fp32_onnx, str(pre), skip_symbolic_shape=True)
        f = QDQ_FLAVOURS[flavour]
        q.quantize_static(
            str(pre), str(dst), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=getattr(q.QuantType, f["activation_type"]), weight_type=q.QuantType.QInt8,
            reduce_range=f["reduce_range"], calibrate_method=getattr(q.CalibrationMethod, ORT_CALIBRATION),
            extra_options={"ActivationSymmetric": f["activation_symmetric"], "WeightSymmetric": True})
    finally:
        for p in pre.parent.glob(pre.name + "*"):
            p.unlink()


def qdq_onnx(model, artifacts, calib: InputSet, flavour: str) -> tuple[str, bool]:
    """(path of the QDQ int8 ONNX of this flavour for this calibration set, whether it was built now)."""
    from infermeter.models.onnx_graph import feed_names, onnx_input_names, onnx_path_of

    src = onnx_path_of(artifacts)
    name = qdq_artifact_name(calib, flavour)
    cached = artifacts.get(name) is not None
    feed = feed_names(onnx_input_names(src), model)
    path = artifacts.build(name, lambda tmp: build_qdq_onnx(src, calib, feed, tmp, flavour))
    return str(path), not cached


def quantization_facts(calib: InputSet, method: str, **settings) -> dict:
    return {"calibration_set": calib.facts(), "quantization": {"method": method, **settings}}


# ---- accuracy against fp32 on the held-out set ------------------------------------------------------
def fp32_heldout_outputs(model, artifacts, held: InputSet) -> np.ndarray:
    """fp32 outputs (first output) of ONNX Runtime on the CPU for the held-out set, cached in the store."""
    name = f"heldout_fp32_{held.sha256[:16]}.npy"

    def build(tmp: Path) -> None:
        import onnxruntime as ort

        from infermeter.models.onnx_graph import feed_names, onnx_path_of

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain fp32 kernels
        sess = ort.InferenceSession(onnx_path_of(artifacts), sess_options=opts, providers=["CPUExecutionProvider"])
        feed = feed_names([i.name for i in sess.get_inputs()], model)
        outs = [sess.run(None, {g: b[k] for g, k in feed.items()})[0] for b, _ in held.batches(16)]
        with open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(outs, axis=0).astype(np.float32))

    return np.load(artifacts.build(name, build))


def heldout_accuracy(engine, model, artifacts, held: InputSet, max_batch: int) -> HeldOutAccuracy:
    """Top-1 agreement and SNR of this engine's outputs against fp32 outputs on the held-out inputs."""
    from infermeter.check import HeldOutAccuracy, snr_db, top1_agreement

    fp32 = fp32_heldout_outputs(model, artifacts, held)
    outs = []
    for b, real in held.batches(max(1, max_batch), pad=True):  # only the batch size a cell of the group runs
        got = np.asarray(engine.to_numpy(engine.infer(engine.stage(b))), dtype=np.float64)
        outs.append(got[:real])
    got = np.concatenate(outs, axis=0)
    top1 = top1_agreement(fp32, got) if model.task == "classification" else None
    return HeldOutAccuracy(top1_agreement_fp32=top1, snr_db=snr_db(fp32, got), items=len(held))

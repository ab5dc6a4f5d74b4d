"""The correctness gate: every engine must compute the reference's function before it is timed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infermeter.errors import UninformativeReference

# (max abs error relative to the reference's largest output, min top-1 agreement) per precision. fp16 keeps
# ~3 significant digits; through 50+ layers a few percent of drift is normal (OpenVINO fp16 on a
# MobileNetV3 reaches 3%); tf32 rounds matmul/conv inputs to fp16's 10-bit mantissa but accumulates in
# float32, so it sits between the two. A wrong function misses by far more and loses top-1 agreement.
#
# bf16 keeps 8 significant bits against fp16's 11, so its rounding is 8x coarser: the fp16 bound times 4
# (autocast keeps reductions and softmax in fp32, so the drift is less than the full 8x).
# int8 is judged on top-1 agreement and SNR, not on the largest single error: an 8-bit per-tensor
# activation step is range/255, and outliers in one logit of one input may move by several steps while
# the function is right. The SNR floors below come from the same arithmetic: an ideal 8-bit quantizer
# has ~50 dB SNR on a full-range signal, real activations with heavy tails ~30-40 dB per tensor, and the
# noise of ~50 quantized layers adds in power (-17 dB), leaving ~15-25 dB at a deep net's output. A wrong
# quantization (a scale off by 10x, an activation clipped at a tenth of its range) lands near 0 dB.
TOLERANCES = {"fp32": (1e-3, 1.0), "tf32": (2e-2, 0.9), "fp16": (5e-2, 0.75), "bf16": (2e-1, 0.75),
              "int8": (5e-1, 0.75)}
#: minimum output SNR against the reference (dB), where a precision is judged on it
SNR_FLOOR_DB = {"bf16": 20.0, "int8": 12.0}


@dataclass
class CheckResult:
    max_abs_err: float
    rel_err: float
    top1_agreement: float | None
    status: str  # "pass" / "mismatch"
    detail: str = ""
    snr_db: float | None = None  # output SNR against the reference
    #: int8/bf16: top1_agreement_fp32, snr_db and heldout_items over held-out inputs against fp32
    heldout: dict = field(default_factory=dict)

    def row_fields(self) -> dict:
        return {"max_abs_err": self.max_abs_err, "rel_err": self.rel_err,
                "top1_agreement": self.top1_agreement, "check_snr_db": self.snr_db, "check_status": self.status,
                **self.heldout}


def snr_db(reference: np.ndarray, got: np.ndarray) -> float | None:
    """10 log10(signal power / error power) over all outputs; None when they are identical (no error to
    measure: the SNR is unbounded)."""
    ref, out = _flat(reference), _flat(got)
    noise = float(np.sum((ref - out) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0.0:
        return None
    return float(10.0 * np.log10(max(signal, 1e-300) / noise))


def top1_agreement(reference: np.ndarray, got: np.ndarray) -> float | None:
    """Share of inputs whose arg-max class is the same, for outputs with more than one class."""
    ref, out = _flat(reference), _flat(got)
    if ref.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def assert_informative(reference: np.ndarray, task: str = "classification") -> dict:
    """Raise UninformativeReference unless the reference's outputs differ across the check inputs.
    For classifiers, the top-1 class must differ between at least two inputs; for any model, the
    spread across inputs must stand well above float rounding."""
    ref = _flat(reference)
    if ref.shape[0] < 2:
        raise UninformativeReference("the reference needs at least 2 check inputs")
    spread = float(np.max(np.std(ref, axis=0)))
    scale = float(np.max(np.abs(ref))) or 1.0
    facts = {"reference_spread": spread, "reference_scale": scale}
    if spread <= 1e-6 * scale:
        raise UninformativeReference(
            f"reference outputs are the same for all {ref.shape[0]} check inputs (spread {spread:.3g} vs scale "
            f"{scale:.3g}): any engine would pass a comparison; calibrate or load real weights")
    if task == "classification" and ref.shape[1] > 1:
        classes = np.unique(np.argmax(ref, axis=1))
        facts["reference_distinct_top1"] = int(classes.size)
        if classes.size < 2:
            raise UninformativeReference(
                f"reference predicts class {int(classes[0])} for all {ref.shape[0]} check inputs: "
                "a comparison would prove nothing")
    return facts


def compare(reference: np.ndarray, got: np.ndarray, precision: str, task: str = "classification") -> CheckResult:
    ref, out = _flat(reference), _flat(got)
    if ref.shape != out.shape:
        return CheckResult(float("nan"), float("nan"), None, "mismatch",
                           f"output shape {tuple(np.shape(got))} differs from reference {tuple(np.shape(reference))}")
    if not np.all(np.isfinite(out)):
        return CheckResult(float("nan"), float("nan"), None, "mismatch", "engine output has NaN or inf")
    diff = np.abs(ref - out)
    max_abs = float(diff.max())
    scale = float(np.max(np.abs(ref))) or 1.0
    rel = max_abs / scale
    top1 = top1_agreement(ref, out) if task == "classification" else None
    snr = snr_db(ref, out)
    tol_rel, tol_top1 = TOLERANCES.get(precision, TOLERANCES["fp32"])
    floor = SNR_FLOOR_DB.get(precision)
    ok = rel <= tol_rel and (top1 is None or top1 >= tol_top1) and (floor is None or snr is None or snr >= floor)
    detail = "" if ok else f"rel err {rel:.3g} (limit {tol_rel:g})" + (
        f", top-1 agreement {top1:.2f} (limit {tol_top1:g})" if top1 is not None else "") + (
        f", SNR {snr:.1f} dB (floor {floor:g} dB)" if floor is not None and snr is not None else "")
    return CheckResult(max_abs, rel, top1, "pass" if ok else "mismatch", detail, snr)

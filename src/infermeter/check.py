"""The correctness gate: every engine must compute the reference's function before it is timed.

Every output of the graph is compared (a detector's boxes as much as its scores); a row carries the worst
error over outputs and its detail names the output that set it. Check modes (--check):
`warn` (default) times the cells of a model whose reference cannot tell inputs apart, with check_status
`not-run: ...` and a warning; `strict` refuses such a model (exit 2); `off` skips the check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infermeter.errors import UninformativeReference
from infermeter.records import column, columns_of

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

CHECK_MODES = ("warn", "strict", "off")
CHECK_OFF = "not-run: --check off"


@dataclass(frozen=True)
class HeldOutAccuracy:
    """int8/bf16: the engine's outputs against fp32 outputs on held-out inputs (quantization.heldout_accuracy)."""

    top1_agreement_fp32: float | None = column()  # None: not a classifier
    snr_db: float | None = column()  # None: identical outputs (the SNR is unbounded)
    items: int = column("heldout_items")

    def columns(self) -> dict:
        return columns_of(self)


@dataclass
class CheckResult:
    max_abs_err: float
    rel_err: float
    top1_agreement: float | None
    status: str  # "pass" / "mismatch" / "not-run: <why>"
    detail: str = ""
    snr_db: float | None = None  # output SNR against the reference
    heldout: HeldOutAccuracy | None = None  # int8/bf16 with the check on

    @classmethod
    def not_run(cls, why: str) -> CheckResult:
        """No comparison was made: the error columns stay empty and the status says why."""
        return cls(None, None, None, why if why.startswith("not-run") else f"not-run: {why}")

    @property
    def timed(self) -> bool:
        """Whether the cells may be timed as correct: passed, or deliberately not checked."""
        return self.status == "pass" or self.status.startswith("not-run")

    def row_fields(self) -> dict:
        return {"max_abs_err": self.max_abs_err, "rel_err": self.rel_err,
                "top1_agreement": self.top1_agreement, "check_snr_db": self.snr_db, "check_status": self.status,
                **(self.heldout.columns() if self.heldout is not None else {})}


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


def reference_problem(outputs: list[np.ndarray], task: str = "classification") -> tuple[dict, str | None]:
    """(facts, None) when the reference tells the check inputs apart on at least one output, else
    (facts, why). Spread is judged on every output; the top-1 rule only for a classifier's single output."""
    facts: dict = {}
    whys = []
    for i, out in enumerate(outputs):
        try:
            got = assert_informative(out, task if len(outputs) == 1 else "generic")
        except UninformativeReference as e:
            whys.append(f"output {i}: {e}" if len(outputs) > 1 else str(e))
            continue
        if len(outputs) == 1:
            return got, None
        facts[f"reference_spread_{i}"] = got["reference_spread"]
    if len(whys) < len(outputs):
        return facts, None
    return facts, "; ".join(whys)


def compare_outputs(references: list[np.ndarray], outputs: list[np.ndarray], precision: str,
                    task: str = "classification", names: list[str] | None = None) -> CheckResult:
    """Compare every output; the result carries the worst error over outputs, and the detail names each
    output that failed (or, when all pass, the one with the worst error)."""
    if len(outputs) != len(references):
        return CheckResult(float("nan"), float("nan"), None, "mismatch",
                           f"the engine returned {len(outputs)} output(s), the reference has {len(references)}")
    if len(references) == 1:
        return compare(references[0], outputs[0], precision, task)
    names = names or [f"output {i}" for i in range(len(references))]
    results = [compare(r, o, precision, "generic") for r, o in zip(references, outputs, strict=True)]

    def worst_key(r: CheckResult) -> float:
        return float("inf") if r.rel_err != r.rel_err else r.rel_err  # NaN (shape, inf) is the worst

    worst = max(range(len(results)), key=lambda i: worst_key(results[i]))
    bad = [i for i, r in enumerate(results) if r.status != "pass"]
    per_output = ", ".join(f"{n}: {r.rel_err:.3g}" for n, r in zip(names, results, strict=True))
    if bad:
        detail = "; ".join(f"{names[i]}: {results[i].detail}" for i in bad) + f" (rel err per output: {per_output})"
    else:
        detail = f"worst output {names[worst]} (rel err per output: {per_output})"
    w = results[worst]
    return CheckResult(w.max_abs_err, w.rel_err, None, "mismatch" if bad else "pass", detail, w.snr_db)


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

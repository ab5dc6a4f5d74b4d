"""The correctness gate catches wrong outputs and refuses an uninformative reference."""

import numpy as np
import pytest

from infermeter.check import TOLERANCES, assert_informative, compare
from infermeter.errors import UninformativeReference


def _logits(k=8, classes=20, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(k, classes))
    ref[np.arange(k), np.arange(k) % classes] += 5  # distinct top-1 per input
    return ref


def test_identical_outputs_pass_and_perturbed_within_tolerance_pass():
    ref = _logits()
    assert compare(ref, ref.copy(), "fp32").status == "pass"
    scale = np.abs(ref).max()
    noisy = ref + TOLERANCES["fp32"][0] * scale * 0.1
    r = compare(ref, noisy, "fp32")
    assert r.status == "pass" and r.top1_agreement == 1.0


def test_wrong_engine_output_is_caught():
    ref = _logits()
    wrong = ref[::-1].copy()  # right values, wrong inputs: a classic batching bug
    r = compare(ref, wrong, "fp32")
    assert r.status == "mismatch" and r.top1_agreement < 1.0 and "rel err" in r.detail


def test_shape_and_nan_mismatches():
    ref = _logits()
    assert compare(ref, ref[:, :5], "fp32").status == "mismatch"
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert compare(ref, bad, "fp32").status == "mismatch"


def test_uninformative_reference_is_refused():
    const = np.tile(_logits(k=1), (8, 1)) + 1e-11 * np.random.default_rng(1).normal(size=(8, 20))
    with pytest.raises(UninformativeReference):
        assert_informative(const)
    same_class = _logits()
    same_class[:, 3] += 100.0  # varies, but predicts the same class for every input
    with pytest.raises(UninformativeReference, match="class 3"):
        assert_informative(same_class)
    facts = assert_informative(_logits())
    assert facts["reference_distinct_top1"] == 8

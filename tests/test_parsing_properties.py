"""Property-based tests for the command-line and config parsing."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infermeter.config import RunConfig
from infermeter.errors import BadInput
from infermeter.parsing import input_shapes, name_list, positive_int_list, safe_name


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=12, unique=True))
def test_positive_int_lists_round_trip(values):
    assert positive_int_list(",".join(map(str, values)), "--batch-sizes") == values
    assert positive_int_list(" , ".join(map(str, values)), "--batch-sizes") == values


@given(st.text(max_size=30))
def test_any_text_parses_to_positive_ints_or_raises_bad_input(text):
    try:
        out = positive_int_list(text, "--batch-sizes")
    except BadInput as e:
        assert "--batch-sizes" in str(e) and "\n" not in str(e)
    else:
        assert out and all(isinstance(v, int) and v > 0 for v in out) and len(set(out)) == len(out)


@given(st.lists(st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=5), min_size=1, max_size=4))
def test_input_shapes_round_trip(shapes):
    text = ",".join(json.dumps(s) for s in shapes)
    assert input_shapes(text) == shapes


@given(st.text(max_size=40))
def test_input_shapes_never_crash(text):
    try:
        out = input_shapes(text)
    except BadInput as e:
        assert "\n" not in str(e)
    else:
        assert all(all(isinstance(d, int) and d > 0 for d in s) for s in out)


@given(st.text(max_size=60))
def test_safe_names_cannot_leave_their_folder(text):
    name = safe_name(text)
    assert name and "/" not in name and "\\" not in name and name not in (".", "..")
    assert not name.startswith(".")


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from(["batch_sizes", "streams", "warmup", "iterations", "time_s", "target_ci",
                                        "power_interval_ms", "device", "scenarios", "precisions", "seq_len"]),
                       st.one_of(st.integers(-5, 500), st.floats(allow_nan=True), st.floats(-1, 1e3), st.text(max_size=8),
                                 st.lists(st.integers(-3, 64), max_size=4), st.lists(st.text(max_size=8), max_size=3)),
                       max_size=4))
def test_config_validation_accepts_or_rejects_cleanly(data):
    try:
        cfg = RunConfig.from_dict(data)
    except BadInput as e:
        assert "\n" not in str(e)
    except (TypeError, ValueError, AttributeError) as e:  # wrong types must also become BadInput
        pytest.fail(f"{type(e).__name__} escaped validation for {data}: {e}")
    else:
        assert all(b > 0 for s in cfg.scenarios for b in cfg.batch_sizes_for(s))


def test_name_list_rejects_unknown_names():
    with pytest.raises(BadInput, match="unknown 'x'"):
        name_list("a,x", "--engines", allowed=["a", "b"])

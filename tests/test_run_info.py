"""run.json is written from one RunInfo record and read back into it: every field is a key a real run writes,
every key a run writes is a field, and the analysis reads the device label the sweep wrote."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from infermeter.analysis.load import load_results
from infermeter.results.run_info import DeviceFacts, RunInfo

ROOT = Path(__file__).resolve().parents[1]


def test_a_real_run_json_holds_every_field_and_nothing_else(two_result_dirs):
    for root in two_result_dirs:
        (path,) = root.rglob("run.json")
        doc = json.loads(path.read_text())
        info = RunInfo.from_dict(doc)  # raises on a key RunInfo does not declare
        written = set(doc)
        assert {f.name for f in fields(RunInfo)} - written == {"fleet"}  # only a fleet run writes where it ran
        assert {f.name for f in fields(DeviceFacts)} == set(doc["device"])
        assert info.to_dict() == doc  # read back, written again: the same file
        assert info.label == root.name and info.device.kind == "cpu"


def test_the_analysis_labels_devices_by_what_the_sweep_wrote(two_result_dirs):
    df = load_results(two_result_dirs)
    labels = {RunInfo.load(next(r.rglob("run.json"))).label for r in two_result_dirs}
    assert set(df["device_label"]) == labels


def test_committed_run_json_files_read_into_run_info():
    paths = sorted((ROOT / "benchmark_results_final").rglob("run.json"))
    assert paths
    for path in paths:
        assert RunInfo.load(path).device.slug


def test_a_key_no_reader_knows_is_refused():
    with pytest.raises(ValueError, match="surprise"):
        RunInfo.from_dict({"surprise": 1})

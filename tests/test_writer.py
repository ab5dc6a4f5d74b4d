"""Durable result files: fixed columns, torn lines repaired, atomic per-cell files."""

import csv
import os

from infermeter.results.schema import FIELDS
from infermeter.results.writer import ResultsCsv, atomic_write_csv, read_results


def test_rows_keep_fixed_columns_and_unmeasured_fields_are_empty(tmp_path):
    rc = ResultsCsv(tmp_path / "results.csv")
    rc.append({"cell_id": "a", "status": "ok", "energy_j": None, "throughput_items_s": 12.5})
    rc.append({"cell_id": "b", "status": "failed", "error": "worker segmentation fault (SIGSEGV)",
               "an_extra_key": 1})  # a later row with an extra key must not break the CSV
    with open(tmp_path / "results.csv") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header == FIELDS
    assert all(len(r) == len(FIELDS) for r in rows)
    parsed = read_results(tmp_path / "results.csv")
    assert [r["cell_id"] for r in parsed] == ["a", "b"]
    assert parsed[0]["energy_j"] is None  # empty, never zero
    assert float(parsed[0]["throughput_items_s"]) == 12.5


def test_torn_last_line_is_repaired_on_open(tmp_path):
    path = tmp_path / "results.csv"
    rc = ResultsCsv(path)
    rc.append({"cell_id": "done", "status": "ok"})
    with open(path, "a") as fh:  # what a crash in the middle of a write would leave
        fh.write("run,half-a-row-without-newline")
    assert [r["cell_id"] for r in read_results(path)] == ["done"]
    rc2 = ResultsCsv(path)
    rc2.append({"cell_id": "next", "status": "ok"})
    assert [r["cell_id"] for r in read_results(path)] == ["done", "next"]
    assert path.read_bytes().endswith(b"\n")


def test_atomic_csv_leaves_no_temporary_files(tmp_path):
    atomic_write_csv(tmp_path / "latency" / "c.csv", ["request", "latency_ms"], [[0, 1.5], [1, 2.5]])
    assert os.listdir(tmp_path / "latency") == ["c.csv"]
    assert (tmp_path / "latency" / "c.csv").read_text().splitlines() == ["request,latency_ms", "0,1.5", "1,2.5"]

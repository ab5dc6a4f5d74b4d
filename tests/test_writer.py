"""Durable result files: fixed columns, torn lines repaired, atomic per-cell files."""

import csv
import os

import pytest

from infermeter.results.schema import BY_NAME, FIELDS, UnknownColumn, new_row
from infermeter.results.writer import ResultsCsv, atomic_write_csv, read_results


def test_rows_keep_fixed_columns_and_unmeasured_fields_are_empty(tmp_path):
    rc = ResultsCsv(tmp_path / "results.csv")
    rc.append({"cell_id": "a", "status": "ok", "energy_j": None, "throughput_items_s": 12.5})
    b = {"cell_id": "b", "status": "failed", "error": "worker segmentation fault (SIGSEGV)"}
    with pytest.raises(UnknownColumn, match="an_extra_key"):  # refused whole: a measurement never vanishes
        rc.append({**b, "an_extra_key": 1})  # ... and the CSV is not broken by it
    rc.append(b)
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


def test_every_column_has_a_type_unit_and_description():
    for c in BY_NAME.values():
        assert c.type in (str, int, float, bool) and isinstance(c.unit, str) and c.doc, c
    assert BY_NAME["latency_ms_p99"].unit == "ms" and BY_NAME["energy_j"].unit == "J"
    with pytest.raises(UnknownColumn):
        new_row(cell_id="a", latency_p99=1.0)


def test_an_old_results_csv_gets_todays_columns_on_resume(tmp_path):
    """A folder written before columns were added: its rows keep every value, new columns are empty."""
    path = tmp_path / "results.csv"
    old = [f for f in FIELDS if f not in ("dropped", "offered_qps", "rapl_energy_j")]
    atomic_write_csv(path, old, [["c1" if f == "cell_id" else "ok" if f == "status" else "3.5" if f == "energy_j"
                                  else "" for f in old]])
    rc = ResultsCsv(path)
    rc.append({"cell_id": "c2", "status": "ok", "dropped": 4})
    with open(path) as fh:
        assert next(csv.reader(fh)) == FIELDS
    rows = read_results(path)
    assert [(r["cell_id"], r["energy_j"], r["dropped"]) for r in rows] == [("c1", "3.5", None), ("c2", None, "4")]
    atomic_write_csv(path, ["cell_id", "a_column_from_the_future"], [["c3", "1"]])
    with pytest.raises(UnknownColumn, match="a_column_from_the_future"):  # never dropped silently
        ResultsCsv(path)

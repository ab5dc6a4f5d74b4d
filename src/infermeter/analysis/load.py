"""Read results folders (`<results>/<model>/<device-slug>/`) into pandas.

Empty CSV cells mean "not measured" and stay NaN; they never become 0.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from infermeter.errors import BadInput
from infermeter.results import schema
from infermeter.results.run_info import RunInfo
from infermeter.results.writer import complete_lines

# Columns that hold text (or true/false) in results.csv, and numeric ones, as the schema declares them.
TEXT_COLUMNS = schema.TEXT_COLUMNS
NUMERIC_COLUMNS = schema.NUMERIC_COLUMNS

PathLike = str | Path


def _as_paths(dirs: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(dirs, (str, Path)):
        return [Path(dirs)]
    return [Path(d) for d in dirs]


def find_result_dirs(dirs: PathLike | Iterable[PathLike]) -> list[Path]:
    """Every folder holding a results.csv, at or below each given folder, in a stable order.

    A given folder with no results (missing, or e.g. a report folder a shell glob picked up) is skipped
    with a one-line warning on stderr; BadInput only when no folder is left.
    """
    found: list[Path] = []
    skipped: list[str] = []
    for d in _as_paths(dirs):
        if not d.exists():
            skipped.append(f"results folder {d} does not exist")
            continue
        if (d / "results.csv").is_file():
            hits = [d]
        else:
            hits = sorted(p.parent for p in d.rglob("results.csv"))
        if not hits:
            skipped.append(f"no results.csv at or below {d}")
            continue
        for h in hits:
            if h.resolve() not in {f.resolve() for f in found}:
                found.append(h)
    if not found:
        raise BadInput("; ".join(skipped) if skipped else "no results folder given")
    for why in skipped:
        print(f"infermeter: warning: skipped: {why}", file=sys.stderr)
    return found


def load_run_info(result_dir: PathLike) -> dict:
    """run.json of one device folder (environment fingerprint); FileNotFoundError when it is missing."""
    path = Path(result_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run.json (environment fingerprint missing)")
    return json.loads(path.read_text())


def _device_label(result_dir: Path, info: dict) -> str:
    """The label the sweep wrote (RunInfo.label: --device-label, else the device's name), else the folder's."""
    try:
        return RunInfo.from_dict(info).label
    except (TypeError, ValueError) as e:  # no run.json, or one this version cannot read
        if info:
            warnings.warn(f"{result_dir}/run.json: {e}; labelling the device by its folder name", stacklevel=3)
        return result_dir.name


def _read_results_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(io.StringIO(complete_lines(path)), dtype=str, keep_default_na=False, na_values=[""])
    for col in NUMERIC_COLUMNS:
        if col not in df.columns:
            df[col] = float("nan")
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & num.isna()
        if bad.any():
            warnings.warn(f"{path}: column {col} has non-numeric values {sorted(set(raw[bad]))[:3]}; "
                          "read as not measured", stacklevel=3)
        df[col] = num
    for col in TEXT_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    # rows written before energy_trace_vs_counter_pct hold the same figure as a fraction
    legacy = df["energy_trace_vs_counter_pct"].isna() & df["energy_trace_vs_counter_rel"].notna()
    df.loc[legacy, "energy_trace_vs_counter_pct"] = 100.0 * df.loc[legacy, "energy_trace_vs_counter_rel"]
    # ... and before stage_split_vs_e2e_pct, the columns it is computed from
    stages = df["h2d_ms"] + df["compute_ms"] + df["d2h_ms"]
    legacy = df["stage_split_vs_e2e_pct"].isna() & stages.notna() & (df["latency_ms_p50"] > 0)
    df.loc[legacy, "stage_split_vs_e2e_pct"] = 100.0 * (stages[legacy] / df.loc[legacy, "latency_ms_p50"] - 1.0)
    return df


def load_results(dirs: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """All result rows under the given folders, plus `device_label` and `results_dir` columns.

    `dirs` may be device folders or parents holding `<model>/<device>/` folders (searched recursively).
    When two different folders would get the same device label (e.g. the same CPU run twice with
    different settings), the folder name is appended so the devices stay apart.
    """
    found, infos = [], {}
    for rdir in find_result_dirs(dirs):
        try:
            info = load_run_info(rdir)
        except (FileNotFoundError, json.JSONDecodeError) as e:
            warnings.warn(f"{e}; labelling the device by its folder name", stacklevel=2)
            info = {}
        found.append((rdir, _device_label(rdir, info)))
        infos[rdir] = info
    folders_per_label: dict[str, set[str]] = {}
    for rdir, label in found:
        # a tune's folder is the same device searched, not another run of its grid: it keeps the plain label
        if not (rdir / "tune.db").is_file():
            folders_per_label.setdefault(label, set()).add(rdir.name)
    frames = []
    for rdir, label in found:
        if len(folders_per_label.get(label, ())) > 1:
            label = f"{label} ({rdir.name})"
        df = _read_results_csv(rdir / "results.csv")
        df["device_label"] = label
        df["results_dir"] = str(rdir)
        df["graph_export"] = _graph_export(df, infos.get(rdir, {}))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# engines that run the shared ONNX export (directly, or converted from it by OpenVINO or onnx2torch)
ONNX_FED_ENGINES = ("onnxruntime", "openvino", "tensorrt", "torch", "torchscript", "torch-compile")
OLD_EXPORT = "old"  # graph_export of rows measured on a tf2onnx export from before the clean-graph export


def _graph_export(df: pd.DataFrame, info: dict) -> pd.Series:
    """Per row: "old" where the engine ran a tf2onnx export that records no passes (made before the clean
    export: its transpose optimizer had failed, leaving a Transpose pair around every convolution),
    "clean" where the export records its passes, else empty."""
    facts = info.get("artifacts") or {}
    def state(r) -> object:
        shape = facts.get(r.get("input_shape")) or {}
        if r.get("engine") not in ONNX_FED_ENGINES or not str(shape.get("onnx_exporter", "")).startswith("tf2onnx"):
            return None  # (not pd.NA: comparisons with it would be NA, not False)
        return "clean" if "onnx_passes" in shape else OLD_EXPORT
    return df.apply(state, axis=1) if len(df) else pd.Series(dtype=object)


def load_latencies(result_dir: PathLike, cell_id: str) -> pd.Series:
    """Every request's latency in ms for one cell (latency/<cell_id>.csv)."""
    path = Path(result_dir) / "latency" / f"{cell_id}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-request latencies for cell {cell_id}")
    return pd.read_csv(path)["latency_ms"].dropna().astype(float)


def load_power_trace(result_dir: PathLike, cell_id: str) -> pd.DataFrame:
    """Telemetry samples for one cell (power/<cell_id>.csv): time_s, power_w, utilisation, memory, clocks."""
    path = Path(result_dir) / "power" / f"{cell_id}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no telemetry trace for cell {cell_id}")
    return pd.read_csv(path).apply(pd.to_numeric, errors="coerce")


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose numbers are results: status ok (a mismatched cell's speed is not a result)."""
    return df[df["status"] == "ok"]


def latest_per_cell(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (device, model, engine, precision, scenario, batch, streams, qps): the last written."""
    keys = ["device_label", "model", "engine", "precision", "scenario", "batch_size", "streams", "target_qps",
            "input_shape"]
    return df.drop_duplicates(subset=[k for k in keys if k in df.columns], keep="last")

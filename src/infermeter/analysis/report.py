"""`infermeter report`: PNG plots, Final_Analysis.pdf (matplotlib PdfPages) and the xlsx workbook."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from infermeter.analysis import plots
from infermeter.analysis.load import OLD_EXPORT, latest_per_cell, load_results, load_run_info, ok_rows
from infermeter.analysis.workbook import write_workbook
from infermeter.errors import BadInput
from infermeter.telemetry.monitor import BOUND_RULE

PDF_NAME = "Final_Analysis.pdf"
XLSX_NAME = "Final_Analysis.xlsx"
PAGE = (11.69, 8.27)  # A4 landscape, inches
TABLE_ROWS_PER_PAGE = 30
TEXT_LINES_PER_PAGE = 52
DEFAULT_MIN_AGREEMENT = 0.99  # top-1 agreement with fp32 an int8/bf16 cell needs to compete for "best"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _num(v, spec: str) -> str:
    return "–" if pd.isna(v) else format(v, spec)


# ---- content -------------------------------------------------------------------------------------

def environment_lines(df: pd.DataFrame) -> list[str]:
    """One block per device folder, from run.json."""
    lines = []
    for rdir, rows in df.groupby("results_dir", sort=False):
        label = rows["device_label"].iloc[0]
        models = ", ".join(sorted(rows["model"].dropna().unique()))
        lines += [f"{label}  —  model(s): {models}", f"  folder: {rdir}"]
        try:
            info = load_run_info(rdir)
        except (FileNotFoundError, ValueError) as e:
            lines += [f"  run.json unreadable: {e}", ""]
            continue
        dev, host, gpu = info.get("device") or {}, info.get("host") or {}, info.get("gpu") or {}
        lines.append(f"  device: {dev.get('kind', '?')} {dev.get('name', '?')}"
                     + (f" (gpu id {dev['gpu_id']})" if dev.get("gpu_id") is not None else ""))
        if host:
            lines.append(f"  host: {host.get('cpu', '?')}, {host.get('cores_logical', '?')} logical cores, "
                         f"{host.get('memory_gib', '?')} GiB, {host.get('os', '?')}, Python {host.get('python', '?')}")
        if gpu:
            lines.append("  gpu: " + ", ".join(f"{k} {v}" for k, v in gpu.items()))
        versions = info.get("packages") or info.get("engines") or {}
        shown = [f"{k} {v if not isinstance(v, dict) else v.get('version', v)}" for k, v in versions.items() if v]
        if shown:
            lines += textwrap.wrap("  versions: " + ", ".join(shown), 150, subsequent_indent="    ")
        im = info.get("infermeter") or {}
        if im:
            lines.append(f"  infermeter {im.get('version', '?')} (commit {im.get('git_commit') or 'unknown'})")
        if info.get("created_at"):
            lines.append(f"  created: {info['created_at']}")
        if info.get("command"):
            lines += textwrap.wrap(f"  command: {info['command']}", 150, subsequent_indent="    ")
        lines.append("")
    return lines


def results_table(rows: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per-device table: engine, precision, scenario, batch, throughput, p50/p99, energy/item, check, status."""
    cols = ["engine", "precision", "scenario", "batch", "throughput (items/s)", "graph nodes", "p50 (ms)",
            "p99 (ms)", "energy/item (mJ)", "check", "status"]
    body = []
    for _, r in rows.sort_values(["scenario", "engine", "precision", "batch_size"]).iterrows():
        batch = str(int(r["batch_size"])) if pd.notna(r["batch_size"]) else "–"
        if pd.notna(r.get("streams")) and r["streams"] != 1:
            batch += f" x{int(r['streams'])}"
        body.append([str(r["engine"]), str(r["precision"]), str(r["scenario"]), batch,
                     _num(r["throughput_items_s"], ",.1f"), _graph(r), _num(r["latency_ms_p50"], ".3f"),
                     _num(r["latency_ms_p99"], ".3f"), _num(r["energy_per_item_j"] * 1000, ".3f"),
                     str(r["check_status"])[:28] if pd.notna(r["check_status"]) else "–", _status(r)])
    return cols, body


def _graph(r) -> str:
    """The graph the engine ran: its node count and source (results older than the graph-form columns: –)."""
    export = r.get("graph_export")
    if isinstance(export, str) and export == OLD_EXPORT:  # an empty cell may read as NA, which has no truth value
        return "old export"
    nodes = r.get("graph_nodes")
    if nodes is None or pd.isna(nodes):
        return "–"
    source = r.get("graph_source")
    return f"{int(nodes)} {source}" if isinstance(source, str) and source else str(int(nodes))


def _loadgen_invalid(r) -> bool:
    verdict = r.get("loadgen_result")
    return isinstance(verdict, str) and verdict == "INVALID"  # empty cells may read as NA


def _status(r) -> str:
    """The row's status; a run LoadGen itself judged INVALID says so."""
    return f"{r['status']}, LoadGen INVALID" if _loadgen_invalid(r) else str(r["status"])


def _engine_label(r) -> str:
    return f"{r['engine']} {r['precision']}"


def meets_agreement(rows: pd.DataFrame, min_agreement: float) -> pd.Series:
    """Cells whose top-1 agreement with fp32 reaches min_agreement; cells without one (fp32, fp16: judged by
    the gate alone) qualify."""
    if "top1_agreement_fp32" not in rows:
        return pd.Series(True, index=rows.index)
    agreement = pd.to_numeric(rows["top1_agreement_fp32"], errors="coerce")
    return agreement.isna() | (agreement >= min_agreement)


def best_by_batch(df: pd.DataFrame, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> pd.DataFrame:
    """Best engine and precision per (model, device, scenario, batch size) by throughput, by p99 latency and by
    items/J, among cells whose top-1 agreement with fp32 is at least min_agreement. A faster cell left out
    for its agreement is named in the last column."""
    out = []
    everything = latest_per_cell(ok_rows(df))
    rows = everything[meets_agreement(everything, min_agreement)]
    left_out = everything[~meets_agreement(everything, min_agreement)]
    for (model, dev, scen, batch), g in rows.groupby(["model", "device_label", "scenario", "batch_size"], sort=True):
        entry = {"model": model, "device": dev, "scenario": scen, "batch_size": int(batch)}
        for col, metric, pick, spec, unit in (("by throughput", "throughput_items_s", "idxmax", ",.1f", "items/s"),
                                               ("by p99 latency", "latency_ms_p99", "idxmin", ".3f", "ms"),
                                               ("by items per joule", "items_per_j", "idxmax", ",.2f", "items/J")):
            valid = g[g[metric].notna()]
            if valid.empty:
                entry[col] = "no energy measurements" if metric == "items_per_j" else "not measured"
            else:
                best = valid.loc[getattr(valid[metric], pick)()]
                entry[col] = f"{_engine_label(best)} ({format(best[metric], spec)} {unit})"
        fastest = g["throughput_items_s"].max()
        lost = left_out[(left_out["model"] == model) & (left_out["device_label"] == dev) &
                        (left_out["scenario"] == scen) & (left_out["batch_size"] == batch) &
                        (left_out["throughput_items_s"] > fastest)]
        entry[f"faster, agreement < {min_agreement:g}"] = "; ".join(
            f"{_engine_label(r)} ({r['throughput_items_s']:,.1f} items/s, agreement {r['top1_agreement_fp32']:.3f})"
            for _, r in lost.sort_values("throughput_items_s", ascending=False).iterrows()) or "–"
        out.append(entry)
    return pd.DataFrame(out)


def problem_lines(df: pd.DataFrame) -> list[str]:
    """Every mismatched or failed cell with its error, every run LoadGen judged INVALID with the constraints it
    found unmet; skipped cells counted with their reasons."""
    lines = []
    invalid = df.apply(_loadgen_invalid, axis=1) if "loadgen_result" in df and not df.empty else \
        pd.Series(False, index=df.index)
    bad = df[df["status"].isin(["mismatch", "failed"]) | invalid]
    if bad.empty:
        lines.append("No mismatched or failed cells.")
    for _, r in bad.iterrows():
        status = "LOADGEN INVALID" if _loadgen_invalid(r) and r["status"] == "ok" else str(r["status"]).upper()
        head = (f"{status}: {r['device_label']} / {r['model']} / {_engine_label(r)} / "
                f"{r['scenario']} batch {int(r['batch_size']) if pd.notna(r['batch_size']) else '?'}")
        detail = r["error"] if pd.notna(r["error"]) else "(no error message recorded)"
        if _loadgen_invalid(r):
            unmet = r.get("loadgen_failed_constraints")
            detail = ("" if pd.isna(r["error"]) else f"{r['error']}; ") + \
                f"LoadGen: {unmet if pd.notna(unmet) else 'INVALID (see mlperf_log_summary.txt)'}"
        check = f" [check: {r['check_status']}]" if pd.notna(r["check_status"]) else ""
        lines.append(head)
        lines += textwrap.wrap(f"{detail}{check}", 140, initial_indent="    ", subsequent_indent="    ")
    skipped = df[df["status"] == "skipped"]
    if not skipped.empty:
        lines += ["", f"Skipped cells: {len(skipped)}"]
        reasons = skipped.groupby(skipped["error"].fillna("no reason recorded"))
        for why, g in reasons:
            engines = ", ".join(sorted({_engine_label(r) for _, r in g.iterrows()}))
            lines += textwrap.wrap(f"{len(g)} x {why} ({engines})", 140, initial_indent="    ",
                                   subsequent_indent="      ")
    old = df[(df["graph_export"] == OLD_EXPORT) & (df["status"] == "ok")] if "graph_export" in df else df.iloc[:0]
    if not old.empty:  # their speed is partly the converter's: say so wherever they appear
        lines += ["", f"Measured on the old graph: {len(old)} cells"]
        for label, g in old.groupby("device_label"):
            lines += textwrap.wrap(
                f"{label}: {', '.join(sorted({_engine_label(r) for _, r in g.iterrows()}))} ran the tf2onnx export made "
                "before the clean-graph export (its transpose optimizer had failed: a Transpose pair around every "
                "convolution, hard-swish decomposed). Their speed is partly the converter's; re-measure them.",
                140, initial_indent="    ", subsequent_indent="      ")
    return lines


TRACE_COUNTER_FLAG_PCT = 2.0  # the sampled power trace and the energy counter disagree by more: flagged


def _trace_counter(r) -> str:
    pct = r.get("energy_trace_vs_counter_pct")
    if pd.isna(pct):
        return "–"
    return f"{pct:+.1f} FLAG" if abs(pct) > TRACE_COUNTER_FLAG_PCT else f"{pct:+.1f}"


def _text(v, width: int = 40) -> str:
    return "–" if pd.isna(v) else str(v)[:width]


def energy_check_table(rows: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per-device table of the GPU cells' energy cross-checks: utilisation, the busiest host thread, bound,
    trace vs counter (FLAG above 2%), idle baseline, net energy (or why there is none), and how far the
    separate synchronised stage-split pass (h2d + compute + d2h) is from the timed run's median latency."""
    cols = ["engine", "precision", "scenario", "batch", "GPU util (%)", "busiest thread (% of a core)", "bound",
            f"trace vs counter (%, FLAG > {TRACE_COUNTER_FLAG_PCT:g})", "idle (W)", "net energy (J) or why not",
            "stages vs e2e (%)"]
    body = []
    gpu = rows[(rows["status"] == "ok") & (rows["device"] == "cuda")]
    for _, r in gpu.sort_values(["scenario", "engine", "precision", "batch_size"]).iterrows():
        batch = str(int(r["batch_size"])) if pd.notna(r["batch_size"]) else "–"
        net = _num(r["energy_net_j"], ".2f") if pd.notna(r["energy_net_j"]) else _text(r.get("energy_net_note"))
        body.append([str(r["engine"]), str(r["precision"]), str(r["scenario"]), batch,
                     _num(r["gpu_util_avg_pct"], ".0f"), _num(r["busiest_thread_cpu_pct"], ".0f"),
                     _text(r["bound"]), _trace_counter(r), _num(r["power_idle_w"], ".1f"), net,
                     _num(r["stage_split_vs_e2e_pct"], "+.0f")])
    return cols, body


def energy_flag_lines(df: pd.DataFrame) -> list[str]:
    """Cells whose energy needs a second look: the sampled trace more than 2% from the counter, a net energy
    that would have been negative, and host-bound cells; with the rule that names a cell host-bound."""
    ok = df[df["status"] == "ok"]
    lines = [f"bound: {BOUND_RULE}", ""]

    def cell(r) -> str:
        batch = int(r["batch_size"]) if pd.notna(r["batch_size"]) else "?"
        return f"{r['device_label']} / {r['model']} / {_engine_label(r)} / {r['scenario']} batch {batch}"

    pct = ok["energy_trace_vs_counter_pct"]
    flagged = ok[pct.abs() > TRACE_COUNTER_FLAG_PCT]
    lines.append(f"Trace vs counter above {TRACE_COUNTER_FLAG_PCT:g}%: {len(flagged)} cell(s)"
                 + ("" if flagged.empty else " (the counter's energy is the row's; the window may be too short "
                                             "for the counter's steps, or the power reading averaged)"))
    for _, r in flagged.iterrows():
        lines.append(f"    FLAG {r['energy_trace_vs_counter_pct']:+.1f}%: {cell(r)} "
                     f"(window {_num(r['energy_window_s'], '.1f')} s)")
    notes = ok[ok["energy_net_note"].notna() & ok["energy_net_j"].isna() & ok["energy_j"].notna()]
    lines += ["", f"Net energy not reported: {len(notes)} cell(s)"]
    for _, r in notes.iterrows():
        lines += textwrap.wrap(f"{cell(r)}: {r['energy_net_note']}", 140, initial_indent="    ",
                               subsequent_indent="      ")
    host = ok[ok["bound"] == "host"]
    lines += ["", f"Host-bound cells: {len(host)}"]
    for _, r in host.iterrows():
        lines.append(f"    {cell(r)}: GPU utilisation {_num(r['gpu_util_avg_pct'], '.0f')}%, busiest thread "
                     f"{_num(r['busiest_thread_cpu_pct'], '.0f')}% of a core")
    for dev, rows in ok[ok["gpu_uuid"].notna()].groupby("device_label", sort=False):
        boards = list(dict.fromkeys(rows["gpu_uuid"]))
        if len(boards) > 1:  # two boards of one kind differ: compare cells of one board (gpu_uuid) only
            lines += ["", f"{dev}: rows from {len(boards)} GPU boards ({', '.join(boards)}); ratios between "
                          "cells of different boards compare boards as well as engines"]
    return lines


# ---- pages ---------------------------------------------------------------------------------------

def _page():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PAGE)
    FigureCanvasAgg(fig)
    return fig


def _text_pages(pdf, title: str, lines: list[str]) -> None:
    chunks = [lines[i:i + TEXT_LINES_PER_PAGE] for i in range(0, max(len(lines), 1), TEXT_LINES_PER_PAGE)]
    for n, chunk in enumerate(chunks, start=1):
        fig = _page()
        fig.text(0.04, 0.95, title + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""), fontsize=15,
                 weight="bold", va="top")
        fig.text(0.04, 0.90, "\n".join(chunk), fontsize=7.5, family="monospace", va="top")
        pdf.savefig(fig)


def _table_pages(pdf, title: str, columns: list[str], body: list[list[str]], note: str = "") -> None:
    if not body:
        _text_pages(pdf, title, ["(no rows)"])
        return
    chunks = [body[i:i + TABLE_ROWS_PER_PAGE] for i in range(0, len(body), TABLE_ROWS_PER_PAGE)]
    for n, chunk in enumerate(chunks, start=1):
        fig = _page()
        fig.text(0.04, 0.96, title + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""), fontsize=13,
                 weight="bold", va="top")
        if note:
            fig.text(0.04, 0.92, note, fontsize=8, va="top", color="0.3")
        ax = fig.add_axes([0.03, 0.03, 0.94, 0.86])
        ax.axis("off")
        table = ax.table(cellText=chunk, colLabels=columns, loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.auto_set_column_width(list(range(len(columns))))
        table.scale(1, 1.25)
        for (row, _), cell in table.get_celld().items():
            if row == 0:
                cell.set_facecolor("#DDEBF7")
                cell.set_text_props(weight="bold")
        pdf.savefig(fig)


def _cover(pdf, df: pd.DataFrame) -> None:
    fig = _page()
    devices = list(dict.fromkeys(df["device_label"]))
    models = sorted(df["model"].dropna().unique())
    counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    fig.text(0.5, 0.62, "Final Analysis", ha="center", fontsize=28, weight="bold")
    fig.text(0.5, 0.52, f"model(s): {', '.join(models)}", ha="center", fontsize=13)
    fig.text(0.5, 0.46, f"device(s): {'; '.join(devices)}", ha="center", fontsize=13, wrap=True)
    fig.text(0.5, 0.40, f"{len(df)} cells: {counts}", ha="center", fontsize=12)
    fig.text(0.5, 0.30, "Only cells with status ok enter plots, tables of best engines and comparisons;\n"
             "– means not measured (never zero).", ha="center", fontsize=10, color="0.3")
    pdf.savefig(fig)


# ---- plots ---------------------------------------------------------------------------------------

def _plot_set(df: pd.DataFrame, baseline: str | None,
              min_agreement: float = DEFAULT_MIN_AGREEMENT) -> list[tuple[str, object]]:
    """(file stem, figure) for every plot of the report, per model and device, then across devices."""
    figs = []
    for (model, dev), rows in df.groupby(["model", "device_label"], sort=False):
        stem = f"{slug(model)}__{slug(dev)}"
        good = ok_rows(rows)
        scenarios = list(dict.fromkeys(good["scenario"].dropna())) or [None]
        for scen in scenarios:
            tag = f"{stem}__{slug(scen)}" if scen else stem
            figs.append((f"throughput__{tag}", plots.plot_throughput(rows, scen)[0]))
            figs.append((f"latency_percentiles__{tag}", plots.plot_latency_percentiles(rows, scen)[0]))
            batches = sorted(good[good["scenario"] == scen]["batch_size"].dropna().unique().astype(int))
            shown = sorted({batches[0], batches[len(batches) // 2], batches[-1]}) if batches else None
            figs.append((f"latency_distribution__{tag}",
                         plots.plot_latency_distribution(rows, scen, batch_sizes=shown)[0]))
            figs.append((f"power_vs_throughput__{tag}", plots.plot_power_vs_throughput(rows, scen)[0]))
            figs.append((f"energy_per_item__{tag}", plots.plot_energy_per_item(rows, scen)[0]))
            figs.append((f"memory_utilisation__{tag}", plots.plot_memory_utilisation(rows, scen)[0]))
            if "top1_agreement_fp32" in rows and rows["top1_agreement_fp32"].notna().any():
                figs.append((f"speed_vs_agreement__{tag}",
                             plots.plot_speed_vs_agreement(rows, scen, min_agreement)[0]))
        if not good.empty:
            # the trace of the fastest cell: the one that works the device hardest
            top = good.loc[good["throughput_items_s"].idxmax()] if good["throughput_items_s"].notna().any() \
                else good.iloc[-1]
            figs.append((f"power_trace__{stem}", plots.plot_power_trace(rows, top["cell_id"], dev)[0]))
    devices = list(dict.fromkeys(df["device_label"]))
    if len(devices) > 1:
        base = baseline or devices[0]
        for model, rows in df.groupby("model", sort=False):
            good = ok_rows(rows)
            for scen in list(dict.fromkeys(good["scenario"].dropna())):
                tag = f"{slug(model)}__{slug(scen)}"
                for metric in ("throughput_items_s", "latency_ms_p99", "items_per_j"):
                    figs.append((f"devices_{metric}__{tag}", plots.plot_devices(rows, metric, scen)[0]))
                figs.append((f"devices_power_vs_throughput__{tag}",
                             plots.plot_power_vs_throughput(rows, scen, by_device=True)[0]))
                if base in set(rows["device_label"]):
                    figs.append((f"devices_normalised_throughput__{tag}",
                                 plots.plot_devices_normalised(rows, base, "throughput_items_s", scen)[0]))
    return figs


# ---- entry points --------------------------------------------------------------------------------

def build_report(dirs, out_dir, baseline: str | None = None,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT) -> dict[str, Path]:
    """Write plots/<name>.png, Final_Analysis.pdf and Final_Analysis.xlsx under out_dir.

    Returns {"pdf": ..., "xlsx": ..., "plot:<name>": ...} with every written path.
    """
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages

    df = load_results(dirs)
    tune_dirs = list(dict.fromkeys(df["results_dir"]))
    if "trial" in df and df["trial"].notna().any() and df["trial"].isna().any():
        df = df[df["trial"].isna()]  # a tune's trials are no grid: its front has pages of its own
    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    # TrueType fonts (type 42) keep the PDF's text searchable and extractable
    with rc_context({"pdf.fonttype": 42}):
        figs = _plot_set(df, baseline, min_agreement)
        for stem, fig in figs:
            path = plot_dir / f"{stem}.png"
            fig.savefig(path, dpi=130)
            written[f"plot:{stem}"] = path
        pdf_path = out_dir / PDF_NAME
        with PdfPages(pdf_path) as pdf:
            _cover(pdf, df)
            _text_pages(pdf, "Environment", environment_lines(df))
            best = best_by_batch(df, min_agreement)
            title = "Best engine per batch size"
            if best.empty:
                _text_pages(pdf, title, ["no successful cells"])
            else:
                _table_pages(pdf, title, [c.replace("_", " ") for c in best.columns],
                             best.astype(str).values.tolist(),
                             note=f"successful cells only; int8/bf16 cells compete when their top-1 agreement with "
                                  f"fp32 on held-out inputs is at least {min_agreement:g} (--min-agreement)")
            _text_pages(pdf, "Mismatched, failed and skipped cells", problem_lines(df))
            _text_pages(pdf, "Energy cross-checks and host-bound cells", energy_flag_lines(df))
            for (model, dev), rows in df.groupby(["model", "device_label"], sort=False):
                cols, body = energy_check_table(rows)
                if body:
                    _table_pages(pdf, f"Energy and bound — {dev} — {model}", cols, body,
                                 note=f"GPU cells; FLAG: trace and counter more than {TRACE_COUNTER_FLAG_PCT:g}% apart; "
                                      "– = not measured")
            for (model, dev), rows in df.groupby(["model", "device_label"], sort=False):
                cols, body = results_table(rows)
                _table_pages(pdf, f"Results — {dev} — {model}", cols, body, note="– = not measured")
            from infermeter.tune.output import report_parts  # the front of each folder holding a tune

            for tune in filter(None, (report_parts(d) for d in tune_dirs)):
                _table_pages(pdf, tune["title"], tune["columns"], tune["body"], note=tune["note"])
                for stem, fig in tune["figs"]:
                    fig.savefig(plot_dir / f"{stem}.png", dpi=130)
                    written[f"plot:{stem}"] = plot_dir / f"{stem}.png"
                    pdf.savefig(fig)
            for _, fig in figs:
                pdf.savefig(fig)
            info = pdf.infodict()
            info["Title"] = "Final Analysis"
            info["Subject"] = "infermeter results: " + "; ".join(dict.fromkeys(df["device_label"]))
        written["pdf"] = pdf_path
    written["xlsx"] = write_workbook(df, out_dir / XLSX_NAME)
    return written


def report_main(dirs: Iterable[str], out: str | None = None, min_agreement: float = DEFAULT_MIN_AGREEMENT) -> int:
    """`infermeter report DIR... [--out DIR] [--min-agreement A]` (default out: the first DIR). 0 written,
    2 bad input."""
    dirs = list(dirs)
    if not dirs:
        print("infermeter report: give at least one results folder", file=sys.stderr)
        return 2
    if not 0 <= min_agreement <= 1:
        print(f"infermeter report: --min-agreement must be between 0 and 1, got {min_agreement:g}", file=sys.stderr)
        return 2
    try:
        written = build_report(dirs, out or dirs[0], min_agreement=min_agreement)
    except BadInput as e:
        print(f"infermeter report: {e}", file=sys.stderr)
        return 2
    plots_written = sum(1 for k in written if k.startswith("plot:"))
    print(f"report: {written['pdf']}\nworkbook: {written['xlsx']}\nplots: {plots_written} PNG files in "
          f"{written['pdf'].parent / 'plots'}")
    return 0

"""Plots from results DataFrames (as `load_results` returns them). Each function returns (fig, ax).

Figures are built on matplotlib's Agg canvas directly (no pyplot state, no GUI backend), so they
work the same in the report, in a script and in a notebook (`display(fig)`). Only rows with
status "ok" are plotted: a mismatched cell's speed is not a result. Batch-size axes are log2;
value axes switch to log scale when the data span more than `LOG_SPAN` (x30).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from infermeter.analysis.load import load_latencies, load_power_trace, ok_rows

LOG_SPAN = 30.0
FIGSIZE = (10, 5.2)

# label, unit (shown on the axis) and a scale factor from the stored unit to the shown one
METRICS: dict[str, tuple[str, str, float]] = {
    "throughput_items_s": ("throughput", "items/s", 1.0),
    "latency_ms_p50": ("p50 latency", "ms", 1.0),
    "latency_ms_p95": ("p95 latency", "ms", 1.0),
    "latency_ms_p99": ("p99 latency", "ms", 1.0),
    "latency_ms_mean": ("mean latency", "ms", 1.0),
    "items_per_j": ("energy efficiency", "items/J", 1.0),
    "energy_per_item_j": ("energy per item", "mJ/item", 1000.0),
    "power_avg_w": ("average power", "W", 1.0),
    "device_mem_peak_mb": ("device memory peak", "MB", 1.0),
    "host_rss_peak_mb": ("host RSS peak", "MB", 1.0),
    "gpu_util_avg_pct": ("GPU utilisation", "%", 1.0),
    "cpu_util_avg_pct": ("CPU utilisation", "%", 1.0),
}
UTIL_LABELS = {"gpu_util_pct": "GPU utilisation (%)", "cpu_util_pct": "host CPU utilisation (%)",
               "proc_cpu_pct": "worker process CPU (%)"}
PRECISION_STYLES = {"fp32": "-", "fp16": "--", "bf16": (0, (5, 1, 1, 1)), "int8": ":"}
MARKERS = "osD^v<>pPX*h"


def _figure(ncols: int = 1, figsize=FIGSIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=True)
    return fig, axes


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def metric_label(metric: str) -> str:
    name, unit, _ = METRICS.get(metric, (metric, "", 1.0))
    return f"{name} ({unit})" if unit else name


def _scaled(metric: str, values):
    return np.asarray(values, dtype=float) * METRICS.get(metric, ("", "", 1.0))[2]


def pick_scenario(df: pd.DataFrame, scenario: str | None = None) -> str | None:
    """The scenario to show: the one asked for, else offline when present, else the most common."""
    if scenario is not None:
        return scenario
    present = df["scenario"].dropna()
    if present.empty:
        return None
    return "offline" if (present == "offline").any() else present.mode().iloc[0]


def _select(df: pd.DataFrame, scenario: str | None) -> tuple[pd.DataFrame, str]:
    rows = ok_rows(df)
    scen = pick_scenario(rows if not rows.empty else df, scenario)
    if scen is not None:
        rows = rows[rows["scenario"] == scen]
    return rows, scen or "no scenario"


def _series_keys(rows: pd.DataFrame, by_device: bool) -> list[str]:
    keys = ["engine", "precision"]
    if rows["streams"].nunique(dropna=True) > 1:
        keys.append("streams")
    if rows["model"].nunique(dropna=True) > 1:
        keys.insert(0, "model")
    if by_device or rows["device_label"].nunique() > 1:
        keys.insert(0, "device_label")
    return keys


def _series_label(keys: list[str], values: tuple) -> str:
    parts = []
    for k, v in zip(keys, values, strict=True):
        parts.append(f"x{int(v)} streams" if k == "streams" else str(v))
    return " ".join(parts)


def _batch_axis(ax, batches) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    batches = sorted({int(b) for b in batches if pd.notna(b)})
    ax.set_xscale("log", base=2)
    if batches:
        ax.xaxis.set_major_locator(FixedLocator(batches))
        ax.set_xticklabels([str(b) for b in batches])
        ax.xaxis.set_minor_locator(NullLocator())
        lo, hi = batches[0], batches[-1]
        ax.set_xlim(lo / 1.3, hi * 1.3)
    ax.set_xlabel("batch size (items, log2 scale)")


def _auto_log(ax, values, axis: str = "y") -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > LOG_SPAN:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def _legend(ax, title: str | None = None, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    # outside the axes on the right: never covers data; constrained layout makes room for it
    ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              title_fontsize="small", frameon=False, **kw)


def unavailable_reasons(rows: pd.DataFrame) -> list[str]:
    """Distinct `energy_source` reasons of the form 'unavailable: <why>'."""
    src = rows["energy_source"].dropna().astype(str)
    return sorted({s.split(":", 1)[1].strip() or s for s in src if s.startswith("unavailable")})


def _say_unavailable(ax, what: str, rows: pd.DataFrame) -> None:
    reasons = unavailable_reasons(rows)
    why = "; ".join(reasons) if reasons else "not measured in these results"
    ax.text(0.5, 0.5, textwrap.fill(f"{what} unavailable: {why}", 80), ha="center", va="center",
            transform=ax.transAxes, fontsize=11, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def _say_empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, textwrap.fill(text, 80), ha="center", va="center", transform=ax.transAxes, fontsize=11,
            color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def _styles(rows: pd.DataFrame, keys: list[str], color_by: str):
    """Colour by engine (one device) or by device; line style by precision; marker by engine."""
    color_values = sorted(rows[color_by].dropna().astype(str).unique())
    colours = dict(zip(color_values, _palette(len(color_values)), strict=True))
    engines = sorted(rows["engine"].dropna().astype(str).unique())
    markers = {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(engines)}

    def style(sub: pd.DataFrame) -> dict:
        first = sub.iloc[0]
        return {"color": colours[str(first[color_by])], "linestyle": PRECISION_STYLES.get(first["precision"], "-."),
                "marker": markers[str(first["engine"])]}

    return style


def _metric_vs_batch(df: pd.DataFrame, metric: str, scenario: str | None, title: str, by_device: bool,
                     what_unavailable: str | None = None):
    fig, ax = _figure()
    rows, scen = _select(df, scenario)
    rows = rows[rows[metric].notna()] if metric in rows else rows.iloc[0:0]
    if rows.empty:
        sel, _ = _select(df, scenario)
        if what_unavailable:
            _say_unavailable(ax, what_unavailable, sel if not sel.empty else df)
        else:
            _say_empty(ax, f"no successful cells with {metric_label(metric)} ({scen})")
        ax.set_title(f"{title} — {scen}")
        return fig, ax
    keys = _series_keys(rows, by_device)
    style = _styles(rows, keys, "device_label" if by_device else "engine")
    for values, sub in rows.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        sub = sub.sort_values("batch_size")
        ax.plot(sub["batch_size"], _scaled(metric, sub[metric]), label=_series_label(keys, values), **style(sub))
    _batch_axis(ax, rows["batch_size"])
    if not _auto_log(ax, _scaled(metric, rows[metric])):
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{title} — {scen}")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, title=" ".join(k.replace("_label", "") for k in keys))
    return fig, ax


def plot_throughput(df: pd.DataFrame, scenario: str | None = None):
    """Throughput (items/s) vs batch size, one line per engine and precision."""
    return _metric_vs_batch(df, "throughput_items_s", scenario, "Throughput vs batch size", by_device=False)


def plot_energy_per_item(df: pd.DataFrame, scenario: str | None = None):
    """Energy per item (mJ) vs batch size; says why when no energy was measured."""
    return _metric_vs_batch(df, "energy_per_item_j", scenario, "Energy per item vs batch size", by_device=False,
                            what_unavailable="energy")


def plot_latency_percentiles(df: pd.DataFrame, scenario: str | None = None):
    """p50 / p95 / p99 latency (ms) vs batch size: colour per engine+precision, line style per percentile."""
    from matplotlib.lines import Line2D

    fig, ax = _figure()
    rows, scen = _select(df, scenario)
    rows = rows[rows["latency_ms_p50"].notna()]
    ax.set_title(f"Latency percentiles vs batch size — {scen}")
    if rows.empty:
        _say_empty(ax, f"no successful cells with latency ({scen})")
        return fig, ax
    keys = _series_keys(rows, by_device=False)
    groups = list(rows.groupby(keys, sort=True))
    colours = _palette(len(groups))
    percentiles = [("latency_ms_p50", "-", "p50"), ("latency_ms_p95", "--", "p95"), ("latency_ms_p99", ":", "p99")]
    series_handles = []
    for colour, (values, sub) in zip(colours, groups, strict=True):
        values = values if isinstance(values, tuple) else (values,)
        sub = sub.sort_values("batch_size")
        for col, ls, _ in percentiles:
            ax.plot(sub["batch_size"], sub[col], color=colour, linestyle=ls, marker="o", markersize=3)
        series_handles.append(Line2D([], [], color=colour, marker="o", label=_series_label(keys, values)))
    _batch_axis(ax, rows["batch_size"])
    _auto_log(ax, rows[[c for c, _, _ in percentiles]].to_numpy().ravel())
    ax.set_ylabel("latency per batch (ms)")
    ax.grid(True, which="both", alpha=0.3)
    pct_handles = [Line2D([], [], color="0.2", linestyle=ls, label=name) for _, ls, name in percentiles]
    spacer = Line2D([], [], linestyle="none", label=" ")
    # one legend (series, then line styles): constrained layout reserves room for a single outside legend
    ax.legend(handles=series_handles + [spacer] + pct_handles, title=" ".join(keys) + " / percentile",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title_fontsize="small", frameon=False)
    return fig, ax


def iqr_outliers(values: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Boolean mask of values beyond k x IQR from the quartiles (Tukey's fences, as the box plot draws them)."""
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    return (values < q1 - k * iqr) | (values > q3 + k * iqr)


def plot_latency_distribution(df: pd.DataFrame, scenario: str | None = None, remove_outliers: bool = False,
                              batch_sizes: list[int] | None = None):
    """Box plots of every request's latency (latency/<cell>.csv), grouped by batch size.

    Outliers are drawn as points; with `remove_outliers=True` points beyond 1.5 x IQR are dropped
    and the plot says how many.
    """
    fig, ax = _figure()
    rows, scen = _select(df, scenario)
    if batch_sizes is not None:
        rows = rows[rows["batch_size"].isin(batch_sizes)]
    ax.set_title(f"Per-request latency distribution — {scen}")
    keys = _series_keys(rows, by_device=False) if not rows.empty else []
    samples, missing = [], []
    for _, r in rows.sort_values(keys + ["batch_size"]).iterrows():
        try:
            lat = load_latencies(r["results_dir"], r["cell_id"]).to_numpy()
        except FileNotFoundError:
            missing.append(str(r["cell_id"]))
            continue
        if lat.size:
            samples.append((tuple(r[k] for k in keys), int(r["batch_size"]), lat))
    if not samples:
        _say_empty(ax, "no per-request latency files for the successful cells"
                   + (f" (missing: {', '.join(missing[:4])})" if missing else ""))
        return fig, ax
    series = sorted({s for s, _, _ in samples}, key=lambda t: tuple(map(str, t)))
    batches = sorted({b for _, b, _ in samples})
    colours = dict(zip(series, _palette(len(series)), strict=True))
    width = 0.8 / len(series)
    removed = total = 0
    for s, b, lat in samples:
        total += lat.size
        if remove_outliers and lat.size >= 4:
            mask = iqr_outliers(lat)
            removed += int(mask.sum())
            lat = lat[~mask]
        pos = batches.index(b) - 0.4 + width * (series.index(s) + 0.5)
        bp = ax.boxplot([lat], positions=[pos], widths=width * 0.85, showfliers=True, patch_artist=True,
                        flierprops={"marker": ".", "markersize": 3, "markeredgecolor": colours[s]},
                        medianprops={"color": "black"})
        for patch in bp["boxes"]:
            patch.set_facecolor(colours[s])
            patch.set_alpha(0.6)
    ax.set_xticks(range(len(batches)))
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlim(-0.6, len(batches) - 0.4)
    ax.set_xlabel("batch size (items)")
    ax.set_ylabel("latency per request (ms)")
    _auto_log(ax, np.concatenate([lat for _, _, lat in samples]))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(facecolor=colours[s], alpha=0.6, label=_series_label(keys, s)) for s in series],
              title=" ".join(keys), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              title_fontsize="small", frameon=False)
    notes = []
    if remove_outliers:
        notes.append(f"outliers removed: {removed} of {total} requests beyond 1.5×IQR")
    else:
        notes.append("all requests shown; points = beyond 1.5×IQR")
    if missing:
        notes.append(f"no latency file for {len(missing)} cell(s)")
    # the notes go under the title, never over the boxes
    ax.set_title(f"Per-request latency distribution — {scen}\n{'; '.join(notes)}", fontsize="medium")
    return fig, ax


def plot_power_vs_throughput(df: pd.DataFrame, scenario: str | None = None, by_device: bool | None = None):
    """The headline: throughput (items/s) against average power (W); points labelled with batch size.

    Dotted grey lines mark constant efficiency (items/J). When no power was measured the axes say
    why instead of plotting zeros.
    """
    fig, ax = _figure()
    sel, scen = _select(df, scenario)
    ax.set_title(f"Throughput vs power — {scen}")
    rows = sel[sel["power_avg_w"].notna() & sel["throughput_items_s"].notna()]
    if rows.empty:
        _say_unavailable(ax, "power", sel if not sel.empty else df)
        return fig, ax
    if by_device is None:
        by_device = sel["device_label"].nunique() > 1
    without = sorted(set(sel["device_label"]) - set(rows["device_label"]))
    if without:  # a device left out must say why, not just vanish from the plot
        ax.set_title(f"Throughput vs power — {scen}\nnot shown, power unavailable: {', '.join(without)}",
                     fontsize="medium")
    keys = _series_keys(rows, by_device)
    style = _styles(rows, keys, "device_label" if by_device else "engine")
    for values, sub in rows.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        sub = sub.sort_values("batch_size")
        ax.plot(sub["power_avg_w"], sub["throughput_items_s"], label=_series_label(keys, values), **style(sub))
        ends = sub.iloc[[0, -1]] if len(sub) > 1 else sub  # label the ends only: inner labels pile up
        for _, r in ends.iterrows():
            ax.annotate(f"b{int(r['batch_size'])}", (r["power_avg_w"], r["throughput_items_s"]),
                        textcoords="offset points", xytext=(3, 3), fontsize=6, color="0.35")
    ylog = _auto_log(ax, rows["throughput_items_s"])
    xlog = _auto_log(ax, rows["power_avg_w"], axis="x")
    _iso_efficiency(ax, rows, xlog, ylog)
    ax.set_xlabel("average power (W)")
    ax.set_ylabel("throughput (items/s)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, title=" ".join(k.replace("_label", "") for k in keys))
    return fig, ax


def _iso_efficiency(ax, rows: pd.DataFrame, xlog: bool, ylog: bool) -> None:
    eff = (rows["throughput_items_s"] / rows["power_avg_w"]).to_numpy(dtype=float)
    eff = eff[np.isfinite(eff) & (eff > 0)]
    if not eff.size:
        return
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    lo, hi = math.floor(math.log10(eff.min())), math.ceil(math.log10(eff.max()))
    xs = np.geomspace(max(x0, 1e-9), x1, 50) if xlog else np.linspace(max(x0, 1e-9), x1, 50)
    for p in range(lo, hi + 1):
        k = 10.0 ** p
        ax.plot(xs, k * xs, color="0.6", linestyle=":", linewidth=0.8, zorder=0)
        # label near the left edge, where the data (high power) rarely is
        x_at = x0 * (x1 / x0) ** 0.02 if xlog else x0 + 0.02 * (x1 - x0)
        if y0 < k * x_at < y1:
            ax.annotate(f"{k:g} items/J", (x_at, k * x_at), fontsize=7, color="0.5", ha="left", va="bottom")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def plot_speed_vs_agreement(df: pd.DataFrame, scenario: str | None = None, min_agreement: float = 0.99):
    """Throughput against top-1 agreement with fp32 on held-out inputs: one point per engine and
    precision (its best batch size). fp32 cells are the baseline the agreement is measured against,
    drawn at 1; int8/bf16 cells at their measured agreement; the dashed line is --min-agreement."""
    fig, ax = _figure()
    sel, scen = _select(df, scenario)
    ax.set_title(f"Throughput vs top-1 agreement with fp32 — {scen}")
    reduced = sel[sel["top1_agreement_fp32"].notna() & sel["throughput_items_s"].notna()]
    if reduced.empty:
        _say_empty(ax, "no int8/bf16 cell passed its gate with a measured top-1 agreement")
        return fig, ax
    base = sel[(sel["precision"] == "fp32") & sel["throughput_items_s"].notna()]
    rows = pd.concat([base.assign(top1_agreement_fp32=1.0), reduced])
    style = _styles(rows, ["engine"], "engine")
    for (engine, precision), sub in rows.groupby(["engine", "precision"], sort=True):
        best = sub.loc[sub["throughput_items_s"].idxmax()]
        st = style(sub)
        ax.plot([best["top1_agreement_fp32"]], [best["throughput_items_s"]], linestyle="none", color=st["color"],
                marker=st["marker"], markersize=8, fillstyle="full" if precision == "fp32" else "none",
                label=f"{engine} {precision}")
        ax.annotate(f"{precision} b{int(best['batch_size'])}", (best["top1_agreement_fp32"], best["throughput_items_s"]),
                    textcoords="offset points", xytext=(4, 3), fontsize=6, color="0.35")
    ax.axvline(min_agreement, color="0.5", linestyle="--", linewidth=1)
    ax.annotate(f"min agreement {min_agreement:g}", (min_agreement, ax.get_ylim()[1]), fontsize=7, color="0.4",
                ha="right", va="top", rotation=90)
    _auto_log(ax, rows["throughput_items_s"])
    ax.set_xlabel("top-1 agreement with fp32 (held-out inputs; fp32 = 1 by definition)")
    ax.set_ylabel("best throughput over batch sizes (items/s)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, title="engine precision")
    return fig, ax


def plot_memory_utilisation(df: pd.DataFrame, scenario: str | None = None):
    """Peak memory (MB) and average utilisation (%) vs batch size. Returns (fig, [ax_mem, ax_util]).

    Device memory and GPU utilisation are shown when measured, else host RSS and CPU utilisation.
    """
    fig, axes = _figure(ncols=2, figsize=(12, 5))
    rows, scen = _select(df, scenario)
    fig.suptitle(f"Memory and utilisation vs batch size — {scen}")
    for ax, choices in ((axes[0], ("device_mem_peak_mb", "host_rss_peak_mb")),
                        (axes[1], ("gpu_util_avg_pct", "cpu_util_avg_pct"))):
        metric = next((m for m in choices if m in rows and rows[m].notna().any()), None)
        if metric is None:
            _say_empty(ax, f"not measured: {', '.join(metric_label(m) for m in choices)}")
            continue
        sub_rows = rows[rows[metric].notna()]
        keys = _series_keys(sub_rows, by_device=False)
        style = _styles(sub_rows, keys, "engine")
        for values, sub in sub_rows.groupby(keys, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            sub = sub.sort_values("batch_size")
            ax.plot(sub["batch_size"], sub[metric], label=_series_label(keys, values), **style(sub))
        _batch_axis(ax, sub_rows["batch_size"])
        if metric.endswith("_pct"):
            ax.set_ylim(0, max(100.0, float(sub_rows[metric].max()) * 1.05))  # CPU % can exceed 100 (several cores)
        elif not _auto_log(ax, sub_rows[metric]):
            ax.set_ylim(bottom=0)  # memory from zero: small differences must not look large
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.set_ylabel(metric_label(metric))
        ax.grid(True, which="both", alpha=0.3)
    _legend(axes[1], title="engine precision")
    return fig, axes


def plot_power_trace(df: pd.DataFrame, cell_id: str, device_label: str | None = None):
    """Power (W) and utilisation (%) over time for one cell, from power/<cell_id>.csv."""
    fig, ax = _figure()
    rows = df[df["cell_id"] == cell_id]
    if device_label is not None:
        rows = rows[rows["device_label"] == device_label]
    if rows.empty:
        raise KeyError(f"no cell {cell_id!r}" + (f" on {device_label!r}" if device_label else ""))
    row = rows.iloc[-1]
    ax.set_title(f"Telemetry trace — {row['device_label']} / {row['engine']} {row['precision']} "
                 f"batch {int(row['batch_size'])} ({row['scenario']})")
    try:
        trace = load_power_trace(row["results_dir"], cell_id)
    except FileNotFoundError as e:
        _say_empty(ax, str(e))
        return fig, ax
    t = trace["time_s"] - trace["time_s"].min()
    ax.set_xlabel("time since first sample (s)")
    ax.grid(True, alpha=0.3)
    util_cols = [c for c in ("gpu_util_pct", "cpu_util_pct", "proc_cpu_pct") if c in trace and trace[c].notna().any()]
    has_power = "power_w" in trace and trace["power_w"].notna().any()
    util_ax = ax
    if has_power:
        ax.plot(t, trace["power_w"], color="tab:red", label="power (W)")
        ax.set_ylabel("power (W)")
        ax.set_ylim(bottom=0)
        if util_cols:
            util_ax = ax.twinx()
    else:
        reason = row["energy_source"] if isinstance(row["energy_source"], str) else "unavailable: not measured"
        why = reason.split(":", 1)[1].strip() if reason.startswith("unavailable") else reason
        # said in the title, so it never sits on top of a curve
        ax.set_title(f"{ax.get_title()}\n" + textwrap.fill(f"power unavailable: {why}", 100), fontsize="medium")
    for c, colour in zip(util_cols, ("tab:blue", "tab:green", "tab:purple"), strict=False):
        util_ax.plot(t, trace[c], color=colour, linestyle="--", label=UTIL_LABELS[c])
    if util_cols:
        util_ax.set_ylabel("utilisation (%)")
        util_ax.set_ylim(0, max(100.0, float(trace[util_cols].max().max()) * 1.05))  # CPU % may exceed 100
    if not has_power and not util_cols:
        _say_empty(ax, "the trace holds neither power nor utilisation samples")
        return fig, ax
    handles, labels = [], []
    for a in {id(ax): ax, id(util_ax): util_ax}.values():
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.08 if util_ax is not ax else 1.01, 1.0),
              fontsize="small", frameon=False)
    return fig, ax


# ---- several devices -----------------------------------------------------------------------------

def plot_devices(df: pd.DataFrame, metric: str = "throughput_items_s", scenario: str | None = None):
    """A metric vs batch size across devices: one colour per device, marker per engine, style per precision."""
    name = METRICS.get(metric, (metric,))[0]
    return _metric_vs_batch(df, metric, scenario, f"{name.capitalize()} across devices", by_device=True,
                            what_unavailable="energy" if metric in ("items_per_j", "energy_per_item_j") else None)


def normalise_to_baseline(df: pd.DataFrame, baseline: str, metric: str = "throughput_items_s",
                          scenario: str | None = None) -> pd.DataFrame:
    """Rows of the other devices with `ratio` = metric / the baseline device's metric in the same cell."""
    rows, _ = _select(df, scenario)
    if baseline not in set(df["device_label"]):
        raise KeyError(f"baseline device {baseline!r} not in results (have: {', '.join(sorted(set(df['device_label'])))})")
    cell = [k for k in ("model", "engine", "precision", "scenario", "batch_size", "streams") if k in rows]
    rows = rows[rows[metric].notna()]
    base = rows[rows["device_label"] == baseline][cell + [metric]].drop_duplicates(cell, keep="last")
    merged = rows.merge(base, on=cell, suffixes=("", "_baseline"))
    merged["ratio"] = merged[metric] / merged[f"{metric}_baseline"]
    return merged


def plot_devices_normalised(df: pd.DataFrame, baseline: str, metric: str = "throughput_items_s",
                            scenario: str | None = None):
    """Each device's metric divided by the baseline device's, cell by cell (baseline = 1)."""
    fig, ax = _figure()
    name = METRICS.get(metric, (metric,))[0]
    scen = pick_scenario(ok_rows(df), scenario) or "no scenario"
    ax.set_title(f"{name.capitalize()} relative to {baseline} — {scen}")
    merged = normalise_to_baseline(df, baseline, metric, scenario)
    if merged.empty:
        _say_empty(ax, f"no cells shared with the baseline {baseline} that have {metric_label(metric)}")
        return fig, ax
    keys = _series_keys(merged, by_device=True)
    style = _styles(merged, keys, "device_label")
    for values, sub in merged.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        sub = sub.sort_values("batch_size")
        ax.plot(sub["batch_size"], sub["ratio"], label=_series_label(keys, values), **style(sub))
    ax.axhline(1.0, color="0.3", linewidth=1)
    _batch_axis(ax, merged["batch_size"])
    if not _auto_log(ax, merged["ratio"]):
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_ylabel(f"{name} / {baseline} (ratio, 1 = baseline)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, title=" ".join(k.replace("_label", "") for k in keys))
    return fig, ax

"""What a tune leaves in its results folder, beside results.csv and tune.db:

- tune_points.csv: every measured trial, with its feasibility and whether it is on the front;
- front.csv: the front's members (ties within CI included), the knee and the picked point marked;
- front_p99.png, front_energy.png: throughput against p99 and against J/item, the front drawn, dominated
  points faded, infeasible ones crossed, the knee marked;
- hypervolume.png: the front's hypervolume against seconds spent (flat at the end: the search converged);
- front.html: the same fronts, interactive (plotly, its JavaScript inline: no network), a trial's whole
  configuration on hover;
- best.yaml: the picked point as an `infermeter run --config` file (the CI stop included);
- tune.json: the search in numbers (space, budget, notes, hypervolume history).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from infermeter.config import RunConfig
from infermeter.results.writer import atomic_write_json, atomic_write_text
from infermeter.tune.front import Point, has_interval, hypervolume, reference_point, strictly_non_dominated

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#7f7f7f"
INFEASIBLE_COLOR = "#1f77b4"
#: point keys shown as configuration, in this order (the rest follow)
CONFIG_ORDER = ("engine", "precision", "batch_size", "streams", "num_threads")
GPU_KNOBS = ("power_limit_w", "locked_clocks_mhz")
#: run settings never copied into best.yaml: where results go and how the run is displayed
NOT_IN_BEST = ("command", "results_dir", "resume", "quiet", "json_path")
ALWAYS_IN_BEST = ("model", "engines", "precisions", "batch_sizes", "scenarios", "device")


def config_text(config: dict) -> str:
    keys = [k for k in CONFIG_ORDER if k in config] + sorted(k for k in config if k not in CONFIG_ORDER)
    return ", ".join(f"{k}={config[k]}" for k in keys)


def points_frame(outcome) -> pd.DataFrame:
    """One row per measured trial: configuration, objective values, CI, feasibility and front flags."""
    members = {p.trial for p in outcome.front}
    feas = [p for p in outcome.points if p.feasible]
    strict = set()
    if feas:
        from infermeter.tune.front import minimised

        mask = strictly_non_dominated(minimised(feas, outcome.objectives))
        strict = {p.trial for p, m in zip(feas, mask, strict=True) if m}
    knee = outcome.knee.trial if outcome.knee else None
    records = []
    for p in outcome.points:
        rec = {"trial": p.trial, "stage": p.stage}
        rec.update({k: p.config.get(k) for k in [*CONFIG_ORDER, *sorted(set(p.config) - set(CONFIG_ORDER))]})
        for o, v in zip(outcome.objectives, p.values, strict=True):
            rec[o.column] = v
        rec.update({"ci95_rel": p.ci_rel, "ci95_text": ci_text(p), "sessions": int(p.row.get("confirm_sessions") or 1),
                    "ci95_rel_between_sessions": p.row.get("ci95_rel_between_sessions"),
                    "feasible": p.feasible, "why_infeasible": p.why_infeasible,
                    "on_front": p.trial in members, "strict_pareto": p.trial in strict,
                    "knee": p.trial == knee, "picked": outcome.picked is not None and p.trial == outcome.picked.trial,
                    "config": config_text(p.config), "cell_id": p.row.get("cell_id"), "status": p.row.get("status"),
                    "build_s": p.row.get("build_s"), "load_s": p.row.get("load_s"), "compile_s": p.row.get("compile_s")})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def ci_text(p) -> str:
    """A point's interval as people read it. A window too short for an interval (a slow point screened
    briefly: ci95_rel inf in its row) has none; the tie rule compares it by its values alone (ci_rel 0)."""
    if p.stage == "screen" and not has_interval(p.row):
        return f"none ({p.row.get('iterations') or '?'} requests in the window)"
    return f"±{100 * p.ci_rel:.1f}%"


# ---- plots (matplotlib, each returns (fig, ax)) -----------------------------------------------------------
def _wide(values: pd.Series) -> bool:
    """Log scale where the positive values span more than the plots' LOG_SPAN."""
    from infermeter.analysis.plots import LOG_SPAN

    v = pd.to_numeric(values, errors="coerce")
    v = v[v > 0]
    return bool(len(v)) and v.max() / v.min() > LOG_SPAN


def plot_front(df: pd.DataFrame, x: str, y: str = "throughput_items_s", *, xlabel: str, ylabel: str, title: str = ""):
    """y against x: the front (with its CI bars) drawn and joined, dominated points faded, infeasible crossed,
    the knee starred."""
    from infermeter.analysis.plots import _figure

    fig, ax = _figure()
    dom = df[df["feasible"] & ~df["on_front"]]
    bad = df[~df["feasible"] & df[x].notna() & df[y].notna()]
    front = df[df["on_front"]].sort_values(x)
    ax.scatter(dom[x], dom[y], color=DOMINATED_COLOR, alpha=0.3, s=28,
               label=f"off the front: beaten beyond the CIs ({len(dom)})")
    if len(bad):
        ax.scatter(bad[x], bad[y], color=INFEASIBLE_COLOR, alpha=0.35, marker="x", s=28,
                   label=f"infeasible ({len(bad)}: failed check or constraint)")
    ax.errorbar(front[x], front[y], xerr=front[x] * front["ci95_rel"], yerr=front[y] * front["ci95_rel"],
                fmt="o", color=FRONT_COLOR, ms=7, capsize=3, label=f"front ({len(front)})")
    ax.plot(front[x], front[y], color=FRONT_COLOR, alpha=0.5, drawstyle="steps-post")
    knee = df[df["knee"]]
    if len(knee):
        ax.scatter(knee[x], knee[y], marker="*", s=420, facecolor="none", edgecolor="black", linewidths=1.5,
                   label=f"knee (trial {int(knee['trial'].iloc[0])})", zorder=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if _wide(df[x]):
        ax.set_xscale("log")
    if _wide(df[y]):
        ax.set_yscale("log")
    ax.set_title(title or f"{ylabel} against {xlabel}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig, ax


def plot_unavailable(title: str, why: str):
    from infermeter.analysis.plots import _figure

    fig, ax = _figure()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig, ax


def hypervolume_frame(outcome, ref=None) -> pd.DataFrame:
    ref = ref if ref is not None else reference_point(outcome.points, outcome.objectives)
    return pd.DataFrame.from_records([{"spent_s": t, "trials": len(pts),
                                       "hypervolume": hypervolume(pts, outcome.objectives, ref)}
                                      for t, pts in outcome.history])


def plot_hypervolume(hv: pd.DataFrame, budget_s: float | None = None):
    from infermeter.analysis.plots import _figure

    fig, ax = _figure()
    ax.plot(hv["spent_s"], hv["hypervolume"], marker="o", drawstyle="steps-post", color=FRONT_COLOR)
    if budget_s:
        ax.axvline(budget_s, color="black", linestyle="--", alpha=0.5, label=f"budget {budget_s:g} s")
        ax.legend(loc="lower right")
    ax.set_xlabel("seconds spent")
    ax.set_ylabel("hypervolume (fraction of the reference box)")
    ax.set_title("hypervolume of the screened front against the budget (flat: converged)")
    ax.grid(True, alpha=0.3)
    return fig, ax


# ---- the interactive page ---------------------------------------------------------------------------------
def front_html(df: pd.DataFrame, objectives, title: str) -> str:
    """A self-contained page: plotly's JavaScript inline, hover text with each trial's whole configuration."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = {o.name: o for o in objectives}
    panels = [(cols[n].column, cols[n].label) for n in ("p99", "energy") if n in cols]
    if "throughput" not in cols or not panels:  # no throughput axis: each cost against the first one
        panels = [(o.column, o.label) for o in objectives[1:]] or [(objectives[0].column, objectives[0].label)]
        ycol, ylabel = objectives[0].column, objectives[0].label
    else:
        ycol, ylabel = cols["throughput"].column, cols["throughput"].label
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"{ylabel} against {lab}" for _, lab in panels])

    def hover(sub: pd.DataFrame) -> list[str]:
        out = []
        for _, r in sub.iterrows():
            vals = "<br>".join(f"{o.label}: {r[o.column]:.4g}" for o in objectives if pd.notna(r.get(o.column)))
            flag = " (knee)" if r["knee"] else ""
            why = f"<br>infeasible: {r['why_infeasible']}" if not r["feasible"] else ""
            out.append(f"trial {r['trial']}{flag}, {r['stage']}<br>{r['config'].replace(', ', '<br>')}<br>{vals}"
                       f"<br>CI95 {r['ci95_text']}{why}")
        return out

    groups = (("front", df[df["on_front"]], dict(color=FRONT_COLOR, size=12), 1.0),
              ("off the front", df[df["feasible"] & ~df["on_front"]], dict(color=DOMINATED_COLOR, size=9), 0.35),
              ("infeasible", df[~df["feasible"]], dict(color=INFEASIBLE_COLOR, size=9, symbol="x"), 0.35))
    for i, (xcol, xlabel) in enumerate(panels, start=1):
        for name, sub, marker, opacity in groups:
            sub = sub[sub[xcol].notna() & sub[ycol].notna()]
            fig.add_trace(go.Scatter(x=sub[xcol], y=sub[ycol], mode="markers", name=name, marker=marker,
                                     opacity=opacity, text=hover(sub), hoverinfo="text", legendgroup=name,
                                     showlegend=i == 1), row=1, col=i)
        knee = df[df["knee"]]
        fig.add_trace(go.Scatter(x=knee[xcol], y=knee[ycol], mode="markers", name="knee",
                                 marker=dict(symbol="star-open", size=22, color="black"), hoverinfo="skip",
                                 legendgroup="knee", showlegend=i == 1), row=1, col=i)
        fig.update_xaxes(title_text=xlabel, type="log" if _wide(df[xcol]) else "linear", row=1, col=i)
        fig.update_yaxes(title_text=ylabel, type="log" if _wide(df[ycol]) else "linear", row=1, col=i)
    fig.update_layout(title=title, template="plotly_white", height=560)
    return fig.to_html(include_plotlyjs=True, full_html=True)


# ---- best.yaml --------------------------------------------------------------------------------------------
def best_config(cfg: RunConfig, point: Point, device_kind: str, target_ci: float) -> dict:
    """The point as run settings: RunConfig field names, only those that differ from a default run (and
    the point's own), measured with the CI stop as the front's members were."""
    from infermeter.tune.trials import trial_config

    ci = cfg.target_ci or target_ci
    data = trial_config(cfg, point.config, "confirm", screen_s=1.0, target_ci=ci, max_time_s=cfg.max_time_s).to_dict()
    data["device"] = device_kind
    defaults = RunConfig().to_dict()
    return {k: v for k, v in data.items()
            if k not in NOT_IN_BEST and (k in ALWAYS_IN_BEST or k in point.config or v != defaults.get(k))}


def best_yaml(cfg: RunConfig, point: Point, outcome, how: str, target_ci: float, gpu_index: int | None) -> str:
    import yaml

    lines = [f"# infermeter tune: the {how} point of the front in {outcome.out_dir.parent.name}/{outcome.out_dir.name}",
             f"# trial {point.trial} ({point.stage}): " + ", ".join(
                 f"{o.label} {v:.4g}" for o, v in zip(outcome.objectives, point.values, strict=True)),
             "# reproduce it with: infermeter run --config best.yaml"]
    gpu = {k: point.config[k] for k in GPU_KNOBS if point.config.get(k) is not None}
    if gpu:  # device settings, not run settings: the user sets them (as root) before the run
        i = 0 if gpu_index is None else gpu_index
        if "power_limit_w" in gpu:
            lines.append(f"# GPU power limit of this point: nvidia-smi -i {i} -pl {gpu['power_limit_w']:g}")
        if "locked_clocks_mhz" in gpu:
            c = gpu["locked_clocks_mhz"]
            lines.append(f"# GPU clocks of this point: nvidia-smi -i {i} -lgc {c},{c}")
    data = best_config(cfg, point, outcome.device_kind, target_ci)
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False)


# ---- all of it --------------------------------------------------------------------------------------------
def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def write_outputs(outcome, cfg: RunConfig, opts) -> dict[str, Path]:
    out = Path(outcome.out_dir)
    df = points_frame(outcome)
    paths: dict[str, Path] = {}
    atomic_write_text(out / "tune_points.csv", df.to_csv(index=False))
    paths["front.csv"] = out / "front.csv"
    atomic_write_text(paths["front.csv"], df[df["on_front"]].to_csv(index=False) if len(df) else "")
    names = [o.name for o in outcome.objectives]
    thr = "throughput" in names
    for name, fname, col, label in (("p99", "front_p99.png", "latency_ms_p99", "p99 latency (ms)"),
                                    ("energy", "front_energy.png", "energy_per_item_j", "energy per item (J/item)")):
        if thr and name in names and len(df):
            fig, _ = plot_front(df, col, xlabel=label, ylabel="throughput (items/s)")
        else:
            why = next((n for n in outcome.notes if n.startswith("energy left out")), f"{name} is not an objective")
            fig, _ = plot_unavailable(f"throughput against {label}", why if name == "energy" else
                                      f"{name} or throughput is not among --objectives")
        _save(fig, out / fname)
        paths[fname] = out / fname
    ref = reference_point(outcome.points, outcome.objectives)
    hv = hypervolume_frame(outcome, ref)
    fig, _ = plot_hypervolume(hv, outcome.budget_s) if len(hv) else plot_unavailable("hypervolume", "no trial measured")
    _save(fig, out / "hypervolume.png")
    paths["hypervolume.png"] = out / "hypervolume.png"
    if len(df):
        title = f"infermeter tune: {cfg.model} on {outcome.device_name} ({cfg.scenarios[0]})"
        atomic_write_text(out / "front.html", front_html(df, outcome.objectives, title))
        paths["front.html"] = out / "front.html"
    if outcome.picked is not None:
        atomic_write_text(out / "best.yaml", best_yaml(cfg, outcome.picked, outcome, opts.pick, opts.confirm_ci,
                                                       outcome.gpu_index))
        paths["best.yaml"] = out / "best.yaml"
    summary = {
        "objectives": [{"name": o.name, "column": o.column, "direction": o.direction} for o in outcome.objectives],
        "constraints": {k: v for k, v in vars(opts.constraints).items() if v is not None},
        "scenario": cfg.scenarios[0], "target_qps": outcome.space.target_qps,
        "budget_s": outcome.budget_s, "spent_s": outcome.spent_s, "longest_session_s": outcome.longest_session_s,
        "screen_time_s": opts.screen_time_s, "screen_share": opts.screen_share,
        "confirm_ci": cfg.target_ci or opts.confirm_ci, "confirm_sessions": opts.confirm_sessions,
        "session_ci": opts.session_ci, "max_confirm_sessions": opts.max_confirm_sessions,
        "space": {"size": outcome.space.size(), "batch_sizes": list(outcome.space.batch_sizes),
                  "streams": list(outcome.space.streams),
                  "engines": {e.engine: {"precisions": list(e.precisions), "knobs": {k: list(v) for k, v in e.knobs.items()}}
                              for e in outcome.space.engines.values()},
                  "device_knobs": {k: list(v) for k, v in outcome.space.device_knobs.items()},
                  "left_out": outcome.space.left_out},
        "trials_measured": len(outcome.points), "feasible": int(sum(p.feasible for p in outcome.points)),
        "front_trials": [p.trial for p in outcome.front],
        "knee_trial": outcome.knee.trial if outcome.knee else None,
        "pick": opts.pick, "picked_trial": outcome.picked.trial if outcome.picked else None,
        "hypervolume": {"reference_point": ref.point.tolist(), "scale": ref.scale.tolist(),
                        "history": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                                    for r in hv.to_dict("records")]},
        "notes": outcome.notes,
    }
    atomic_write_json(out / "tune.json", json.loads(json.dumps(summary, default=_plain)))
    paths["tune.json"] = out / "tune.json"
    return paths


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def print_front(outcome, paths: dict[str, Path]) -> None:
    """The front on stdout: one line per member, the knee and the pick marked, then where the files are."""
    print(f"tune: {len(outcome.points)} trial(s) measured in {outcome.spent_s:.0f} s of a {outcome.budget_s:g} s budget; "
          f"{sum(p.feasible for p in outcome.points)} feasible; front of {len(outcome.front)}")
    for p in sorted(outcome.front, key=lambda p: -p.values[0]):
        marks = (" knee" if outcome.knee is p else "") + (" picked" if outcome.picked is p else "")
        vals = ", ".join(f"{o.name} {v:.4g}" for o, v in zip(outcome.objectives, p.values, strict=True))
        print(f"  trial {p.trial:>3} [{p.stage}]{marks}: {config_text(p.config)} -> {vals} (CI95 {ci_text(p)})")
    for name, path in paths.items():
        print(f"  {name}: {path}")


# ---- the report's tune pages ------------------------------------------------------------------------------
def report_parts(folder) -> dict | None:
    """What `infermeter report` shows of a tune in this results folder (None when it holds none): the
    front's table and its plots, rebuilt from tune_points.csv and tune.json."""
    folder = Path(folder)
    if not (folder / "tune_points.csv").is_file() or not (folder / "tune.json").is_file():
        return None
    from infermeter.tune.objectives import OBJECTIVES

    df = pd.read_csv(folder / "tune_points.csv")
    summary = json.loads((folder / "tune.json").read_text())
    objectives = [OBJECTIVES[o["name"]] for o in summary["objectives"]]
    front = df[df["on_front"]].sort_values(objectives[0].column, ascending=objectives[0].direction != "maximize")
    cols = ["trial", "stage", "configuration", *[o.label for o in objectives], "CI95", "mark"]
    body = [[str(r["trial"]), str(r["stage"]), str(r["config"]),
             *[f"{r[o.column]:.4g}" for o in objectives],
             str(r["ci95_text"]) if "ci95_text" in r else f"±{100 * (r['ci95_rel'] or 0):.1f}%",
             " ".join(m for m, f in (("knee", r["knee"]), ("picked", r["picked"])) if f)]
            for _, r in front.iterrows()]
    figs = []
    names = [o.name for o in objectives]
    # the results folder too: two tunes of one model on one device (say, a search and its resumed copy) apart
    where = (folder.parent.parent.name, folder.parent.name, folder.name)
    tag = "__".join("".join(c if c.isalnum() else "-" for c in part) for part in where)
    if "throughput" in names:
        for name, col, label in (("p99", "latency_ms_p99", "p99 latency (ms)"),
                                 ("energy", "energy_per_item_j", "energy per item (J/item)")):
            if name in names:
                figs.append((f"tune_front_{name}__{tag}", plot_front(df, col, xlabel=label, ylabel="throughput (items/s)")[0]))
    hv = pd.DataFrame(summary["hypervolume"]["history"])
    if len(hv):
        figs.append((f"tune_hypervolume__{tag}", plot_hypervolume(hv, summary["budget_s"])[0]))
    note = (f"{summary['trials_measured']} trials, {summary['feasible']} feasible, in {summary['spent_s']:.0f} s of a "
            f"{summary['budget_s']:g} s budget; ties within CI kept on the front; " + "; ".join(summary["notes"]))
    return {"title": f"Tune front — {'/'.join(where)}", "columns": cols, "body": body,
            "note": note[:300], "figs": figs}

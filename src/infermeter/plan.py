"""Expand a RunConfig into the grid of cells, grouped by (input shape, engine, precision)."""

from __future__ import annotations

from dataclasses import dataclass, field

from infermeter.config import NOT_AUTO, RunConfig
from infermeter.errors import BadInput
from infermeter.parsing import safe_name
from infermeter.scenarios.registry import SCENARIOS


@dataclass(frozen=True)
class Cell:
    """One measurement of the grid: a scenario at one batch size, stream count and (server) arrival rate,
    for one group's engine, precision and input shape (named in cell_id)."""

    cell_id: str
    scenario: str
    batch_size: int
    streams: int = 1
    target_qps: float | None = None


@dataclass
class Group:
    model: object  # models.base.Model for one input-shape experiment
    engine: str
    precision: str
    cells: list[Cell] = field(default_factory=list)
    skip_reason: str | None = None  # set: every cell becomes a 'skipped' row


def engine_key(engine: str, precision: str, shape_tag: str) -> str:
    """How run.json names one (engine, precision, input shape) group's session facts."""
    return f"{engine}/{precision}/{shape_tag}"


def cell_id(engine: str, precision: str, scenario: str, batch: int, streams: int, qps: float | None,
            shape_tag: str) -> str:
    parts = [engine, precision, scenario, f"b{batch}"]
    if SCENARIOS[scenario].takes_streams:
        parts.append(f"s{streams}")
    if qps is not None:
        parts.append(f"q{qps:g}")
    parts.append(shape_tag)
    return safe_name("_".join(parts))


def scenario_cells(cfg: RunConfig, engine: str, precision: str, shape_tag: str) -> list[Cell]:
    cells = []
    for scenario in cfg.scenarios:
        spec = SCENARIOS[scenario]
        streams_list = cfg.streams if spec.takes_streams else [1]
        qps_list = cfg.target_qps if spec.takes_qps else [None]
        for bs in cfg.batch_sizes_for(scenario):
            for streams in streams_list:
                for qps in qps_list:
                    cells.append(Cell(cell_id(engine, precision, scenario, bs, streams, qps, shape_tag),
                                      scenario, bs, streams, qps))
    return cells


def resolve_engine_names(cfg: RunConfig, registered: dict) -> list[str]:
    if cfg.engines == ["all"]:
        return list(registered)
    for e in cfg.engines:
        if e not in registered:
            raise BadInput(f"--engines: unknown engine {e!r}; choose from {', '.join(registered)} or all")
    return list(cfg.engines)


def plan(cfg: RunConfig, models: list, device_kind: str) -> list[Group]:
    from infermeter.engines import load_all

    registered = load_all()
    names = resolve_engine_names(cfg, registered)
    groups: list[Group] = []
    for model in models:
        tag = model.shape_tag()
        for name in names:
            cls = registered[name]
            ok, why = cls.available()
            declared = cls.precisions.get(device_kind, ())
            auto = [p for p in declared if p not in NOT_AUTO]
            precisions = auto if cfg.precisions == ["auto"] else list(cfg.precisions)
            if not precisions:  # engine has nothing for this device: one skipped group says why
                precisions = ["fp32"]
            for p in precisions:
                g = Group(model, name, p, scenario_cells(cfg, name, p, tag))
                fits = [(c, *model.supports_batch(c.batch_size)) for c in g.cells]
                unfit = [(c, why_not) for c, fit, why_not in fits if not fit]
                if not ok:
                    g.skip_reason = why
                else:
                    sup, why2 = cls.supports(model, p, device_kind)
                    if not sup:
                        g.skip_reason = why2
                groups.append(g)
                if unfit and not g.skip_reason:  # a graph with a fixed batch size takes no other batch
                    g.cells = [c for c, fit, _ in fits if fit]
                    groups += [Group(model, name, p, [c], why_not) for c, why_not in unfit]
    return groups

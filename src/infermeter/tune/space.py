"""The search space of `infermeter tune`, built per engine from what each engine declares.

A point is a plain dict of RunConfig field values (engine, precision, batch size, streams, threads and
each engine's own `tunables`), so every point is a runnable `infermeter run` configuration and best.yaml
is that dict. GPU knobs (power limit, locked clocks) are added by the tuner where NVML lets it set them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from infermeter.config import NOT_AUTO, RunConfig

#: batch sizes tried when --batch-sizes is not given (offline), and for the server scenario
OFFLINE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
SERVER_BATCHES = (1, 2, 4, 8)
#: scenarios the tuner searches: maximum throughput, or a Poisson arrival rate (--target-qps)
TUNE_SCENARIOS = ("offline", "server")


def thread_counts(cores: int | None = None) -> tuple[int, ...]:
    """Intra-op thread counts worth trying on a CPU: powers of two below the core count, and the count."""
    cores = cores or os.cpu_count() or 1
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return (*counts, cores)


@dataclass(frozen=True)
class EngineSpace:
    """What one engine offers here: its precisions (those it can run on this model and device) and its knobs."""

    engine: str
    precisions: tuple[str, ...]
    knobs: dict[str, tuple] = field(default_factory=dict)


@dataclass
class SearchSpace:
    scenario: str
    engines: dict[str, EngineSpace]
    batch_sizes: tuple[int, ...]
    streams: tuple[int, ...] = (1,)
    target_qps: float | None = None
    #: why an engine asked for is not searched (unavailable, no precision on this device)
    left_out: dict[str, str] = field(default_factory=dict)
    #: device-wide knobs (GPU power limit, locked clocks): name -> values, set by the tuner around a trial
    device_knobs: dict[str, tuple] = field(default_factory=dict)

    def size(self) -> int:
        """How many distinct points there are (the search stops early when it has measured them all)."""
        per_engine = sum(len(e.precisions) * _product(len(v) for v in e.knobs.values()) for e in self.engines.values())
        shared = len(self.batch_sizes) * len(self.streams) * _product(len(v) for v in self.device_knobs.values())
        return per_engine * shared

    def suggest(self, trial) -> dict:
        """One point from an Optuna trial. Parameter names carry the engine where a choice belongs to it,
        so the samplers learn each engine's knobs apart (conditional search space)."""
        engine = trial.suggest_categorical("engine", list(self.engines))
        es = self.engines[engine]
        point = {"engine": engine, "precision": trial.suggest_categorical(f"{engine}.precision", list(es.precisions)),
                 "batch_size": trial.suggest_categorical("batch_size", list(self.batch_sizes))}
        if len(self.streams) > 1 or self.scenario == "server":
            point["streams"] = trial.suggest_categorical("streams", list(self.streams))
        for knob, values in es.knobs.items():
            name = knob if knob == "num_threads" else f"{engine}.{knob}"
            point[knob] = trial.suggest_categorical(name, list(values))
        for knob, values in self.device_knobs.items():
            point[knob] = trial.suggest_categorical(knob, list(values))
        return point

    def params(self, point: dict) -> dict:
        """The Optuna parameters `suggest` draws for this point (to propose a chosen point: enqueue_trial)."""
        engine = point["engine"]
        out = {"engine": engine, f"{engine}.precision": point["precision"], "batch_size": point["batch_size"]}
        if "streams" in point:
            out["streams"] = point["streams"]
        for knob in self.engines[engine].knobs:
            out[knob if knob == "num_threads" else f"{engine}.{knob}"] = point[knob]
        out.update({k: point[k] for k in self.device_knobs})
        return out

    def point_of(self, params: dict) -> dict | None:
        """The point a trial's parameters stand for (the inverse of `params`); None when they are incomplete
        (a process killed while the trial was being proposed)."""
        engine = params.get("engine")
        if engine not in self.engines:
            return None
        names = {"precision": f"{engine}.precision", "batch_size": "batch_size"}
        if len(self.streams) > 1 or self.scenario == "server":
            names["streams"] = "streams"
        names.update({k: k if k == "num_threads" else f"{engine}.{k}" for k in self.engines[engine].knobs})
        names.update({k: k for k in self.device_knobs})
        if any(n not in params for n in names.values()):
            return None
        return {"engine": engine, **{k: params[n] for k, n in names.items()}}

    def starting_points(self) -> list[dict]:
        """Where the search starts: each engine as it runs by default (its first precision, every core, the
        first value it declares for each knob, the GPU at full power and unlocked clocks) at the smallest batch
        size (the latency end of the front, and the cheapest window: an engine's first session also tells
        the tuner what its trials cost), then at the largest (the throughput end)."""
        batches = sorted({max(self.batch_sizes), min(self.batch_sizes)})
        out = []
        for b in batches:
            for es in self.engines.values():
                point = {"engine": es.engine, "precision": es.precisions[0], "batch_size": b}
                if len(self.streams) > 1 or self.scenario == "server":
                    point["streams"] = self.streams[0]
                point.update({k: max(v) if k == "num_threads" else v[0] for k, v in es.knobs.items()})
                point.update({k: max(x for x in v if x is not None) if k == "power_limit_w" else v[0]
                              for k, v in self.device_knobs.items()})
                out.append(point)
        return out

    def points(self) -> list[dict]:
        """Every point (the exhaustive grid; benchmarks/tune_quality.py measures it)."""
        import itertools

        out = []
        for es in self.engines.values():
            names = list(es.knobs) + list(self.device_knobs)
            choices = [es.knobs[n] for n in es.knobs] + [self.device_knobs[n] for n in self.device_knobs]
            for p, b, s, *vals in itertools.product(es.precisions, self.batch_sizes, self.streams, *choices):
                point = {"engine": es.engine, "precision": p, "batch_size": b}
                if len(self.streams) > 1 or self.scenario == "server":
                    point["streams"] = s
                point.update(zip(names, vals, strict=True))
                out.append(point)
        return out


def _product(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def point_key(point: dict) -> tuple:
    """A point's identity: two trials with the same key measure the same configuration."""
    return tuple(sorted((k, v) for k, v in point.items()))


def build_space(cfg: RunConfig, model, device_kind: str, cores: int | None = None) -> SearchSpace:
    """The space for this model on this device. cfg's lists narrow it: --engines, --precisions (auto:
    every precision the engine runs here except bf16/int8, which are searched when named), --batch-sizes,
    --streams (server), --num-threads (one count instead of the thread search)."""
    from infermeter.engines import load_all
    from infermeter.plan import resolve_engine_names

    scenario = cfg.scenarios[0]
    registered = load_all()
    engines: dict[str, EngineSpace] = {}
    left_out: dict[str, str] = {}
    for name in resolve_engine_names(cfg, registered):
        cls = registered[name]
        ok, why = cls.available()
        if not ok:
            left_out[name] = why
            continue
        declared = cls.precisions.get(device_kind, ())
        wanted = [p for p in declared if p not in NOT_AUTO] if cfg.precisions == ["auto"] else list(cfg.precisions)
        precisions, reasons = [], []
        for p in wanted:
            sup, why = cls.supports(model, p, device_kind)
            if sup:
                precisions.append(p)
            else:
                reasons.append(why)
        if not precisions:
            left_out[name] = "; ".join(reasons) or f"{name} runs no precision on {device_kind}"
            continue
        knobs: dict[str, tuple] = {}
        if device_kind == "cpu":  # every engine sizes its intra-op pool from --num-threads (EngineContext.threads)
            knobs["num_threads"] = (cfg.num_threads,) if cfg.num_threads else thread_counts(cores)
        for knob, per_device in cls.tunables.items():
            values = tuple(per_device.get(device_kind, ()))
            if values:
                given = getattr(cfg, knob, None)  # a value given on the command line pins the knob
                knobs[knob] = (given,) if given is not None else values
        engines[name] = EngineSpace(name, tuple(precisions), knobs)
    default_batches = SERVER_BATCHES if scenario == "server" else OFFLINE_BATCHES
    batches = tuple(b for b in (cfg.batch_sizes or default_batches) if model.supports_batch(b)[0])
    if not batches:
        batches = (model.max_batch(),)
    streams = tuple(cfg.streams) if scenario == "server" and cfg.streams != [1] else (
        thread_counts(cores) if scenario == "server" else (1,))
    qps = cfg.target_qps[0] if scenario == "server" else None
    return SearchSpace(scenario, engines, batches, streams, qps, left_out)

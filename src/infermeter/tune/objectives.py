"""What the tuner optimises and what it must respect, read from ordinary result rows."""

from __future__ import annotations

from dataclasses import dataclass

from infermeter.errors import BadInput


@dataclass(frozen=True)
class Objective:
    name: str  # as --objectives spells it
    column: str  # the results.csv column it reads
    direction: str  # "maximize" or "minimize"
    label: str  # axis label, with the unit

    def sign(self) -> float:
        """+1 where smaller is better: values times sign() are minimised."""
        return -1.0 if self.direction == "maximize" else 1.0


#: which front member best.yaml holds (--pick): the knee, or the best of one objective
PICKS = ("knee", "max-throughput", "min-p99", "min-energy")

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("throughput", "throughput_items_s", "maximize", "throughput (items/s)"),
    Objective("p99", "latency_ms_p99", "minimize", "p99 latency (ms)"),
    Objective("energy", "energy_per_item_j", "minimize", "energy per item (J/item)"),
)}


def parse_objectives(text: str | list[str]) -> list[Objective]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise BadInput(f"--objectives: unknown {', '.join(unknown) or '(none given)'}; choose from "
                       f"{', '.join(OBJECTIVES)} (comma list)")
    if len(set(names)) != len(names):
        raise BadInput(f"--objectives: {text} names an objective twice")
    return [OBJECTIVES[n] for n in names]


def number(row: dict, column: str) -> float | None:
    """A row's value as a float (rows read back from results.csv hold text); None where empty."""
    v = row.get(column)
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def objective_values(row: dict, objectives: list[Objective]) -> list[float] | None:
    """The row's value for every objective, or None when one is missing (failed or skipped cell)."""
    vals = [number(row, o.column) for o in objectives]
    return None if any(v is None for v in vals) else vals


@dataclass(frozen=True)
class Constraints:
    """Limits a point must meet to be feasible. A failed correctness check is always infeasible."""

    max_p99_ms: float | None = None
    min_throughput: float | None = None
    min_agreement: float | None = 0.99  # int8/bf16: top-1 agreement with fp32 on held-out inputs (report's default)

    def __post_init__(self) -> None:
        for name in ("max_p99_ms", "min_throughput"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise BadInput(f"--{name.replace('_', '-')}: must be positive, got {v}")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise BadInput(f"--min-agreement: a fraction in (0, 1], got {self.min_agreement}")

    def violations(self, row: dict) -> dict[str, float]:
        """Optuna's constraint values by name (<= 0 is met): the row's status (ok or not), then each given
        limit. A limit on a value the row lacks counts as broken."""
        out = {"status": 0.0 if row.get("status") == "ok" else 1.0}
        thr, p99 = number(row, "throughput_items_s"), number(row, "latency_ms_p99")
        if self.max_p99_ms is not None:
            out["max_p99_ms"] = 1.0 if p99 is None else (p99 - self.max_p99_ms) / self.max_p99_ms
        if self.min_throughput is not None:
            out["min_throughput"] = 1.0 if thr is None else (self.min_throughput - thr) / self.min_throughput
        if self.min_agreement is not None:
            agree = number(row, "top1_agreement_fp32")
            if row.get("precision") in ("int8", "bf16"):
                out["min_agreement"] = 1.0 if agree is None else self.min_agreement - agree
            else:
                out["min_agreement"] = 0.0  # fp32/fp16/tf32 rows pass the reference gate instead
        return out

    def why_not(self, row: dict) -> str | None:
        """Why a row is infeasible, in words; None when it is feasible."""
        v = self.violations(row)
        if v.pop("status") > 0:
            return f"{row.get('status')}: {row.get('error') or row.get('check_status') or ''}".strip()
        broken = [n for n, x in v.items() if x > 0]
        return f"outside --{', --'.join(b.replace('_', '-') for b in broken)}" if broken else None

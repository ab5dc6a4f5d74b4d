"""CPU energy from Intel/AMD RAPL through the Linux powercap sysfs tree.

Layout read (root defaults to /sys/class/powercap): `intel-rapl:N` is socket N's package domain
(`name` = "package-N"), `intel-rapl:N:M` its subdomains (core, uncore, dram). Each holds `energy_uj`,
a counter that wraps to 0 after `max_energy_range_uj`. Energy here is package + dram: core and uncore
are already inside the package, and psys covers the whole platform, so adding either would count twice.
RAPL measures whole sockets: every process on them, not only ours.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from infermeter.telemetry.energy import wrapped_delta

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
WHOLE_SOCKET_NOTE = "RAPL measures the whole socket (package + DRAM): every process on it, not only this benchmark"


@dataclass(frozen=True)
class RaplDomain:
    label: str          # "intel-rapl:0/package-0", "intel-rapl:0:2/dram"
    kind: str           # "package" or "dram"
    energy_path: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_path.read_text().strip())


def _read_error(path: Path, exc: OSError | ValueError) -> str:
    if isinstance(exc, PermissionError):
        return (f"permission denied reading {path} (energy_uj is root-only since Linux 5.10; "
                "run as root or grant read access)")
    return f"cannot read {path} ({type(exc).__name__}: {exc})"


def _domain_dirs(root: Path) -> list[Path]:
    """Every intel-rapl:* zone, whether listed flat under root (real sysfs) or nested under its package."""
    seen: dict[str, Path] = {}
    for top in sorted(root.glob("intel-rapl:*")):
        seen.setdefault(top.name, top)
        for sub in sorted(top.glob("intel-rapl:*")):
            seen.setdefault(sub.name, sub)
    return [seen[k] for k in sorted(seen)]


class RaplReader:
    """The package and dram domains under a powercap root, or `available=False` and `why` not."""

    def __init__(self, root: str | Path = DEFAULT_POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self.domains: list[RaplDomain] = []
        self.skipped: list[str] = []  # zones found but not counted, with why
        self.why = self._discover()
        self.available = not self.why

    def _discover(self) -> str:
        if not self.root.is_dir():
            return f"no RAPL counters ({self.root} missing)"
        for zone in _domain_dirs(self.root):
            try:
                name = (zone / "name").read_text().strip()
            except (OSError, ValueError) as e:
                return f"no RAPL counters ({_read_error(zone / 'name', e)})"
            if name.startswith("package"):
                kind = "package"
            elif name == "dram":
                kind = "dram"
            else:
                self.skipped.append(f"{zone.name}/{name} (inside package or whole platform)")
                continue
            energy_path, range_path = zone / "energy_uj", zone / "max_energy_range_uj"
            for path in (range_path, energy_path):
                try:
                    int(path.read_text().strip())
                except (OSError, ValueError) as e:
                    return f"no RAPL counters ({_read_error(path, e)})"
            self.domains.append(RaplDomain(f"{zone.name}/{name}", kind, energy_path,
                                           int(range_path.read_text().strip())))
        if not any(d.kind == "package" for d in self.domains):
            return f"no RAPL counters (no intel-rapl package domain under {self.root})"
        return ""

    def read_all_uj(self) -> dict[str, int]:
        return {d.label: d.read_uj() for d in self.domains}

    def info(self) -> dict:
        if not self.available:
            return {"available": False, "why": self.why}
        return {"available": True, "root": str(self.root),
                "domains": [{"domain": d.label, "kind": d.kind, "max_energy_range_uj": d.max_range_uj}
                            for d in self.domains],
                "not_counted": list(self.skipped), "note": WHOLE_SOCKET_NOTE}


class RaplAccumulator:
    """Running total of RAPL energy across all counted domains, unwrapping each read against the last.

    Called from the sampler thread and from start()/stop(), hence the lock; reading at every sample
    keeps reads far closer together than a wrap (minutes even at hundreds of watts).
    """

    def __init__(self, reader: RaplReader) -> None:
        if not reader.available:
            raise ValueError(f"RAPL unavailable: {reader.why}")
        self._reader = reader
        self._lock = threading.Lock()
        self._last = reader.read_all_uj()
        self._total_uj = 0

    def total_uj(self) -> int:
        with self._lock:
            now = self._reader.read_all_uj()
            for d in self._reader.domains:
                self._total_uj += wrapped_delta(self._last[d.label], now[d.label], d.max_range_uj)
            self._last = now
            return self._total_uj

"""What `infermeter list` shows: every engine and model, available here or why not."""

from __future__ import annotations

from infermeter.engines import load_all
from infermeter.engines.base import modules_missing
from infermeter.models.registry import BUILTIN, builtin_models


def inventory() -> dict:
    engines = []
    for name, cls in load_all().items():
        ok, why = cls.available()
        engines.append({"name": name, "family": cls.family, "available": ok, "why": why or None,
                        "precisions": {d: list(p) for d, p in cls.precisions.items()}, "sources": list(cls.sources)})
    models = []
    loaded = builtin_models()
    for name in BUILTIN:
        cls = loaded.get(name)
        if cls is None:
            models.append({"name": name, "available": False, "why": "model module missing from this install"})
            continue
        missing = modules_missing(*cls.requires)
        models.append({**cls().describe(), "available": not missing,
                       "why": f"not installed: {', '.join(missing)}" if missing else None})
    models.append({"name": "PATH.onnx", "available": not modules_missing("onnx", "onnxruntime"),
                   "weights": "the file's own initialisers", "sources": ["onnx"],
                   "why": None if not modules_missing("onnx", "onnxruntime") else "not installed: onnx/onnxruntime"})
    models.append({"name": "MODEL_FOLDER (config.yaml + load.py)", "available": True,
                   "weights": "what load.py returns (seeded by --seed when it creates them)", "sources": ["torch", "onnx"],
                   "why": None})
    return {"engines": engines, "models": models}


def print_inventory(inv: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console(width=160)
    t = Table(title="engines")
    for col in ("engine", "family", "precisions", "available"):
        t.add_column(col)
    for e in inv["engines"]:
        prec = "; ".join(f"{d}: {','.join(p)}" for d, p in e["precisions"].items())
        t.add_row(e["name"], e["family"], prec, "yes" if e["available"] else f"no: {e['why']}")
    c.print(t)
    m = Table(title="models")
    for col in ("model", "aliases", "weights", "available"):
        m.add_column(col)
    for x in inv["models"]:
        m.add_row(x["name"], ", ".join(x.get("aliases", [])), str(x.get("weights", "")),
                  "yes" if x["available"] else f"no: {x['why']}")
    c.print(m)

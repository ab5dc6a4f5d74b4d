"""The package's modules import each other without cycles.

Every import statement counts, at module level and inside functions alike: a function-level import that
closes a circle is still a circle (it only moves the failure to run time and hides the layering). An
edge goes to the module named (`from infermeter.a import b` goes to infermeter.a.b when that is a module,
else to infermeter.a); the parent packages Python also initialises are not edges, because every
package's __init__ importing one of its own submodules would otherwise read as a cycle.
"""

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "infermeter"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "infermeter.sweep" in graph and "infermeter.engines.base" in graph["infermeter.engines.onnxruntime_engine"]
    assert "infermeter.scenarios.closed_loop" in graph["infermeter.scenarios.server"]


def test_no_import_cycles():
    try:
        order = list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as e:
        pytest.fail("import cycle: " + " -> ".join(e.args[1]))
    assert len(order) == len(import_graph())


def test_a_cycle_would_be_found():
    """The check itself can fail: a two-module circle raises."""
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


def test_the_scenario_registry_drives_the_cell_grid():
    """config, plan and measure read one table; the config reads it without importing numpy."""
    import subprocess
    import sys

    from infermeter.config import RunConfig
    from infermeter.plan import scenario_cells
    from infermeter.scenarios.registry import SCENARIOS

    cfg = RunConfig(scenarios=list(SCENARIOS), streams=[1, 2], target_qps=[5.0, 10.0], device="cpu")
    cells = scenario_cells(cfg, "onnxruntime", "fp32", "x")
    for name, spec in SCENARIOS.items():
        mine = [c for c in cells if c.scenario == name]
        per_batch = (2 if spec.takes_streams else 1) * (2 if spec.takes_qps else 1)
        assert len(mine) == per_batch * len(spec.default_batch_sizes), name
        assert callable(spec.run_fn())
    probe = "import sys, infermeter.config; print('numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def _engine_modules(graph: dict[str, set[str]]) -> set[str]:
    return {m for m in graph if m == "infermeter.engines" or m.startswith("infermeter.engines.")}


def below_engines(graph: dict[str, set[str]]) -> set[str]:
    """Every module outside engines/ that an engine module imports, directly or through others: the floors
    the engines stand on (models, results, quantization, scenarios, device, ...)."""
    engines = _engine_modules(graph)
    below: set[str] = set()
    todo = [t for e in engines for t in graph[e] if t not in engines]
    while todo:
        m = todo.pop()
        if m not in below:
            below.add(m)
            todo += [t for t in graph[m] if t not in engines]
    return below


def test_no_module_the_engines_stand_on_imports_an_engine_module():
    """Layering, not only the absence of cycles: what engines/ imports never reaches back up into engines/
    (helpers both need live beside the model artifacts, not under engines/)."""
    graph = import_graph()
    engines = _engine_modules(graph)
    below = below_engines(graph)
    assert {"infermeter.models.base", "infermeter.quantization", "infermeter.device"} <= below
    offenders = {m: sorted(graph[m] & engines) for m in sorted(below) if graph[m] & engines}
    assert not offenders, f"modules below engines/ that import from it: {offenders}"


def test_the_layering_check_would_find_an_arrow_back_up():
    graph = {"infermeter.engines.a": {"infermeter.models.m"}, "infermeter.models.m": {"infermeter.util"},
             "infermeter.util": {"infermeter.engines.b"}, "infermeter.engines.b": set()}
    assert below_engines(graph) == {"infermeter.models.m", "infermeter.util"}
    assert graph["infermeter.util"] & _engine_modules(graph)

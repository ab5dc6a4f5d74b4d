"""`import infermeter` and `infermeter --help` must not import any ML framework."""

import subprocess
import sys

HEAVY = ("tensorflow", "torch", "onnxruntime", "openvino", "keras", "tensorrt", "jax", "transformers")

PROBE = """
import sys, runpy
sys.argv = {argv!r}
try:
    {stmt}
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY:' + ','.join(heavy))
"""


def _heavy_after(stmt: str, argv=("x",)) -> list[str]:
    code = PROBE.format(stmt=stmt, argv=list(argv), heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY:"))
    return [m for m in line[len("HEAVY:"):].split(",") if m]


def test_import_infermeter_imports_no_framework():
    assert _heavy_after("import infermeter, infermeter.sweep, infermeter.engines, infermeter.models.registry") == []


def test_help_imports_no_framework():
    assert _heavy_after("from infermeter.cli import main; main(['--help'])") == []
    assert _heavy_after("from infermeter.cli import main; main(['run', '--help'])") == []


def test_engine_registry_imports_no_framework():
    heavy = _heavy_after("from infermeter.engines import load_all; assert len(load_all()) >= 1")
    assert heavy == []

"""Both notebooks run top to bottom (nbclient, kernel python3 of this interpreter) against real results."""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
DEVICES = ("cpu-a", "cpu-b")


def run_notebook(name: str, parameters: str, cwd: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), \
        f"{name}: the first cell must be the code cell tagged 'parameters'"
    first.source = parameters
    # "python3" runs sys.executable (jupyter_client maps a kernelspec's bare "python" to it)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def images(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))


def test_single_device_notebook(two_result_dirs, tmp_path):
    params = (f"RESULTS_DIR = {str(two_result_dirs[0])!r}\nDEVICE = None\nSCENARIO = None\n"
              f"OUT_DIR = {str(tmp_path / 'report')!r}")
    nb = run_notebook("Single_GPU_Plot_Generation.ipynb", params, tmp_path)
    assert images(nb) >= 7  # power vs throughput, throughput, percentiles, distribution, energy, memory, trace
    assert (tmp_path / "report" / "Final_Analysis.pdf").is_file()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "cpu-a" in printed


def test_multiple_device_notebook(two_result_dirs, tmp_path):
    params = (f"RESULTS_DIRS = {[str(d) for d in two_result_dirs]!r}\nBASELINE = 'cpu-b'\nSCENARIO = None\n"
              f"XLSX_PATH = {str(tmp_path / 'compare.xlsx')!r}")
    nb = run_notebook("Multiple_GPU_Plot_Generation.ipynb", params, tmp_path)
    assert images(nb) >= 5  # power vs throughput, three metrics across devices, normalised
    assert (tmp_path / "compare.xlsx").is_file()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "baseline: cpu-b" in printed

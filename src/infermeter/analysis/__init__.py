"""Analysis of results folders: loading, plots, the PDF report, the xlsx workbook, cross-device compare.

Importing this package imports pandas only; matplotlib, openpyxl and rich load when a function needs them.
"""

from infermeter.analysis.load import load_latencies, load_power_trace, load_results, load_run_info

__all__ = ["load_latencies", "load_power_trace", "load_results", "load_run_info", "build_report",
           "write_workbook", "compare_table", "print_compare", "report_main", "compare_main"]


def __getattr__(name):
    # heavy plotting/excel modules load on first use, not on `import infermeter.analysis`
    if name in ("build_report", "report_main"):
        from infermeter.analysis import report
        return getattr(report, name)
    if name == "write_workbook":
        from infermeter.analysis.workbook import write_workbook
        return write_workbook
    if name == "compare_table":
        from infermeter.analysis.pivot import compare_table
        return compare_table
    if name in ("print_compare", "compare_main"):
        from infermeter.analysis import compare
        return getattr(compare, name)
    raise AttributeError(f"module 'infermeter.analysis' has no attribute {name!r}")

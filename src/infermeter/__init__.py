"""infermeter: which inference engine, precision and batch size to ship, measured with energy.

Importing this package imports no ML framework: engines import theirs lazily when chosen.
"""

__version__ = "0.1.0"

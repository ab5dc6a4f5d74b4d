"""`infermeter tune`: the Pareto front of throughput, tail latency and energy, found within a wall-clock
budget and gated by correctness.

A search layer above the sweep: space.py (what each engine declares) -> study.py (Optuna proposes,
trials.py measures each point as an ordinary cell) -> front.py (non-dominated front, CI ties, knee,
hypervolume) -> output.py (front.csv, plots, HTML page, best.yaml). gpu_knobs.py sets and always restores
a GPU's power limit and locked clocks where NVML permits. Entry points: `study.run_tune(cfg, TuneOptions)`
and `cli.tune_main` (the command line).
"""

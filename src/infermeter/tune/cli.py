"""`infermeter tune`: settings from the parsed flags, the search, its files, the front on stdout."""

from __future__ import annotations

from infermeter.config import RunConfig
from infermeter.tune.objectives import Constraints, parse_objectives
from infermeter.tune.options import TuneOptions


def options_from_flags(flags: dict) -> TuneOptions:
    return TuneOptions(budget_s=flags["budget_s"], objectives=parse_objectives(flags["objectives"]),
                       constraints=Constraints(flags.get("max_p99_ms"), flags.get("min_throughput"),
                                               flags.get("min_agreement")),
                       pick=flags["pick"], screen_time_s=flags["screen_time_s"],
                       screen_share=flags.get("screen_share", 0.7),
                       confirm_sessions=flags.get("confirm_sessions", 3),
                       session_ci=flags.get("session_ci", 0.05),
                       max_confirm_sessions=flags.get("max_confirm_sessions"), sampler=flags["sampler"])


def tune_main(cfg: RunConfig, flags: dict) -> int:
    """Exit status: 0 with a front; 1 when no point was feasible; 2 bad input (raised as BadInput)."""
    from infermeter.tune.output import print_front, write_outputs
    from infermeter.tune.study import Tuner

    opts = options_from_flags(flags)
    if flags.get("address"):
        from infermeter.tune.fleet import run_fleet_tune

        return run_fleet_tune(cfg, opts, flags["address"], flags["per"], flags["devices"])
    outcome = Tuner(cfg, opts).run()
    paths = write_outputs(outcome, cfg, opts)
    if cfg.json_path:  # --json: every trial's row, as `run --json` writes a sweep's
        from infermeter.results.writer import atomic_write_json, clean_for_json

        atomic_write_json(cfg.json_path, {"results_dir": str(outcome.out_dir),
                                          "front_trials": [p.trial for p in outcome.front],
                                          "rows": [clean_for_json(p.row) for p in outcome.points]})
        paths["json"] = cfg.json_path
    print_front(outcome, paths)
    return outcome.status

"""`infermeter run | fleet | tune | list | env | report | compare` — parsing only; the work lives in the library.

Exit status: 0 all cells ok; 1 some cell failed or mismatched; 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields

from infermeter.config import DEVICES, RunConfig, flags_of
from infermeter.errors import BadInput
from infermeter.parsing import input_shape_sets, name_list, positive_float_list, positive_int_list


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage and a message on errors; we print one clear line and exit 2."""

    def error(self, message):
        raise BadInput(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="infermeter", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    r = sub.add_parser("run", help="benchmark a model over engines, precisions, batch sizes and scenarios")
    r.add_argument("--config", help="YAML file with run settings (same names as the flags, underscores)")
    add_run_options(r)

    fl = sub.add_parser("fleet", help="the same sweep on every device of a Ray cluster, then compare and report")
    for a in r._actions:  # every `run` flag
        if a.dest != "help":
            fl._add_action(a)
    fl.add_argument("--address", default="local",
                    help="Ray cluster address (host:port, auto), or local: a one-machine cluster started here")
    fl.add_argument("--per", default="accelerator-type", choices=("accelerator-type", "node", "gpu"),
                    help="what one device is: each GPU type / CPU label, each node, or each GPU")
    fl.add_argument("--devices", type=_typed(name_list, "--devices"), help="only these devices (labels)")
    fl.add_argument("--no-report", action="store_false", dest="report", help="skip compare and report at the end")

    tu = sub.add_parser("tune", help="search engines, precisions, batch sizes and knobs for the Pareto front of "
                                     "throughput, p99 latency and energy, within a time budget")
    for a in r._actions:  # every `run` flag: the lists narrow the search space
        if a.dest != "help":
            tu._add_action(a)
    add_tune_options(tu)

    prep = sub.add_parser("prepare", help="build a model's artifacts (Keras file, SavedModel, ONNX, reference) only",
                          parents=[], add_help=True)
    for a in r._actions:  # the same model options as `run`
        if a.dest in ("model", "weights", "seed", "image", "input_shapes", "seq_len", "cache_dir", "results_dir",
                      "check_samples", "config"):
            prep._add_action(a)

    ls = sub.add_parser("list", help="engines and models, each available or why not")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    env = sub.add_parser("env", help="hardware and software fingerprint")
    env.add_argument("--json", action="store_true", help="print JSON instead of a table")
    env.add_argument("--device", choices=DEVICES, default="auto", help="the device to describe")
    env.add_argument("--gpu-id", type=int, dest="gpu_id", help="physical GPU index as nvidia-smi shows it")
    rep = sub.add_parser("report", help="plots, Final_Analysis.pdf and a workbook from result folders")
    rep.add_argument("dirs", nargs="+", help="result folders (each holding results.csv)")
    rep.add_argument("--out", default="report", help="output folder (default: report)")
    rep.add_argument("--min-agreement", type=float, default=0.99, dest="min_agreement",
                     help="int8/bf16 cells compete for best engine when their top-1 agreement with fp32 on held-out "
                          "inputs reaches this (default 0.99)")
    cmp_ = sub.add_parser("compare", help="cross-device table")
    cmp_.add_argument("dirs", nargs="+", help="result folders (each holding results.csv)")
    cmp_.add_argument("--xlsx", help="also write the table to this workbook")
    cmp_.add_argument("--metric", default=None, help="one metric (default: throughput, p99 latency and items/J)")
    return p


def add_tune_options(parser: argparse.ArgumentParser) -> None:
    from infermeter.tune.objectives import PICKS
    from infermeter.tune.options import SAMPLERS

    parser.add_argument("--budget-s", type=float, default=900.0, dest="budget_s",
                        help="wall seconds for the whole search, across --resume (one trial may overrun it; default 900)")
    parser.add_argument("--objectives", default="throughput,p99,energy",
                        help="comma list of throughput, p99, energy (energy where it is measurable; default all three)")
    parser.add_argument("--max-p99-ms", type=float, dest="max_p99_ms", help="constraint: p99 latency at most this")
    parser.add_argument("--min-throughput", type=float, dest="min_throughput",
                        help="constraint: throughput (items/s) at least this")
    parser.add_argument("--min-agreement", type=float, default=0.99, dest="min_agreement",
                        help="constraint for int8/bf16: top-1 agreement with fp32 on held-out inputs at least this "
                             "(default 0.99, as `infermeter report` ranks them)")
    parser.add_argument("--pick", default="knee", choices=PICKS, help="the front member best.yaml holds (default knee)")
    parser.add_argument("--screen-time-s", type=float, default=2.0, dest="screen_time_s",
                        help="timed seconds per screened trial (the front is re-measured with the CI stop; default 2)")
    parser.add_argument("--screen-share", type=float, default=0.7, dest="screen_share",
                        help="share of the budget spent screening before the front is re-measured (default 0.7)")
    parser.add_argument("--confirm-sessions", type=int, default=3, dest="confirm_sessions",
                        help="separate sessions each front member is re-measured in: its interval is then the "
                             "t interval over them, run-to-run drift included (default 3)")
    parser.add_argument("--session-ci", type=float, default=0.05, dest="session_ci",
                        help="a front member whose interval over its sessions is wider than this (relative 95%% "
                             "half-width) gets another session, while the budget lasts (default 0.05)")
    parser.add_argument("--max-confirm-sessions", type=int, dest="max_confirm_sessions",
                        help="at most this many sessions per front member (default twice --confirm-sessions)")
    parser.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                        help="Optuna's multi-objective TPE or NSGA-II, both with constraints (default tpe)")
    parser.add_argument("--address", help="search every device of this Ray cluster (host:port, auto, or local), "
                                          "one trial per device at a time, one front per device")
    parser.add_argument("--per", default="accelerator-type", choices=("accelerator-type", "node", "gpu"),
                        help="with --address: what one device is (as `infermeter fleet --per`)")
    parser.add_argument("--devices", type=_typed(name_list, "--devices"), help="with --address: only these devices")


TUNE_FLAGS = ("budget_s", "objectives", "max_p99_ms", "min_throughput", "min_agreement", "pick", "screen_time_s",
              "screen_share", "confirm_sessions", "session_ci", "max_confirm_sessions", "sampler")


# how a RunConfig annotation is read from the command line (lists: comma separated)
_PARSERS = {
    "list[int]": positive_int_list,
    "list[float]": positive_float_list,
    "list[str]": name_list,
    "list[list[list[int]]]": lambda text, flag: input_shape_sets(text),
    "int": int,
    "float": float,
    "str": str,
}


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """One argument per RunConfig field, all of it from the field: flag spellings, type, choices, help.
    Defaults stay None here, so a flag overrides a config file only when given; the help shows RunConfig's."""
    defaults = RunConfig()
    for f in fields(RunConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        default = getattr(defaults, f.name)
        shown = "" if default in (None, [], "", False) else f" (default: {_show(default)})"
        kw: dict = {"help": (meta["help"] + shown).replace("%", "%%"), "default": None}
        base = f.type.replace(" | None", "")
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="?", **kw)
            continue
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if base == "bool":
            kw["action"] = "store_true"
        elif meta.get("repeatable"):  # --flag A --flag B -> [A, B], each item as written
            kw["action"] = "append"
        elif meta.get("choices"):
            kw["choices"] = meta["choices"]
        else:
            # an annotation without a parser here (e.g. gpu_id's int | list | 'all') is read by RunConfig
            kw["type"] = _typed(_PARSERS.get(base, str), flags_of(f)[0])
        parser.add_argument(*flags_of(f), dest=f.name, **kw)


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _typed(parse, flag):
    if parse in (int, float, str):
        return parse

    def typed(text):
        try:
            return parse(text, flag)
        except BadInput as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    typed.__name__ = flag  # argparse names the type in its "invalid ... value" message
    return typed


def config_from_args(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    data: dict = {}
    if args.config:
        data.update(load_config_file(args.config))
    skip = {"command", "config", "address", "per", "devices", "report", *TUNE_FLAGS}
    for k, v in vars(args).items():
        if k in skip or v is None:
            continue
        data[k] = v
    data["command"] = "infermeter " + " ".join(shlex.quote(a) for a in argv)
    return RunConfig.from_dict(data)


def load_config_file(path: str) -> dict:
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as e:
        raise BadInput(f"--config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise BadInput(f"--config {path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise BadInput(f"--config {path}: expected a mapping of setting: value")
    return {k.replace("-", "_"): v for k, v in data.items()}


def cmd_run(args, argv) -> int:
    cfg = config_from_args(args, argv)
    from infermeter.multi_gpu import run_sweeps
    from infermeter.progress import print_summary

    outcomes = run_sweeps(cfg)
    for o in outcomes:
        energy = {r.get("energy_source") for r in o.rows if r.get("energy_source")}
        print_summary(o.rows, o.out_dir, "; ".join(sorted(energy)) if energy else None, wide=cfg.wide)
    return max(o.status for o in outcomes)


def cmd_fleet(args, argv) -> int:
    from infermeter.fleet.driver import FleetOptions, import_ray, run_fleet

    cfg = config_from_args(args, argv)
    opts = FleetOptions(address=args.address, per=args.per, devices=args.devices, report=args.report)
    import_ray()  # one line and exit 2 when Ray is missing, before anything starts
    status, _ = run_fleet(cfg, opts)
    return status


def cmd_tune(args, argv) -> int:
    from infermeter.tune.cli import tune_main

    return tune_main(config_from_args(args, argv),
                     {k: getattr(args, k) for k in (*TUNE_FLAGS, "address", "per", "devices")})


def cmd_prepare(args, argv) -> int:
    from infermeter.sweep import prepare_only

    cfg = config_from_args(args, argv)
    for tag, path in prepare_only(cfg).items():
        print(f"{cfg.model} {tag}: {path}")
    return 0


def cmd_list(args) -> int:
    from infermeter.inventory import inventory, print_inventory

    inv = inventory()
    if args.json:
        print(json.dumps(inv, indent=2))
    else:
        print_inventory(inv)
    return 0


def cmd_env(args) -> int:
    from infermeter.device import resolve_device
    from infermeter.results.metadata import fingerprint

    fp = fingerprint(resolve_device(args.device, args.gpu_id), "infermeter env")
    for w in fp["warnings"]:
        print(f"infermeter: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(fp, indent=2))
    else:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(fp))
    return 0


def cmd_report(args) -> int:
    from infermeter.analysis.report import report_main

    return report_main(args.dirs, args.out, args.min_agreement)


def cmd_compare(args) -> int:
    from infermeter.analysis.compare import compare_main

    return compare_main(args.dirs, args.xlsx, metric=args.metric)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from dotenv import load_dotenv

        load_dotenv(".env", override=False)  # INFERMETER_RESULTS_DIR, INFERMETER_CACHE_DIR, CUDA_HOME, ...
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "fleet":
            return cmd_fleet(args, argv)
        if args.command == "tune":
            return cmd_tune(args, argv)
        if args.command == "prepare":
            return cmd_prepare(args, argv)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "env":
            return cmd_env(args)
        if args.command == "report":
            return cmd_report(args)
        return cmd_compare(args)
    except BadInput as e:
        print(f"infermeter: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("infermeter: interrupted; finished cells are in results.csv (--resume continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""`infermeter run | list | env | report | compare` — parsing only; the work lives in the library.

Exit status: 0 all cells ok; 1 some cell failed or mismatched; 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from infermeter.errors import BadInput
from infermeter.parsing import input_shape_sets, name_list, positive_float_list, positive_int_list


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage and a message on errors; we print one clear line and exit 2."""

    def error(self, message):
        raise BadInput(f"{self.prog}: {message}")


def _list_arg(kind, what):
    def parse(text):
        try:
            return kind(text, what)
        except BadInput as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="infermeter", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    r = sub.add_parser("run", help="benchmark a model over engines, precisions, batch sizes and scenarios")
    r.add_argument("model", nargs="?", default=None, help="model name, PATH.onnx or model folder (default mobilenet_v3_large)")
    r.add_argument("--config", help="YAML file with run settings (same names as the flags, underscores)")
    r.add_argument("--engines", type=_list_arg(name_list, "--engines"), help="comma list, or all")
    r.add_argument("--precisions", type=_list_arg(name_list, "--precisions"), help="fp32,fp16 (default: auto)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"))
    r.add_argument("--gpu-id", dest="gpu_id", help="physical GPU index (as nvidia-smi); 0,2 or all: each GPU in turn")
    r.add_argument("--parallel-gpus", action="store_true", default=None, dest="parallel_gpus",
                   help="with several --gpu-id: sweep them at once (recorded in run.json and every row)")
    r.add_argument("--device-label", dest="device_label", help="name the device in results")
    r.add_argument("--batch-sizes", type=_list_arg(positive_int_list, "--batch-sizes"), dest="batch_sizes")
    r.add_argument("--scenario", type=_list_arg(name_list, "--scenario"), dest="scenarios",
                   help="offline, single-stream, multi-stream, server (comma list)")
    r.add_argument("--streams", type=_list_arg(positive_int_list, "--streams"))
    r.add_argument("--target-qps", type=_list_arg(positive_float_list, "--target-qps"), dest="target_qps")
    r.add_argument("--latency-bound-ms", type=float, dest="latency_bound_ms")
    r.add_argument("--warmup", type=int)
    r.add_argument("--warmup-time", type=float, dest="warmup_time")
    r.add_argument("--iterations", type=int)
    r.add_argument("--time", type=float, dest="time_s")
    r.add_argument("--min-iterations", type=int, dest="min_iterations")
    r.add_argument("--target-ci", type=float, dest="target_ci")
    r.add_argument("--max-time", type=float, dest="max_time")
    r.add_argument("--results-dir", dest="results_dir")
    r.add_argument("--cache-dir", dest="cache_dir")
    r.add_argument("--json", dest="json_path")
    r.add_argument("--resume", action="store_true", default=None)
    r.add_argument("--timeout", type=float, dest="timeout_s", help="per-cell limit in seconds")
    r.add_argument("--weights")
    r.add_argument("--seed", type=int)
    r.add_argument("--image")
    r.add_argument("--input-shapes", type=lambda t: _wrap(input_shape_sets, t), dest="input_shapes",
                   help='"[1,224,224,3]" ; several experiments separated by ";"')
    r.add_argument("--seq-len", type=int, dest="seq_len")
    r.add_argument("--power-interval-ms", type=float, dest="power_interval_ms")
    r.add_argument("--energy-time", type=float, dest="energy_time")
    r.add_argument("--cooldown", type=float, dest="cooldown_s")
    r.add_argument("--idle-time", type=float, dest="idle_time")
    r.add_argument("--num-threads", type=int, dest="num_threads")
    r.add_argument("--io", choices=("host", "device"))
    r.add_argument("--loadgen", action="store_true", default=None)
    r.add_argument("--check-samples", type=int, dest="check_samples")
    r.add_argument("--worker-memory-limit-mb", type=int, dest="worker_memory_limit_mb")
    r.add_argument("--quiet", action="store_true", default=None)

    prep = sub.add_parser("prepare", help="build a model's artifacts (Keras file, SavedModel, ONNX, reference) only",
                          parents=[], add_help=True)
    for a in r._actions:  # the same model options as `run`
        if a.dest in ("model", "weights", "seed", "image", "input_shapes", "seq_len", "cache_dir", "results_dir",
                      "check_samples", "config"):
            prep._add_action(a)

    ls = sub.add_parser("list", help="engines and models, each available or why not")
    ls.add_argument("--json", action="store_true")
    env = sub.add_parser("env", help="hardware and software fingerprint")
    env.add_argument("--json", action="store_true")
    env.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    env.add_argument("--gpu-id", type=int, dest="gpu_id")
    rep = sub.add_parser("report", help="plots, Final_Analysis.pdf and a workbook from result folders")
    rep.add_argument("dirs", nargs="+")
    rep.add_argument("--out", default="report")
    cmp_ = sub.add_parser("compare", help="cross-device table")
    cmp_.add_argument("dirs", nargs="+")
    cmp_.add_argument("--xlsx")
    cmp_.add_argument("--metric", default=None, help="one metric (default: throughput, p99 latency and items/J)")
    return p


def _wrap(fn, text):
    try:
        return fn(text)
    except BadInput as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def config_from_args(args: argparse.Namespace, argv: list[str]):
    from infermeter.config import RunConfig

    data: dict = {}
    if args.config:
        data.update(load_config_file(args.config))
    skip = {"command", "config"}
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
        print_summary(o.rows, o.out_dir, "; ".join(sorted(energy)) if energy else None)
    return max(o.status for o in outcomes)


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
    if args.json:
        print(json.dumps(fp, indent=2))
    else:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(fp))
    return 0


def cmd_report(args) -> int:
    from infermeter.analysis.report import report_main

    return report_main(args.dirs, args.out)


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

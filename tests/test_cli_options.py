"""`infermeter run`'s options come from RunConfig: each once, each with help, older spellings still accepted."""

import argparse
from dataclasses import fields

import pytest

from infermeter.cli import build_parser, config_from_args
from infermeter.config import RunConfig, flags_of
from infermeter.errors import BadInput

# older spellings and the field each now sets, with a value that differs from the field's default
OLD_SPELLINGS = {
    "--time": ("time_s", "3"), "--max-time": ("max_time_s", "7"), "--warmup-time": ("warmup_time_s", "1.5"),
    "--energy-time": ("energy_time_s", "2"), "--idle-time": ("idle_time_s", "0"), "--timeout": ("timeout_s", "9"),
    "--cooldown": ("cooldown_s", "0.5"),
}


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_every_run_option_has_help_and_renders():
    run = _subparser("run")
    for action in run._actions:
        assert action.help and action.help.strip(), f"{action.option_strings or action.dest} has no help"
    text = run.format_help()  # a stray % in a help string would raise here
    for f in fields(RunConfig):
        if f.metadata["cli"]:
            assert f.metadata["help"].split(";")[0] in " ".join(text.split()), f.name


def test_run_options_are_exactly_the_cli_fields_of_run_config():
    dests = {a.dest for a in _subparser("run")._actions} - {"help", "config"}
    assert dests == {f.name for f in fields(RunConfig) if f.metadata["cli"]}


def test_every_duration_field_carries_its_unit():
    for f in fields(RunConfig):
        if f.type.startswith("float") and "time" in f.name or f.name in ("cooldown_s", "timeout_s"):
            assert f.name.endswith("_s"), f.name


@pytest.mark.parametrize("old", sorted(OLD_SPELLINGS))
def test_old_flag_spellings_set_the_renamed_field(old):
    name, value = OLD_SPELLINGS[old]
    new = flags_of(next(f for f in fields(RunConfig) if f.name == name))[0]
    cfgs = []
    for flag in (old, new):
        argv = ["run", "--device", "cpu", flag, value]
        cfgs.append(config_from_args(build_parser().parse_args(argv), argv))
    assert getattr(cfgs[0], name) == getattr(cfgs[1], name) == float(value) != getattr(RunConfig(), name)


def test_other_kept_spellings_parse():
    argv = ["run", "--json", "rows.json", "--scenario", "single-stream,offline", "--resume", "--quiet"]
    cfg = config_from_args(build_parser().parse_args(argv), argv)
    assert cfg.json_path == "rows.json" and cfg.scenarios == ["single-stream", "offline"]
    assert cfg.resume is True and cfg.quiet is True


def test_config_files_and_the_python_api_accept_old_names(tmp_path):
    old = {"max_time": 7, "idle_time": 0, "energy_time": 2, "warmup_time": 1.5, "time": 3, "scenario": ["offline"]}
    for cfg in (RunConfig.from_dict(old), RunConfig(**old)):
        assert (cfg.max_time_s, cfg.idle_time_s, cfg.energy_time_s, cfg.warmup_time_s, cfg.time_s) == (7, 0, 2, 1.5, 3)
        assert cfg.scenarios == ["offline"]
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("max-time: 7\nidle_time_s: 0\n")
    argv = ["run", "--config", str(yaml_file)]
    cfg = config_from_args(build_parser().parse_args(argv), argv)
    assert (cfg.max_time_s, cfg.idle_time_s) == (7, 0)
    with pytest.raises(BadInput, match="max_time_s is given twice"):
        RunConfig.from_dict({"max_time": 7, "max_time_s": 8})


def test_prepare_keeps_its_subset():
    dests = {a.dest for a in _subparser("prepare")._actions} - {"help"}
    assert dests == {"model", "weights", "seed", "image", "input_shapes", "seq_len", "cache_dir", "results_dir",
                     "check_samples", "config"}


def test_a_repeatable_field_collects_each_use(monkeypatch):
    """Field metadata decides argparse specifics: a repeatable list[str] field takes one item per use."""
    import dataclasses as dc

    from infermeter import cli

    @dc.dataclass
    class WithRepeatable:
        tags: "list[str] | None" = dc.field(default=None, metadata={
            "help": "a tag; repeatable", "cli": True, "repeatable": True, "metavar": "NAME=LOW:HIGH",
            "aliases": (), "flag": None, "choices": None, "positional": False})

    monkeypatch.setattr(cli, "RunConfig", WithRepeatable)
    parser = argparse.ArgumentParser()
    cli.add_run_options(parser)
    assert parser.parse_args(["--tags", "x=0:5", "--tags", "y=1,2:3"]).tags == ["x=0:5", "y=1,2:3"]
    assert "NAME=LOW:HIGH" in parser.format_help()

"""TrainConfig by concern: the argparse helper round-trips the nested config, the flags of `truckpilot train`
are those it had before the sections (same names, same defaults, same meaning), and config.json of either
layout loads."""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import typing

import pytest

from training import cli as train_cli
from training.config import (AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, RuntimeConfig,
                             TrainConfig, add_arguments, build_parser, config_options, from_arguments, option,
                             parse_train_config)

#: the options of `truckpilot train detector --help` before the sections, with their defaults (the flat
#: TrainConfig's parser; --debug-inject-nan-at-step is a working flag that --help does not list)
FLAGS_BEFORE = {
    "--data": [], "--out": "runs/train", "--val-data": [], "--val-fraction": 0.2, "--init": "",
    "--trunk-weights": "imagenet", "--input-height": 0, "--input-width": 0, "--train-crop-height": 0,
    "--train-crop-width": 0, "--crop-on-boxes": 0.0, "--anchor-strides": [], "--anchor-sizes": [],
    "--anchor-ratios": [], "--match-iou": 0.0, "--epochs": 6, "--epoch-frames": 0, "--freeze-epochs": 1,
    "--batch-size": 64, "--lr": 0.001, "--trunk-lr-div": 10.0, "--weight-decay": 0.0001, "--pct-start": 0.25,
    "--balance": "sampler", "--augment": True, "--flip": True, "--crop-min-scale": 0.0, "--color-jitter": 0.3,
    "--cache": True, "--device": "auto", "--cpu-malloc": "keep", "--amp": "auto", "--channels-last": "auto",
    "--num-workers": -1, "--seed": 0, "--deterministic": False, "--eval-every-epochs": 1, "--save-every-steps": 0,
    "--resume": False, "--max-steps": 0, "--find-lr": False, "--find-lr-steps": 100, "--benchmark-steps": 0,
    "--score-threshold": 0.05, "--direction-loss-weight": 1.0, "--log-every-steps": 10,
    "--debug-inject-nan-at-step": -1,
    "--takeover-weight": 1.0,  # added later (issue 29: a person's takeovers drawn more often)
    "--steer-loss-weight": 1.0,  # added later (issue 28: the continuous steer head)
}
#: the flags listed by /tmp/help_before/train_detector.txt (saved before the change), --no-* forms included
HELP_FLAGS_BEFORE = [
    "--amp", "--anchor-ratios", "--anchor-sizes", "--anchor-strides", "--augment", "--balance", "--batch-size",
    "--benchmark-steps", "--cache", "--channels-last", "--color-jitter", "--cpu-malloc", "--crop-min-scale",
    "--crop-on-boxes", "--data", "--deterministic", "--device", "--direction-loss-weight", "--epoch-frames",
    "--epochs", "--eval-every-epochs", "--find-lr", "--find-lr-steps", "--flip", "--freeze-epochs", "--init",
    "--input-height", "--input-width", "--log-every-steps", "--lr", "--match-iou", "--max-steps", "--no-augment",
    "--no-cache", "--no-deterministic", "--no-find-lr", "--no-flip", "--no-resume", "--num-workers", "--out",
    "--pct-start", "--resume", "--save-every-steps", "--score-threshold", "--seed", "--train-crop-height",
    "--train-crop-width", "--trunk-lr-div", "--trunk-weights", "--val-data", "--val-fraction", "--weight-decay",
    "--takeover-weight",  # added later (issue 29)
    "--steer-loss-weight",  # added later (issue 28)
]
#: config.json as the flat TrainConfig wrote it for OLD_ARGV (every field set; generated with that version)
OLD_ARGV = [
    "detector", "--data", "s1", "s2", "--val-data", "v1", "--out", "runs/x", "--trunk-weights", "none",
    "--input-height", "96", "--input-width", "128", "--train-crop-height", "48", "--train-crop-width", "64",
    "--crop-on-boxes", "0.5", "--anchor-strides", "8", "16", "--anchor-sizes", "0.1", "0.3", "--anchor-ratios", "1",
    "0.5", "--match-iou", "0.4", "--epochs", "3", "--epoch-frames", "200", "--freeze-epochs", "0", "--batch-size",
    "8", "--lr", "0.003", "--trunk-lr-div", "5", "--weight-decay", "0.01", "--pct-start", "0.3", "--balance",
    "sampler-size", "--no-flip", "--crop-min-scale", "0.5", "--color-jitter", "0.1", "--no-cache", "--device", "cpu",
    "--cpu-malloc", "system", "--amp", "off", "--channels-last", "off", "--num-workers", "0", "--seed", "7",
    "--deterministic", "--eval-every-epochs", "2", "--save-every-steps", "5", "--max-steps", "9",
    "--benchmark-steps", "0", "--score-threshold", "0.1", "--direction-loss-weight", "2", "--log-every-steps", "3",
]
OLD_FLAT_CONFIG = {
    "task": "detector", "data": ["s1", "s2"], "out": "runs/x", "val_data": ["v1"], "val_fraction": 0.2, "init": "",
    "trunk_weights": "none", "input_height": 96, "input_width": 128, "train_crop_height": 48,
    "train_crop_width": 64, "crop_on_boxes": 0.5, "anchor_strides": [8, 16], "anchor_sizes": [0.1, 0.3],
    "anchor_ratios": [1.0, 0.5], "match_iou": 0.4, "epochs": 3, "epoch_frames": 200, "freeze_epochs": 0,
    "batch_size": 8, "lr": 0.003, "trunk_lr_div": 5.0, "weight_decay": 0.01, "pct_start": 0.3,
    "balance": "sampler-size", "augment": True, "flip": False, "crop_min_scale": 0.5, "color_jitter": 0.1,
    "cache": False, "device": "cpu", "cpu_malloc": "system", "amp": "off", "channels_last": "off", "num_workers": 0,
    "seed": 7, "deterministic": True, "eval_every_epochs": 2, "save_every_steps": 5, "resume": False,
    "max_steps": 9, "find_lr": False, "find_lr_steps": 100, "benchmark_steps": 0, "score_threshold": 0.1,
    "direction_loss_weight": 2.0, "log_every_steps": 3, "debug_inject_nan_at_step": -1,
}
#: for each flag, a value other than its default (and the flags it must come with, where it needs company)
NON_DEFAULT = {
    "--data": (["a", "b"], []), "--val-data": (["v"], []), "--val-fraction": (["0.3"], []),
    "--balance": (["loss"], []), "--epoch-frames": (["64"], []), "--cache": ([], []),
    "--init": (["runs/x/best.safetensors"], []), "--trunk-weights": (["none"], []),
    "--input-height": (["96"], ["--input-width", "128"]), "--input-width": (["128"], ["--input-height", "96"]),
    "--anchor-strides": (["8", "16"], ["--anchor-sizes", "0.1", "0.2"]),
    "--anchor-sizes": (["0.1", "0.2"], ["--anchor-strides", "8", "16"]), "--anchor-ratios": (["1", "3"], []),
    "--match-iou": (["0.45"], []), "--epochs": (["9"], []), "--freeze-epochs": (["2"], []),
    "--batch-size": (["8"], []), "--lr": (["0.02"], []), "--trunk-lr-div": (["4"], []),
    "--weight-decay": (["0.05"], []), "--pct-start": (["0.1"], []), "--direction-loss-weight": (["0.5"], []),
    "--steer-loss-weight": (["0.5"], []),
    "--augment": ([], []), "--flip": ([], []), "--crop-min-scale": (["0.7"], []), "--color-jitter": (["0.2"], []),
    "--train-crop-height": (["32"], ["--train-crop-width", "48"]),
    "--train-crop-width": (["48"], ["--train-crop-height", "32"]), "--crop-on-boxes": (["0.25"], []),
    "--device": (["cpu"], []), "--cpu-malloc": (["system"], []), "--amp": (["off"], []),
    "--channels-last": (["on"], []), "--num-workers": (["3"], []), "--seed": (["11"], []),
    "--deterministic": ([], []), "--out": (["runs/y"], []), "--eval-every-epochs": (["2"], []),
    "--score-threshold": (["0.2"], []), "--save-every-steps": (["7"], []), "--log-every-steps": (["5"], []),
    "--resume": ([], []), "--max-steps": (["12"], []), "--find-lr": ([], []), "--find-lr-steps": (["30"], []),
    "--benchmark-steps": (["20"], []), "--debug-inject-nan-at-step": (["4"], []),
}


def _cli_options():
    return [opt for opt in config_options(TrainConfig) if opt.on_command_line and opt.flag.startswith("--")]


def _flip_bool(flag: str, default: bool) -> str:
    return "--no-" + flag[2:] if default else flag


def test_every_field_is_one_flag_with_its_help_text():
    parser = build_parser()
    actions = {s: a for a in parser._actions for s in a.option_strings}
    options = _cli_options()
    flags = [opt.flag for opt in options]
    assert len(flags) == len(set(flags)), "two fields share a flag"
    assert set(flags) == set(FLAGS_BEFORE)
    for opt in options:
        action = actions[opt.flag]
        assert action.dest == opt.dest and action.help == opt.help and opt.help, opt.dest
        # exactly one action writes the field (a bool's --no-X is the same action)
        assert [a for a in parser._actions if a.dest == opt.dest] == [action]
    # the fields that are no flag: the positional task, and the Augmenter's fixed tunings
    others = {opt.dest for opt in config_options(TrainConfig)} - {opt.dest for opt in options}
    assert others == {"task", "augment.flip_p", "augment.crop_ratio", "augment.min_visibility"}
    assert all(opt.help for opt in config_options(TrainConfig))


def test_flags_keep_their_names_and_defaults():
    assert {opt.flag: opt.get(TrainConfig()) for opt in _cli_options()} == {
        flag: tuple(default) if isinstance(default, list) else default for flag, default in FLAGS_BEFORE.items()}
    assert parse_train_config(["detector", "--data", "s"]) == TrainConfig(
        task="detector", data=DataConfig(sessions=("s",)))


def test_help_lists_the_flags_it_listed_before(capsys):
    with pytest.raises(SystemExit) as done:
        train_cli.main(["detector", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    usage = text.split("\n\n")[0]
    listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", usage))
    assert listed == set(HELP_FLAGS_BEFORE)
    for section in ("data", "model", "optim", "augment", "runtime", "run"):
        assert f"\n{section}:\n" in text, section  # one argument group per concern


def test_evaluate_keeps_its_flags_and_defaults_and_shares_trains_help():
    """`truckpilot evaluate` takes --device, --cpu-malloc and --score-threshold from the train config's fields."""
    from pathlib import Path

    from training import evaluate_cli

    parser = evaluate_cli.build_parser()
    flags = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == {"--data", "--out", "--device", "--batch-size", "--score-threshold", "--tta", "--cpu-malloc"}
    args = parser.parse_args(["ck.safetensors", "--data", "s"])
    assert vars(args) == {"checkpoint": Path("ck.safetensors"), "data": ["s"], "out": None, "device": "auto",
                          "batch_size": 64, "score_threshold": 0.05, "tta": "none", "cpu_malloc": "keep"}
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    train = {opt.flag: opt.help for opt in _cli_options()}
    assert all(helps[flag] == train[flag] for flag in ("--device", "--cpu-malloc", "--score-threshold"))
    with pytest.raises(SystemExit):
        parser.parse_args(["ck.safetensors", "--data", "s", "--cpu-malloc", "fast"])


@pytest.mark.parametrize("flag", sorted(NON_DEFAULT))
def test_each_flag_sets_its_field_and_round_trips(flag):
    option = {opt.flag: opt for opt in _cli_options()}[flag]
    default = option.get(TrainConfig())
    values, company = NON_DEFAULT[flag]
    spelled = _flip_bool(flag, default) if option.hint is bool else flag
    argv = ["detector", *([] if flag == "--data" else ["--data", "s"]), spelled, *values, *company]
    config = parse_train_config(argv)
    value = option.get(config)
    if option.hint is bool:
        expected = not default
    elif option.is_tuple:
        expected = tuple(typing.get_args(option.hint)[0](v) for v in values)
    else:
        expected = option.hint(values[0])
    assert value == expected != default
    # everything else kept its default, but the companions
    touched = {flag} | {word for word in company if word.startswith("--")}
    for other in _cli_options():
        if other.flag not in touched and other.flag != "--data":
            assert other.get(config) == other.get(TrainConfig()), other.flag
    # through config.json and back
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_parsed_flags_build_the_nested_config():
    config = parse_train_config(OLD_ARGV)
    assert config == TrainConfig(
        task="detector",
        data=DataConfig(sessions=("s1", "s2"), val_sessions=("v1",), balance="sampler-size", epoch_frames=200,
                        cache=False),
        model=ModelConfig(trunk_weights="none", input_height=96, input_width=128, anchor_strides=(8, 16),
                          anchor_sizes=(0.1, 0.3), anchor_ratios=(1.0, 0.5), match_iou=0.4),
        optim=OptimConfig(epochs=3, freeze_epochs=0, batch_size=8, lr=0.003, trunk_lr_div=5.0, weight_decay=0.01,
                          pct_start=0.3, direction_loss_weight=2.0),
        augment=AugmentConfig(flip=False, crop_min_scale=0.5, color_jitter=0.1, train_crop_height=48,
                              train_crop_width=64, crop_on_boxes=0.5),
        runtime=RuntimeConfig(device="cpu", cpu_malloc="system", amp="off", channels_last="off", num_workers=0,
                              seed=7, deterministic=True),
        run=RunConfig(out="runs/x", eval_every_epochs=2, score_threshold=0.1, save_every_steps=5,
                      log_every_steps=3, max_steps=9))
    saved = config.to_dict()
    assert set(saved) == {"task", "data", "model", "optim", "augment", "runtime", "run"}
    assert saved["optim"]["lr"] == 0.003 and saved["data"]["sessions"] == ["s1", "s2"]
    assert saved["augment"]["crop_ratio"] == [0.85, 1.18]  # the tunings are recorded with the run


def test_a_flat_config_json_of_an_older_run_reads_as_the_same_config(tmp_path):
    """Each key of the flat layout is the field its flag set then: same command line, same config."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(OLD_FLAT_CONFIG))
    assert TrainConfig.load(path) == parse_train_config(OLD_ARGV)
    path.write_text(json.dumps({**OLD_FLAT_CONFIG, "mixup": 0.2}))  # a field this version does not know
    with pytest.raises(ValueError, match=r"config\.json: .*unknown fields \['mixup'\].*new --out"):
        TrainConfig.load(path)
    nested = parse_train_config(OLD_ARGV).to_dict()
    nested["optim"]["warmup"] = 3
    path.write_text(json.dumps(nested))
    with pytest.raises(ValueError, match=r"unknown fields \['warmup'\] in optim"):
        TrainConfig.load(path)


def test_checks_name_the_flag_and_sit_with_their_section():
    with pytest.raises(ValueError, match="--freeze-epochs 3 must lie in 0..--epochs"):
        OptimConfig(epochs=2, freeze_epochs=3)
    with pytest.raises(ValueError, match="--amp 'fp8': choose one of"):
        RuntimeConfig(amp="fp8")
    with pytest.raises(ValueError, match="--input-height and --input-width"):
        ModelConfig(input_height=96)
    with pytest.raises(ValueError, match="with --init the checkpoint's ratios"):
        ModelConfig(init="x.safetensors", match_iou=0.4)
    with pytest.raises(ValueError, match="drop them for a direction run"):
        TrainConfig(task="direction", model=ModelConfig(match_iou=0.4))
    with pytest.raises(ValueError, match="task 'steer': choose one of"):
        TrainConfig(task="steer")
    # the parser turns a failed check into a usage error (exit 2) naming the flag
    with pytest.raises(SystemExit) as done:
        parse_train_config(["direction", "--data", "s", "--train-crop-height", "32", "--train-crop-width", "32"])
    assert done.value.code == 2
    with pytest.raises(SystemExit):
        parse_train_config(["detector"])  # --data is required unless --resume


@dataclasses.dataclass(frozen=True)
class _Inner:
    """Inner things."""

    size: tuple[int, ...] = option((1, 2), "sizes", nargs="*")
    on: bool = option(False, "switch", flag="switch-on")


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = option("a", "the name")
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_the_helper_needs_no_hand_written_option():
    """A dataclass tree of any shape gets its options and comes back from the namespace."""
    Outer, Inner = _Outer, _Inner
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    assert from_arguments(Outer, parser.parse_args([])) == Outer()
    got = from_arguments(Outer, parser.parse_args(["--name", "b", "--size", "5", "--switch-on"]))
    assert got == Outer(name="b", inner=Inner(size=(5,), on=True))
    # a tool may offer a few of the options: the others keep their defaults, an unknown flag is an error
    few = argparse.ArgumentParser()
    add_arguments(few, Outer, flags={"--switch-on"})
    assert from_arguments(Outer, few.parse_args(["--switch-on"])) == Outer(inner=Inner(on=True))
    with pytest.raises(SystemExit):
        few.parse_args(["--name", "b"])
    with pytest.raises(ValueError, match="no options"):
        add_arguments(argparse.ArgumentParser(), Outer, flags={"--nmae"})

"""The replay regression fixture: a short sim drive recorded by ``truckpilot drive``'s own parts.

The fixture (tests/agent/data/replay/drive/, about 240 KiB) is a session written by the parts
``truckpilot drive --sim --record`` drives with (``open_sim``, ``run_loop``, ``DriveRecorder``):
road FIXTURE_SEED at FIXTURE_SIZE, empty road, day, clear; the agent drives FIXTURE_WARMUP steps
unrecorded (from standstill it first steers about 190 steps in), then FIXTURE_STEPS frames are
recorded from a fresh Controller (where a replay starts), 47 of them steering. The driver is the
e2e test's tiny direction ensemble (tests/agent/data/e2e_direction.pt, float32 PyTorch on the
CPU, one thread) with the default ControllerConfig (speed known, as in every sim drive). The
project's checkpoint format holds ResNet34 networks only (tens of MB), so the fixture's model is
this tiny one, given to the replay as a Perceiver; the CLI path (``truckpilot replay SESSION --model CKPT``) is tested
on a checkpoint written into a temporary directory.

tests/agent/test_agent_replay.py fails when preprocessing, the network, its decoding or the
controller change what the agent would have done on these frames. When such a change is meant,
re-record the fixture on purpose and commit it with the change:

    .venv/bin/python tests/agent/replay_kit.py regenerate

(``--out DIR`` writes elsewhere; ``--steer-gain-scale X`` records with the steering gain times X.) It
records into a temporary directory, replays it to check it reproduces itself, then replaces the
fixture.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("data") / "replay" / "drive"
FIXTURE_SEED = 3
FIXTURE_WARMUP = 180  # unrecorded steps first: the truck gets going and reaches a bend
FIXTURE_STEPS = 70
REGENERATE = "python tests/agent/replay_kit.py regenerate"
FIXTURE_SIZE = (160, 120)  # (w, h) of the sim frames (the tiny net sees 64x48)


def fixture_controller_config(steer_gain_scale: float = 1.0):
    """The controller the fixture was driven with: the default one (its steering gain scaled)."""
    from agent.runtime.controller import ControllerConfig

    config = ControllerConfig()
    return replace(config, steer_gain=config.steer_gain * steer_gain_scale)


def fixture_perceiver(card=None):
    """The Perceiver the fixture was driven with (``card``: another model card for its input, e.g.
    other normalisation, to see the replay catch a preprocessing change)."""
    import torch

    from perception.perceiver import Perceiver
    from drive_kit import load_tiny_ensemble

    torch.set_num_threads(1)
    perceiver = load_tiny_ensemble()
    if card is not None:
        perceiver = Perceiver(perceiver.direction_model, None, direction_card=card, device="cpu")
    return perceiver


def record_fixture(out: Path, controller_config=None, perceiver=None) -> Path:
    """Record the fixture's drive into ``out`` (a new directory), with the parts ``truckpilot drive --sim``
    drives with (``open_sim``, ``run_loop``, ``DriveRecorder``): the agent drives FIXTURE_WARMUP steps
    unrecorded (from standstill it first steers about 190 steps in), then FIXTURE_STEPS recorded ones
    with a fresh Controller (what a replay starts from)."""
    from agent.apps.drive import DriveRecorder
    from agent.runtime.controller import Controller
    from agent.runtime.loop import open_sim, run_loop
    from perception.types import DEFAULT_DETECTION_CLASSES

    perceiver = perceiver or fixture_perceiver()
    config = controller_config or fixture_controller_config()
    width, height = FIXTURE_SIZE
    source, keys_out = open_sim(seed=FIXTURE_SEED, size=FIXTURE_SIZE, time_of_day="day", weather="clear",
                                traffic=0.0)
    recorder = None
    try:
        run_loop(source, perceiver, Controller(config), keys_out, max_steps=FIXTURE_WARMUP)
        recorder = DriveRecorder(out, source={"kind": "sim", "driver": "model", "seed": FIXTURE_SEED,
                                              "time_of_day": "day", "weather": "clear", "dt": source.dt,
                                              "warmup_steps": FIXTURE_WARMUP, "made_by": REGENERATE,
                                              "controller": config.to_record()},
                                 width=width, height=height, fps=0.0, classes=DEFAULT_DETECTION_CLASSES,
                                 image_format="png")
        run_loop(source, perceiver, Controller(config), keys_out, max_steps=FIXTURE_STEPS, recorder=recorder)
    finally:
        keys_out.close()
        if recorder is not None:
            recorder.close()
        source.close()
    return out


def regenerate(out: Path = FIXTURE, steer_gain_scale: float = 1.0) -> int:
    from agent.runtime.replay import replay_session

    config = fixture_controller_config(steer_gain_scale)
    perceiver = fixture_perceiver()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = record_fixture(Path(tmp) / "drive", config, perceiver)
        report = replay_session(fresh, fixture_perceiver(), config)
        print(report.summary())
        if not report.ok:
            print("the fresh recording does not replay to itself; the fixture was left as it was", file=sys.stderr)
            return 1
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fresh, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({report.frames} frames, {size / 1024:.0f} KiB)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/agent/replay_kit.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    regen = sub.add_parser("regenerate", help="re-record the replay fixture on purpose")
    regen.add_argument("--out", type=Path, default=FIXTURE)
    regen.add_argument("--steer-gain-scale", type=float, default=1.0,
                       help="record with the default steering gain times this (default 1)")
    args = parser.parse_args(argv)
    return regenerate(args.out, args.steer_gain_scale)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())

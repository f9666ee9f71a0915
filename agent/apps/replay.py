"""``truckpilot replay``: run perception and control over a recorded drive and compare with the recording.

    truckpilot replay sessions/d1 --model dir.safetensors --detector det.safetensors
    truckpilot replay sessions/d1 --model dir.safetensors --set steer_gain=0.6 --json replay.json

SESSION is a drive recorded by ``truckpilot drive --sim --record DIR``. Each frame goes through the
agent's tick (Perceiver -> Controller -> PWM keys) in order, from a fresh controller, on the clock
and speed the drive had; the keys and direction must be the recorded ones exactly, steer within
--steer-tol (default 1e-4), throttle / brake within 1e-3 (older sessions hold the speed rounded), the
direction probabilities and box scores within 2e-4 (rounded to 4 decimals when recorded), box
corners within 0.05 px. Give the checkpoints the drive used. The controller settings come from the
session (the drive records them); --set NAME=VALUE changes a ControllerConfig field of them (for a
session recorded before they were kept: --target-speed, --time-scale and --set on the defaults). The networks run
in float32 (--engine torch, default, or onnxruntime) on one thread, so a replay is deterministic.

Prints how many frames differ per field and the first differing frame with both values; exit 0
when everything matches, 1 on a mismatch, 2 on a usage error or an unreadable session / checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
#: float32 engines only: int8 is not the deterministic reference a replay compares with
REPLAY_ENGINES = ("torch", "onnxruntime")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", metavar="SESSION", help="a session recorded by `truckpilot drive --sim --record`")
    p.add_argument("--model", metavar="CKPT", help="direction classifier checkpoint (.safetensors)")
    p.add_argument("--detector", metavar="CKPT", help="SSD detector checkpoint (.safetensors)")
    p.add_argument("--engine", choices=REPLAY_ENGINES, default="torch",
                   help="float32 inference engine on the CPU (default torch)")
    p.add_argument("--target-speed", type=float, help="the drive's --target-speed, m/s (default 12)")
    p.add_argument("--time-scale", type=float, default=1.0, help="the drive's --time-scale (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a ControllerConfig field the drive had changed, e.g. steer_gain=0.6 (repeatable)")
    p.add_argument("--steer-tol", type=float, default=1e-4, help="largest |steer difference| that matches (1e-4)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE ('-' = stdout)")
    return p


def controller_config_from_args(args: argparse.Namespace, recorded: dict | None = None):
    """The ControllerConfig to replay with; ValueError naming a bad option.

    recorded: the settings the drive kept in its manifest (``source["controller"]``, sessions
    recorded since 2026-12-06): they are the base, and --set changes fields of it (--target-speed
    and --time-scale are then refused: they are in the record already). Without a record (older
    sessions): the default settings with --target-speed, --time-scale and --set.
    """
    from agent.apps.cli_args import with_settings
    from agent.apps.drive import controller_config_for_time_scale
    from agent.runtime.controller import ControllerConfig

    if recorded is not None:
        if args.target_speed is not None or args.time_scale != 1.0:
            raise ValueError("the session records the drive's controller settings (target speed and time scale "
                             "included): leave out --target-speed / --time-scale, change a field with --set")
        config = ControllerConfig.from_record(recorded)
    else:
        config = ControllerConfig() if args.target_speed is None else ControllerConfig(target_speed_mps=args.target_speed)
    config = with_settings(config, args.set)
    return config if recorded is not None else controller_config_for_time_scale(config, args.time_scale)


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    if not args.model and not args.detector:
        print("truckpilot replay: give --model CKPT (direction classifier) and/or --detector CKPT", file=sys.stderr)
        return EXIT_ERROR
    from agent.runtime.replay import ReplayError, Tolerances, open_drive_session, replay_session

    try:
        session = open_drive_session(args.session)
    except ReplayError as exc:
        print(f"truckpilot replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        config = controller_config_from_args(args, session.manifest.source.get("controller"))
    except ValueError as exc:
        print(f"truckpilot replay: {args.session}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for path in (args.model, args.detector):
        if path and not Path(path).is_file():
            print(f"truckpilot replay: {path}: no such checkpoint file", file=sys.stderr)
            return EXIT_ERROR
    import torch

    from agent.apps.drive import load_perceiver
    from perception.checkpoint import CheckpointError

    torch.set_num_threads(1)
    try:
        perceiver = load_perceiver(args.model, args.detector, "cpu", engine=args.engine, threads=1)
    except (CheckpointError, ValueError, OSError, RuntimeError) as exc:
        print(f"truckpilot replay: cannot load the checkpoints: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        report = replay_session(session, perceiver, config, tolerances=Tolerances(steer=args.steer_tol))
    except ReplayError as exc:
        print(f"truckpilot replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(report.summary(), flush=True)
    if args.json:
        text = json.dumps(report.to_dict(), indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return EXIT_OK if report.ok else EXIT_MISMATCH

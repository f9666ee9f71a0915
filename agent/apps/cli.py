"""The ``truckpilot`` command: a thin dispatcher over subcommands.

Each subcommand lives in its own module with ``main(argv: list[str]) -> int``
and is imported only when asked for, so ``truckpilot sim`` never imports
torch and ``truckpilot --help`` starts instantly.
"""
from __future__ import annotations

import importlib
import logging
import sys

#: subcommand -> (module with ``main(argv)``, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("sim.cli", "drive the simulator by hand, or save a contact sheet"),
    "record": ("agent.apps.record", "record a session from the simulator or a game window"),
    "label": ("agent.recording.labeller", "review and correct a session's labels in a window"),
    "sessions": ("agent.apps.sessions", "ls | show | verify | export recorded sessions"),
    "train": ("training.cli", "fine-tune the direction classifier or the SSD detector"),
    "evaluate": ("training.evaluate_cli", "evaluate a checkpoint on sessions"),
    "export": ("training.export", "export a checkpoint (ONNX)"),
    "drive": ("agent.apps.drive", "the live driving loop"),
    "replay": ("agent.apps.replay", "replay a recorded drive through perception and control; compare with it"),
    "eval": ("agent.apps.scorecard", "closed-loop scorecard in the simulator"),
    "scenario": ("agent.apps.stop_scenario", "scripted scenarios in the simulator: stopped-vehicle (does it brake?)"),
    "doctor": ("agent.apps.doctor", "check display, capture, keys, GPU and weights"),
    "demo": ("agent.apps.demo", "record, train and drive on the simulator; write a report"),
    "dagger": ("agent.apps.dagger", "DAgger in the simulator: the agent drives, the expert labels and takes over, "
                                    "fine-tune, score each round"),
    "pretrain": ("agent.apps.pretrain", "make the starting pair on the simulator; --publish packs it (fp16) with "
                                        "its model card"),
    "bench": ("agent.apps.bench", "speed benchmarks"),
    "telemetry": ("agent.apps.telemetry", "print the game's SCS telemetry (or the simulator's): speed, inputs, pause"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: truckpilot COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "truckpilot COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"truckpilot: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``truckpilot telemetry``: print the game's telemetry (SCS Telemetry plugin), or the simulator's.

    truckpilot telemetry                          # one reading from the plugin's block
    truckpilot telemetry --path /tmp/sim.tlm --json
    truckpilot telemetry --follow --hz 5          # until Ctrl-C (or --count N readings)

Read-only: nothing is written to the block. Exit code 1 with the reason (path,
revision, size) when the block cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from agent.io.telemetry import TelemetryError, TelemetryReading, TelemetrySource


def format_reading(r: TelemetryReading) -> str:
    """One human line: state, speed, user and game inputs, cruise control."""
    state = ("paused" if r.paused else "running") if r.sdk_active else "sdk inactive"
    cruise = f"on at {r.cruise_control_speed_m_s * 3.6:.0f} km/h" if r.cruise_control else "off"
    return (f"rev {r.revision} {r.game} {r.version_major}.{r.version_minor} | {state} | t={r.time_us / 1e6:.2f} s | "
            f"{r.speed_m_s * 3.6:.1f} km/h ({r.speed_m_s:.2f} m/s) | "
            f"user steer {r.user_steer:+.2f} throttle {r.user_throttle:.2f} brake {r.user_brake:.2f} | "
            f"game steer {r.game_steer:+.2f} throttle {r.game_throttle:.2f} brake {r.game_brake:.2f} | "
            f"cruise {cruise}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="truckpilot telemetry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", metavar="FILE", default=None,
                        help="read this file (e.g. the one of `truckpilot sim --telemetry FILE`); default: the "
                             "plugin's block (Windows Local\\SCSTelemetry; Linux /dev/shm/SCSTelemetry or "
                             "/dev/shm/SCS/SCSTelemetry)")
    parser.add_argument("--json", action="store_true", help="print each reading as one JSON object")
    parser.add_argument("--follow", action="store_true", help="keep printing readings")
    parser.add_argument("--hz", type=float, default=2.0, help="with --follow: readings per second (default 2)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="with --follow: stop after N readings")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.hz <= 0:
        print("truckpilot telemetry: --hz must be > 0", file=sys.stderr)
        return 2
    try:
        with TelemetrySource.open(args.path) as source:
            printed = 0
            while True:
                reading = source.read()
                print(json.dumps(reading.as_dict()) if args.json else format_reading(reading), flush=True)
                printed += 1
                if not args.follow or (args.count is not None and printed >= args.count):
                    return 0
                time.sleep(1.0 / args.hz)
    except TelemetryError as exc:
        print(f"truckpilot telemetry: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

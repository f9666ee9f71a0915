"""``truckpilot record --out DIR``: record a session from the simulator (default) or a real game window.

Examples::

    truckpilot record --out sessions/s1 --autopilot --headless --frames 5000 --seed 3
    truckpilot record --out sessions/s2 --minutes 10                # you drive the sim (arrows / WASD)
    truckpilot record --out sessions/s3 --window "Euro Truck Simulator 2" --fps 10 --size 640x360
    truckpilot record --out sessions/s4 --region 0,0,1280,720 --fps 15
"""
from __future__ import annotations

import argparse
import logging
import sys

from agent.apps.cli_args import region_arg, size_arg

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_DISK_FULL = 0, 1, 3


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot record", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the new session directory (must not exist or be empty)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--frames", type=int, help="stop after this many frames")
    budget.add_argument("--minutes", type=float, help="stop after this many minutes")
    budget.add_argument("--seconds", type=float, help="stop after this many seconds")
    src = p.add_argument_group("simulator (the default source)")
    src.add_argument("--autopilot", action="store_true", help="the scripted expert drives (a held key takes over)")
    src.add_argument("--headless", action="store_true", help="no window, as fast as possible (needs --autopilot)")
    src.add_argument("--perturb", type=float, default=0.0, metavar="PER_S",
                     help="autopilot steering disturbances per simulated second (recovery data; e.g. 0.4)")
    src.add_argument("--seed", type=int, default=0, help="simulator seed (road, traffic; conditions if not given)")
    src.add_argument("--traffic", type=float, default=1.0, help="traffic density (0 = empty road; default 1)")
    src.add_argument("--stopped-per-km", type=float, default=0.0,
                     help="broken-down vehicles standing in the truck's lane per km (default 0)")
    src.add_argument("--stand-behind-stopped", action="store_true",
                     help="with --autopilot: never pass a broken-down vehicle, brake and stand ~7 m behind it "
                          "(frames of the approach to a vehicle straight ahead, which the agent must brake for)")
    src.add_argument("--time-of-day", choices=("day", "dusk", "night"), help="default: picked by the seed")
    src.add_argument("--weather", choices=("clear", "fog", "rain"), help="default: picked by the seed")
    src.add_argument("--sim-size", type=size_arg, default=(320, 240), help="simulator frame size (default 320x240)")
    src.add_argument("--min-box-height", type=float, default=4.0, metavar="PX",
                     help="boxes shorter than PX frame pixels are not labelled (default 4, for 320x240; "
                          "scale it with --sim-size to label the same objects, e.g. 8 at 640x480)")
    src.add_argument("--scale", type=int, default=2, help="window zoom when a person drives (default 2)")
    game = p.add_argument_group("real game (capture with mss, keys from X11 / GetAsyncKeyState)")
    game.add_argument("--window", metavar="TITLE", help="capture the window whose title contains TITLE")
    game.add_argument("--region", type=region_arg, metavar="X,Y,W,H",
                      help="screen region; with --window, a crop inside the window")
    game.add_argument("--size", type=size_arg, help="resize captured frames to WxH before saving")
    game.add_argument("--display", help="X display (default $DISPLAY)")
    game.add_argument("--telemetry", default="auto", metavar="PATH|auto|off",
                      help="the game's SCS Telemetry block (scs-sdk-plugin) for per-frame speed, continuous "
                           "steering, pedals and pause: auto (default: where the plugin puts it, when it is there), "
                           "a file (e.g. a `truckpilot sim --telemetry PATH`), or off")
    p.add_argument("--fps", type=float, help="frame rate: capture rate for a game (default 10), "
                                             "window rate when a person drives the sim (default 15)")
    p.add_argument("--image-format", choices=("png", "jpg"),
                   help="default: png for the simulator (lossless, ~2 KB/frame), jpg q95 4:4:4 for a game "
                        "(PNG of textured game frames is ~10x larger and ~10x slower)")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    from agent.recording import recorder
    from training.sessions import SessionError

    seconds = args.seconds if args.seconds is not None else (args.minutes * 60 if args.minutes is not None else None)
    try:
        if args.window or args.region:
            result = recorder.record_window(
                args.out, window_title=args.window, region=args.region, fps=args.fps or 10.0, frames=args.frames,
                seconds=seconds, size=args.size, image_format=args.image_format or "jpg",
                progress=not args.no_progress, display_name=args.display,
                telemetry=None if args.telemetry == "off" else args.telemetry,
            )
        else:
            if args.headless and not args.autopilot:
                print("truckpilot record: --headless needs --autopilot (nobody can drive without a window)",
                      file=sys.stderr)
                return 2
            width, height = args.sim_size
            result = recorder.record_sim(
                args.out, seed=args.seed, time_of_day=args.time_of_day, weather=args.weather, width=width,
                height=height, autopilot=args.autopilot, headless=args.headless, frames=args.frames,
                seconds=seconds, fps=args.fps or 15.0, scale=args.scale, image_format=args.image_format or "png",
                progress=not args.no_progress, perturb=args.perturb,
                min_box_height_px=args.min_box_height, traffic=args.traffic, stopped_per_km=args.stopped_per_km,
                pass_stopped=not args.stand_behind_stopped,
            )
    except (SessionError, ValueError, LookupError) as exc:  # bad options, session exists, window not found
        print(f"truckpilot record: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as exc:  # no X display / no XTest, capture failures: say what, keep the trace in the log
        log.debug("record failed", exc_info=True)
        print(f"truckpilot record: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if result.stopped_by == "disk_full":
        print(f"truckpilot record: stopped: {result.message}", file=sys.stderr)
        return EXIT_DISK_FULL
    if result.stopped_by == "error":
        print(f"truckpilot record: stopped: {result.message}", file=sys.stderr)
        return EXIT_ERROR
    print(result.message)
    return EXIT_OK

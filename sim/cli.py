"""``truckpilot sim``: drive the simulator in a window, or save a contact sheet.

    truckpilot sim                       # drive with arrow keys or WASD; Esc quits
    truckpilot sim --autopilot --title "TruckSim" --size 640x480
    truckpilot sim --contact-sheet out.png
    truckpilot sim --autopilot --telemetry /dev/shm/SCSTelemetry   # publish SCS telemetry (rev 12)
    truckpilot sim --scs-controls /dev/shm/SCS/SCSControls         # analog input, as the SCS input plugin

In the window, the driving keys are read with ``pygame.key.get_pressed()``
every frame, so key presses injected with X11 XTest by another process drive
the truck just like a keyboard. P pauses and resumes.

With ``--scs-controls PATH`` the window also plays the game's side of ETS2LA's
SCS SDK input plugin (scs-sdk-controller): it makes the plugin's controls block
at PATH and reads its steering, accelerator and brake axes every frame
(``sim.scs_controls``). A held steering key overrides the steering axis; each
pedal is the larger of its key and its axis (``mix_controls``). With the axes
neutral the keyboard drives exactly as without the option.

A joystick or gamepad is a third input (``--joystick auto``, the default: the first
one SDL finds; ``sim.joystick``): its steering and pedal axes are mixed in the same
way, each axis taking whichever analog input (the block or the joystick) asks for
more.
"""
from __future__ import annotations

import argparse
import logging
import time

from .config import DEFAULT_DT, TIMES_OF_DAY, WEATHERS, SimConfig, parse_size
from .scs_controls import ControlsDevice, mix_controls
from .scs_controls_layout import LAYOUTS, NEWEST
from .joystick import JoystickInput, JoystickLayout, strongest
from .scs_telemetry import TelemetryPublisher, frame_from_sim
from .judge import RouteJudge, Verdict
from .steplog import StepLog, StepRecord, frame_print, keys_text
from .truck import TruckControls

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="road, traffic and conditions seed")
    p.add_argument("--size", default="640x480", help="frame size WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--scale", type=float, default=1.0, help="window = frame size x this")
    p.add_argument("--time-of-day", choices=TIMES_OF_DAY, default=None, help="default: picked by the seed")
    p.add_argument("--weather", choices=WEATHERS, default=None, help="default: picked by the seed")
    p.add_argument("--traffic", type=float, default=1.0, help="traffic density (0 = empty road)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--autopilot", action="store_true", help="the scripted expert drives")
    who.add_argument("--scs-controls", metavar="PATH", default=None,
                     help="also drive with the analog axes another program writes in this SCS input plugin "
                          "block (scs-sdk-controller's layout; made and zeroed here), e.g. /dev/shm/SCS/SCSControls")
    p.add_argument("--title", default="TruckPilot sim", help="window title (capture tools find the window by it)")
    p.add_argument("--seconds", type=float, default=None, help="quit after this many seconds (for tests)")
    p.add_argument("--log-every", type=float, default=5.0, metavar="SECONDS",
                   help="log time, speed, distance and direction every this many simulated seconds (default 5)")
    p.add_argument("--fps", type=float, default=1.0 / DEFAULT_DT, help="frames per second (simulated dt = 1/15 s each)")
    p.add_argument("--telemetry", metavar="PATH", default=None,
                   help="publish the SCS Telemetry plugin's block (revision 12) in this file each frame, "
                        "e.g. /dev/shm/SCSTelemetry; read it with `truckpilot telemetry --path PATH`")
    p.add_argument("--step-log", metavar="PATH", default=None,
                   help="write one JSON line per step: when its keys were read, which, when its frame was shown, "
                        "the frame's fingerprint, distance and offset (sim.steplog; for timing studies)")
    p.add_argument("--route-m", type=float, default=None, help="route length, m (default: the sim's, 5000)")
    p.add_argument("--once", action="store_true", help="quit when the episode ends (default: start the next)")
    p.add_argument("--judge", action="store_true",
                   help="judge the driver as `truckpilot eval` does (sim.judge): on an intervention the expert "
                        "takes over, then hands back; the route ends the run (implies --once)")
    p.add_argument("--budget-steps", type=int, default=None,
                   help="with --judge: end the route after this many steps (the scorecard's time budget)")
    p.add_argument("--summary", metavar="PATH", default=None,
                   help="write the run's summary as JSON here at exit (with --judge: the route's counts)")
    p.add_argument("--joystick", default="auto", metavar="auto|off|N",
                   help="drive with a joystick / gamepad's axes too: auto (default: the first SDL finds, if any), "
                        "off, or joystick N")
    p.add_argument("--joystick-axes", default="0,5,2", metavar="S,T,B",
                   help="the joystick's steering, accelerator and brake axes (SDL order; default 0,5,2: an Xbox "
                        "pad on Linux, and TruckPilot's uinput gamepad; -1: no such pedal)")
    p.add_argument("--scs-controls-version", choices=list(LAYOUTS), default=NEWEST,
                   help=f"the plugin version whose block --scs-controls makes (default {NEWEST}, the newest)")
    p.add_argument("--contact-sheet", metavar="PNG", default=None,
                   help="save a grid of frames (seeds x every condition) with ground-truth boxes, then exit")
    p.add_argument("--sheet-seeds", type=int, default=3, help="seeds (columns) in the contact sheet")
    p.add_argument("--sheet-steps", type=int, default=700,
                   help="per frame, the expert drives up to this many steps and the busiest frame is kept")
    return p


def _publish(publisher, controls: TruckControls, info: dict, simulated_s: float, wall_s: float,
             paused: bool) -> None:
    """Write this frame's telemetry (``controls``: the driver's input this frame) when publishing."""
    if publisher is not None:
        publisher.publish(frame_from_sim(controls, truck_steer=info["steer"], speed_m_s=info["speed"], paused=paused,
                                         simulated_s=simulated_s, wall_s=wall_s))


def drive(args) -> dict:
    """The interactive loop; returns a summary of the drive."""
    import pygame

    from .env import TruckSimEnv
    from .expert import Expert

    width, height = parse_size(args.size)
    config = SimConfig(width=width, height=height, time_of_day=args.time_of_day, weather=args.weather,
                       traffic_density=args.traffic, window_title=args.title, human_scale=args.scale,
                       **({"route_length_m": args.route_m} if args.route_m else {}))
    publisher = TelemetryPublisher(args.telemetry) if args.telemetry else None  # a bad path fails before the window
    try:  # a bad --joystick / --joystick-axes, or no such joystick: one line, before any window opens
        joystick = JoystickInput.open(args.joystick, JoystickLayout.parse(args.joystick_axes))
    except ValueError as exc:
        raise SystemExit(f"truckpilot sim: {exc}") from None
    if joystick is not None:
        log.info("joystick %r drives too (axes steer/throttle/brake %s)", joystick.name, args.joystick_axes)
    device = ControlsDevice(args.scs_controls, args.scs_controls_version) if args.scs_controls else None
    env = TruckSimEnv(render_mode="human", config=config)
    expert = Expert(seed=args.seed, dt=config.dt) if args.autopilot else None
    judge = RouteJudge(config.route_length_m, config.dt) if args.judge else None
    rescuer = Expert(seed=args.seed, dt=config.dt) if args.judge else None  # takes over at an intervention
    rescued_steps = 0
    wall_start = None
    step_log = StepLog(args.step_log) if args.step_log else None
    obs, info = env.reset(seed=args.seed)
    if step_log is not None:
        step_log.write(StepRecord(0, None, "----", time.monotonic(), frame_print(obs), float(info["distance"]),
                                  float(info["lateral_offset"])))
    clock = pygame.time.Clock()
    start = time.monotonic()
    steps, episodes, quit_reason = 0, 1, "seconds"
    events_seen: dict[str, int] = {}
    keys_down_steps = analog_steps = 0
    paused = False
    try:
        while True:
            stop = False
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    stop = True
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_p:
                    paused = not paused
            if stop:
                quit_reason = "user"
                break
            pressed = pygame.key.get_pressed()
            t_keys = time.monotonic()
            keys = [pressed[pygame.K_LEFT] or pressed[pygame.K_a], pressed[pygame.K_RIGHT] or pressed[pygame.K_d],
                    pressed[pygame.K_UP] or pressed[pygame.K_w], pressed[pygame.K_DOWN] or pressed[pygame.K_s]]
            keys_down_steps += any(keys)
            reading = strongest(device.read() if device is not None else None,
                                joystick.read() if joystick is not None else None)
            if reading is not None:  # the plugin's axes and the joystick's, mixed with the keys
                analog_steps += (reading.steering, reading.aforward, reading.abackward) != (0.0, 0.0, 0.0)
                controls = mix_controls(reading, left=bool(keys[0]), right=bool(keys[1]), throttle=bool(keys[2]),
                                        brake=bool(keys[3]))
            else:
                controls = TruckControls.from_keys(*(bool(k) for k in keys))
            if paused:  # the world stands still; the window and the telemetry stay live
                _publish(publisher, controls, info, steps * config.dt, time.monotonic() - start, paused=True)
                if args.seconds is not None and time.monotonic() - start >= args.seconds:
                    break
                clock.tick(args.fps)
                continue
            used = [bool(k) for k in keys]
            if expert is not None:
                used = [bool(k) for k in expert.act(env)]
                controls = TruckControls.from_keys(*used)
            if judge is not None and not judge.in_control:  # the expert rescues; the driver's keys wait
                used = [bool(k) for k in rescuer.act(env)]
                controls = TruckControls.from_keys(*used)
                rescued_steps += 1
            before_m = float(info["distance"])
            if wall_start is None:
                wall_start = time.monotonic()
            obs, _, terminated, truncated, info = env.step(controls)
            steps += 1
            if step_log is not None:
                step_log.write(StepRecord(steps, t_keys, keys_text(*used), time.monotonic(), frame_print(obs),
                                          float(info["distance"]), float(info["lateral_offset"])))
            _publish(publisher, controls, info, steps * config.dt, time.monotonic() - start, paused=False)
            for e in info["events"]:
                events_seen[e] = events_seen.get(e, 0) + 1
            if steps % max(1, int(round(args.log_every / DEFAULT_DT))) == 0:
                log.info("t=%.0fs %.0f km/h %.0f m %s", time.monotonic() - start, info["speed"] * 3.6,
                         info["distance"], info["direction"])
            if judge is not None:
                verdict = judge.step(used[0], used[1], before_m, info, terminated, truncated)
                if verdict is Verdict.TAKEOVER:
                    rescuer.reset()
                    log.info("intervention %d at %.0f m (%s)", judge.interventions, info["distance"],
                             ",".join(info["events"]) or "offset")
                if verdict is Verdict.END or (args.budget_steps is not None and judge.steps >= args.budget_steps):
                    quit_reason = "route over"
                    break
            if terminated or truncated:
                if args.once:
                    quit_reason = "episode over"
                    break
                log.info("episode over after %.0f m (%s); restarting", info["distance"], ",".join(info["events"]) or "route done")
                episodes += 1
                obs, info = env.reset(seed=args.seed + episodes - 1)
                if step_log is not None:
                    step_log.write(StepRecord(steps, None, "----", time.monotonic(), frame_print(obs),
                                              float(info["distance"]), float(info["lateral_offset"])))
            if args.seconds is not None and time.monotonic() - start >= args.seconds:
                break
            clock.tick(args.fps)
    finally:
        env.close()
        if step_log is not None:
            step_log.close()
        if publisher is not None:
            publisher.close()
        if device is not None:
            device.close()
        if joystick is not None:
            joystick.close()
    summary = {"steps": steps, "episodes": episodes, "distance_m": round(info["distance"], 2),
               "speed_m_s": round(info["speed"], 2), "keys_down_steps": keys_down_steps,
               "analog_steps": analog_steps, "events": events_seen,
               "quit": quit_reason}
    print("sim summary:", " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    if args.summary:
        import json
        from pathlib import Path

        wall = time.monotonic() - wall_start if wall_start is not None else 0.0
        full = {**summary, "seed": args.seed, "time_of_day": info.get("time_of_day"), "weather": info.get("weather"),
                "dt": config.dt, "wall_s": round(wall, 3),
                "realtime_ratio": round(steps * config.dt / wall, 4) if wall > 0 else None,
                "rescued_steps": rescued_steps, "judge": judge.to_dict() if judge is not None else None}
        Path(args.summary).write_text(json.dumps(full, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.contact_sheet:
        from .contact_sheet import make_contact_sheet

        width, height = parse_size("320x240" if args.size == "640x480" else args.size)
        path = make_contact_sheet(args.contact_sheet, seeds=range(args.sheet_seeds), width=width, height=height,
                                  min_steps=min(60, args.sheet_steps // 2), max_steps=args.sheet_steps)
        print(f"contact sheet written to {path}")
        return 0
    drive(args)
    return 0

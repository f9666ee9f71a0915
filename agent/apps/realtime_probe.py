"""Measure the real-time drive: frame age, key landing, dropped frames, PWM phase; idle and busy.

    python -m agent.apps.realtime_probe --tiny --runs 2 --busy both --json probe.json
    python -m agent.apps.realtime_probe --model dir.safetensors --seed 3 --route-m 1000

Each run drives one route live (``agent.apps.live_sim``: the sim window in real time, mss
capture, XTest keys under the guard) with the sim logging every step, then joins the sim's
steps with the agent's ticks (``agent.tools.realtime_probe.join``) and prints the figures,
with the route's outcome as the sim judged it. ``--busy`` adds a busy loop pinned to one
core (``taskset -c 0 python -c "while True: pass"``) during the drive. The same route is
also driven in-process (the scorecard's ``drive_route``, sim clock) for comparison.

``--tiny``: the end-to-end test's model, the test kit's published tiny-CNN ensemble
(tests/agent/data/e2e_direction.pt, or ``--tiny-cache FILE``, written by
``python tests/agent/drive_kit.py train``), with its controller (cruise throttle 0.4, no
speed). Without a display ($DISPLAY) a private Xvfb is started.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from agent.apps.live_sim import LiveRoute, drive_live, x_display
from agent.tools.realtime_probe import BusyCore

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


def tiny_perceiver_and_config(checkpoint: str | None = None):
    """The e2e test's model and controller settings (tests/agent/drive_kit.py). checkpoint: a
    tiny-ensemble file (None: the published tests/agent/data/e2e_direction.pt)."""
    import torch

    sys.path.insert(0, str(REPO / "tests" / "agent"))
    from drive_kit import E2E_CHECKPOINT, e2e_controller_config, load_tiny_ensemble  # noqa: E402  (the test kit)

    torch.set_num_threads(1)
    return load_tiny_ensemble(Path(checkpoint) if checkpoint else E2E_CHECKPOINT), e2e_controller_config()


class JitteredClock:
    """A decider whose controller clock is the sim time plus U(0, ``jitter_s``) s per frame: the
    grab-time clock of a live drive (a new frame is grabbed up to one poll period after it
    appeared), replayed in-process where everything else is exact. Optionally through a
    ``FrameClock`` (``frame_clock=True``), as the live loop's CaptureSource times frames, the
    grab one poll period (``jitter_s``) earlier showing the previous frame."""

    def __init__(self, decider, jitter_s: float, seed: int = 0, frame_clock: bool = False) -> None:
        import numpy as np

        from agent.runtime.frame_clock import FrameClock

        self.decider, self.jitter_s = decider, jitter_s
        self.name = getattr(decider, "name", "agent")
        self._rng = np.random.default_rng(seed)
        self._clock = FrameClock() if frame_clock else None

    def reset(self) -> None:
        self.decider.reset()
        if self._clock is not None:
            self._clock.reset()

    def decide(self, observation):
        from dataclasses import replace

        t = observation.clock_s + float(self._rng.uniform(0.0, self.jitter_s))
        if self._clock is not None:  # as live: the grab before this one still showed the old frame
            self._clock.observe(t - self.jitter_s, new=False)
            t = self._clock.observe(t, new=True)
        return self.decider.decide(replace(observation, clock_s=t))


def in_process(perceiver, config, route: LiveRoute, clock_jitter_s: float = 0.0, jitter_seed: int = 0,
               frame_clock: bool = False) -> dict:
    """The same route in-process (sim clock), judged the same way; the agent without speed.
    clock_jitter_s > 0: the controller's clock jitters as a live grab clock does (JitteredClock)."""
    from agent.apps.scorecard import ScorecardConfig, drive_route
    from agent.runtime.controller import Controller
    from agent.runtime.parts import AgentDecider

    budget = route.budget_steps or int(route.route_m / 2.0 * 15)
    decider = AgentDecider(perceiver, Controller(config), use_speed=False)
    if clock_jitter_s > 0:
        decider = JitteredClock(decider, clock_jitter_s, jitter_seed, frame_clock=frame_clock)
    score = drive_route(decider, route.seed, route.time_of_day, route.weather, budget,
                        ScorecardConfig(route_m=route.route_m, traffic_density=route.traffic), name="agent")
    return {"distance_m": round(score.distance_m, 1), "finished": score.finished,
            "interventions": score.interventions, "collisions": score.collisions}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.apps.realtime_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--tiny", action="store_true", help="the e2e test's tiny-CNN ensemble (published with the tests)")
    who.add_argument("--model", metavar="CKPT", help="a direction checkpoint")
    p.add_argument("--tiny-cache", metavar="FILE", help="with --tiny: another tiny-ensemble checkpoint (python tests/agent/drive_kit.py train --out FILE)")
    p.add_argument("--seed", type=int, default=3, help="the road (default 3, the e2e test's)")
    p.add_argument("--route-m", type=float, default=600.0)
    p.add_argument("--traffic", type=float, default=0.0)
    p.add_argument("--condition", default="day/clear")
    p.add_argument("--runs", type=int, default=1, help="drives per load case")
    p.add_argument("--busy", choices=("no", "yes", "both"), default="no", help="a busy loop holding one core")
    p.add_argument("--agent-fps", type=float, default=30.0)
    p.add_argument("--jitter-runs", type=int, default=0,
                   help="also drive the route in-process this many times with the controller's clock jittered "
                        "by U(0, --jitter-ms) per frame, as a capture clock is (JitteredClock)")
    p.add_argument("--jitter-ms", type=float, default=33.3, help="the clock jitter of --jitter-runs (one poll period)")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process drive of the route")
    p.add_argument("--keep", metavar="DIR", help="keep each run's sim step log, summary and the agent's ticks here")
    p.add_argument("--json", metavar="FILE", help="write every run's figures here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        perceiver, config = tiny_perceiver_and_config(args.tiny_cache)
    else:
        from agent.apps.drive import load_perceiver

        perceiver, config = load_perceiver(args.model, None), None
    tod, weather = args.condition.split("/")
    route = LiveRoute(args.seed, tod, weather, args.route_m, args.traffic, budget_steps=int(2 * args.route_m / 10 * 15))
    results = []
    if not args.no_in_process:
        ref = in_process(perceiver, config, route)
        print(f"in-process: {ref}", flush=True)
        results.append({"case": "in-process", **ref})
    for k in range(args.jitter_runs):
        for frame_clock in (False, True):
            ref = in_process(perceiver, config, route, clock_jitter_s=args.jitter_ms / 1e3, jitter_seed=k,
                             frame_clock=frame_clock)
            how = "through a FrameClock" if frame_clock else "raw"
            print(f"in-process, controller clock + U(0, {args.jitter_ms:g} ms) {how}, seed {k}: {ref}", flush=True)
            results.append({"case": "in-process-jitter", "jitter_ms": args.jitter_ms, "frame_clock": frame_clock,
                            "seed": k, **ref})
    cases = {"no": [False], "yes": [True], "both": [False, True]}[args.busy] if args.runs else []
    with x_display() as display, tempfile.TemporaryDirectory(prefix="probe-") as scratch:
        tmp = args.keep or scratch
        for busy in cases:
            for run in range(args.runs):
                t0 = time.monotonic()
                if busy:
                    with BusyCore(0):
                        drive = drive_live(perceiver, route, controller_config=config, display=display,
                                           workdir=Path(tmp) / f"{busy}-{run}", agent_fps=args.agent_fps)
                else:
                    drive = drive_live(perceiver, route, controller_config=config, display=display,
                                       workdir=Path(tmp) / f"{busy}-{run}", agent_fps=args.agent_fps)
                judged = drive.summary["judge"]
                if args.keep:  # the agent's ticks beside the sim's step log, for a rerun of the join
                    with open(Path(tmp) / f"{busy}-{run}" / "ticks.jsonl", "w") as f:
                        for t in drive.ticks:
                            f.write(json.dumps(asdict(t)) + "\n")
                head = (f"== {'busy core' if busy else 'idle'} run {run + 1}: {judged['distance_m']:.0f} m, "
                        f"finished {judged['finished']}, interventions {judged['interventions']}, collisions "
                        f"{judged['collisions']}, sim {drive.summary['realtime_ratio']} x real time, "
                        f"{time.monotonic() - t0:.0f} s")
                print(head)
                if drive.report is not None:
                    print(drive.report.summary())
                if drive.stats is not None:
                    print(drive.stats.summary())
                print(flush=True)
                results.append({"case": "busy" if busy else "idle", "run": run, "judge": judged,
                                "realtime_ratio": drive.summary["realtime_ratio"],
                                "report": drive.report.to_dict() if drive.report else None,
                                "stats": drive.stats.to_dict() if drive.stats else None})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

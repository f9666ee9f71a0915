"""One live drive of the simulator, the user's way: the sim in its own window process, in real
time; the agent captures it with mss and presses keys through the X server under the guard
(``drive_window``). Used by ``truckpilot eval --live`` (``agent.apps.scorecard_live``) and the
real-time probe (``agent.apps.realtime_probe``).

The sim window (``python -m sim``) judges the route itself from ground truth (``--judge``,
``sim.judge``: the scorecard's interventions, the expert taking over), logs every step
(``--step-log``, ``sim.steplog``) and writes its summary (``--summary``) when the route is
over; then it closes its window, and the agent's drive ends (capture lost).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from agent.runtime.loop import LoopStats
from agent.tools.realtime_probe import AgentTick, RealtimeReport, TickLog, join
from sim.steplog import StepRecord, read_step_log

#: the sim window's frame rate: real time (dt = 1/15 s per frame)
SIM_FPS = 15.0
#: the agent samples the window twice per sim frame and acts once on each new frame
AGENT_FPS = 30.0


@dataclass(frozen=True)
class LiveRoute:
    """One route: seed, condition, length (m), traffic density, and the step budget (None: none)."""

    seed: int
    time_of_day: str
    weather: str
    route_m: float
    traffic: float = 1.0
    budget_steps: int | None = None


@dataclass(frozen=True)
class LiveDrive:
    """What a live drive left: the loop's LoopStats, the agent's ticks, the sim's steps and its
    summary (``judge``: the route's counts, see ``sim.judge``), and the joined timing report."""

    stats: LoopStats | None
    ticks: list[AgentTick]
    steps: list[StepRecord]
    summary: dict
    report: RealtimeReport | None


@contextmanager
def x_display() -> Iterator[str]:
    """$DISPLAY when set, else a private Xvfb for the duration."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    from agent.io.xvfb import private_xvfb

    with private_xvfb(size=(1024, 768)) as display:
        yield display


class SimWindow:
    """``python -m sim`` in a window of its own (a child process), with its log in a file."""

    def __init__(self, args: list[str], display: str, log_path: Path) -> None:
        env = {**os.environ, "DISPLAY": display, "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
        env.pop("SDL_VIDEODRIVER", None)
        self.log_path = log_path
        self._log = open(log_path, "w")
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "sim", *args], cwd=repo, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def wait_for_window(self, title: str, display: str, timeout_s: float = 30.0) -> None:
        from agent.io.window import find_window

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sim window exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                find_window(title, display)
                return
            except LookupError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log_path.read_text().splitlines()[-lines:])

    def close(self, timeout_s: float = 10.0) -> int:
        """Wait for the sim to exit by itself (route over), else end it; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        finally:
            self._log.close()


def drive_live(perceiver, route: LiveRoute, *, driver: str = "agent", controller_config=None,
               display: str, workdir: Path, title: str | None = None, agent_fps: float = AGENT_FPS,
               sim_fps: float = SIM_FPS, size: tuple[int, int] = (320, 240), max_seconds: float | None = None,
               judge: bool = True) -> LiveDrive:
    """Drive ``route`` live: the sim window judges; ``driver`` is "agent" (Controller + PWM keys),
    "analog" (the same, steering and pedals through the SCS input plugin's block the sim window reads),
    "baseline" (the article's pulses, ``agent.runtime.drivers.BaselineDriver``) or "expert" (the
    sim's own autopilot: no capture, no keys; the reference row).

    max_seconds: wall limit of the drive (default: 3 x the route's budget in sim time + 30 s).
    workdir: where the sim's step log, summary and log go.
    """
    from agent.apps.drive import drive_window

    title = title or f"TruckPilot live sim {route.seed} {os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{driver}-{route.seed}-{route.time_of_day}-{route.weather}"
    step_log, summary_path = workdir / f"{stem}.steps.jsonl", workdir / f"{stem}.summary.json"
    args = ["--title", title, "--size", f"{size[0]}x{size[1]}", "--seed", str(route.seed),
            "--time-of-day", route.time_of_day, "--weather", route.weather, "--traffic", str(route.traffic),
            "--fps", str(sim_fps), "--route-m", str(route.route_m), "--once", "--step-log", str(step_log),
            "--summary", str(summary_path), "--log-every", "5"]
    if judge:
        args.append("--judge")
    if route.budget_steps is not None:
        args += ["--budget-steps", str(route.budget_steps)]
    if driver == "expert":
        args.append("--autopilot")
    controls = None
    if driver == "analog":
        controls = workdir / f"{stem}.SCSControls"  # the sim makes the block; the agent writes it
        args += ["--scs-controls", str(controls)]
    dt = 1.0 / SIM_FPS
    budget_s = (route.budget_steps or route.route_m / 2.0 / dt) * dt
    if max_seconds is None:
        max_seconds = 3.0 * budget_s * SIM_FPS / sim_fps + 30.0
    sim = SimWindow(args, display, workdir / f"{stem}.log")
    stats, ticks = None, TickLog()
    try:
        sim.wait_for_window(title, display)
        if driver == "expert":
            sim.proc.wait(timeout=max_seconds)
        else:
            controller = None
            if driver == "baseline":
                from agent.runtime.drivers import BaselineController

                controller = BaselineController(dt=dt)
            elif driver not in ("agent", "analog"):
                raise ValueError(f"unknown driver {driver!r}")
            stats = drive_window(perceiver, window_title=title, fps=agent_fps, keys="x11", seconds=max_seconds,
                                 controller_config=controller_config, controller=controller, display_name=display,
                                 on_tick=ticks, axes=f"scs-controls:{controls}" if controls is not None else None)
    finally:
        sim.close()
    if not summary_path.exists():
        raise RuntimeError(f"the sim window wrote no summary: {sim.log_tail()}")
    summary = json.loads(summary_path.read_text())
    steps = read_step_log(step_log)
    report = join(steps, ticks.ticks, dt) if ticks.ticks else None
    return LiveDrive(stats, ticks.ticks, steps, summary, report)


"""The driving loop: one tick for every drive, capture -> decide -> keys, at a fixed rate.

A donkeycar-style loop with explicit parts (``LoopParts``), each timed every tick:

    source.grab()            "capture"   a Frame (+ speed, health) from mss or the sim
    scorer.observe(...)      "score"     the previous tick's Transition (the scorecard), when given
    decider.decide(obs)      "perceive"  the agent (``AgentDecider``): a Perception; the Perceiver's own
                                         stages are kept as "perceive.<stage>" (preprocess, direction, ...)
                             "control"   ... then an Action and KeysHeld by PWM (another decider,
                                         e.g. the scorecard's expert: all of it is "control")
    keys_out.send(keys)      "keys"      the key events (sim keys, or X11 / uinput / SendInput
                                         behind the SafetyGuard)
    recorder / hud           "record", "hud" (when given)

plus "frame_to_key": milliseconds from the frame's capture timestamp to the
moment its keys were sent, and "tick": the whole iteration.

``run_ticks`` is the tick; ``run_loop`` is it with the agent as the decider. ``truckpilot drive``
(sim and window), ``truckpilot eval`` (the scorecard's agent, expert and baseline), the
recorders (simulator and game window) and the demo's GIF all drive through it, with their own parts.
It stops after ``max_steps`` ticks or ``max_seconds`` of wall time,
when the source ends (sim episode over, captured window gone), on an
e-stop, when the HUD window is closed, when ``stop_when`` asks, or on Ctrl+C / SIGTERM; whatever the
reason, every key is released before it returns a ``LoopStats``.

Clocks: the controller runs on ``Observation.clock_s``: wall time
(``time.monotonic()``) for a real game, simulated time (step x dt) for the
in-process simulator, so a sim drive is deterministic at any loop speed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import numpy as np

from agent.io.guard_protocol import STALL_RELEASES, DisengageReason, Disengagement
from agent.io.timing import percentiles
from agent.runtime.parts import (  # noqa: F401  (perceive_stage, Scorer ...: the seam, importable from here)
    AgentDecider,
    Decider,
    Decision,
    Hud,
    Recorder,
    Scorer,
    Transition,
    perceive_stage,
)
from agent.types import Frame, HudStats, KeysHeld, StopReason

log = logging.getLogger(__name__)

#: Stages timed by the loop, in display order (plus "perceive.<stage>" from the Perceiver).
LOOP_STAGES: tuple[str, ...] = ("capture", "score", "perceive", "control", "keys", "record", "hud", "tick",
                                "frame_to_key")


# ----------------------------------------------------------------------------- seam types


@dataclass(frozen=True)
class Observation:
    """One tick's input.

    frame: the captured frame (image HxWx3 uint8 RGB, timestamp = time.monotonic() at capture).
    clock_s: the controller's clock for this frame, seconds (sim time in the sim; for a captured game the
        time the frame appeared, estimated from the grab times by ``agent.runtime.frame_clock.FrameClock``).
    speed_mps: the truck's speed if known (the sim), else None.
    health: the capture's CaptureHealth (real capture) or None.
    ended: why the source has no more frames (StopReason.COLLISION, ROUTE_DONE, TRUNCATED,
        CAPTURE_LOST), else None; when set, ``frame`` is the last frame and the loop stops.
    info: the simulator's ground truth for this frame (sim only), else None.
    repeated: the picture is identical to the previous frame's (the game has not drawn a new one).
    episode: the simulator's episode, counted from 0 (a ``SimSource`` that restarts), else 0.
    paused: the game says it is paused (its telemetry): the tick decides nothing and holds no key.
    """

    frame: Frame
    clock_s: float
    speed_mps: float | None = None
    health: object | None = None
    ended: StopReason | None = None
    info: dict | None = None
    repeated: bool = False
    episode: int = 0
    paused: bool = False


@dataclass(frozen=True)
class KeyResult:
    """What a key output did this tick.

    held: the driving keys held after the tick (by the agent).
    engaged: the agent drives (False: disengaged, keys released).
    person_keys: driving keys a person holds (takeover), when known.
    takeover: this tick is a person's intervention (record it as such).
    event: a one-line note for people when engagement changed ("engaged", "disengaged: takeover ...").
    stop: a reason to end the drive (StopReason.ESTOP), else None.
    axes: the analog axes held after the tick (``agent.io.axes.Axes``) by an output that drives
        them, else None.
    """

    held: KeysHeld
    engaged: bool = True
    person_keys: KeysHeld | None = None
    takeover: bool = False
    event: str | None = None
    stop: StopReason | None = None
    axes: object | None = None


class FrameSource(Protocol):
    def grab(self) -> Observation: ...

    def close(self) -> None: ...


class KeyOutput(Protocol):
    """Where a tick's decision goes: ``keys`` to hold, and ``axes`` (``agent.io.axes.Axes``) for an
    output that drives analog axes (None: hold them neutral; outputs without axes ignore it)."""

    def send(self, keys: KeysHeld, observation: Observation, axes=None) -> KeyResult: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class StageStats:
    """Wall milliseconds of one stage over the ticks it ran."""

    count: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, values_ms: list[float]) -> "StageStats":
        if not values_ms:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        a = np.asarray(values_ms, dtype=np.float64)
        p50, p95 = percentiles(a)
        return cls(int(a.size), p50, p95, float(a.mean()), float(a.max()))


@dataclass(frozen=True)
class LoopStats:
    """How a drive went (returned by ``run_loop``; ``truckpilot bench`` reports it).

    steps: ticks run; wall_s: seconds from the first tick to the end; fps: steps / wall_s.
    stages: StageStats per stage name (LOOP_STAGES and "perceive.<stage>").
    stopped_by: why it ended (a StopReason); stop_detail: with StopReason.REQUESTED, the words
        ``stop_when`` returned, else None.
    engaged_steps: ticks the agent drove; takeover_steps: ticks a person drove (recorded as takeovers).
    events: engagement changes in order ("engaged", "disengaged: ...").
    dropped: ticks the fixed-rate pacing skipped because the loop was late.
    distance_m: distance driven when the source knows it (the sim), else None.
    repeated_steps: ticks that found no new frame and only re-sent the keys (``skip_repeated``).
    paused_steps: ticks while the game said it was paused (no decision, no key held).
    """

    steps: int
    wall_s: float
    fps: float
    stages: dict[str, StageStats]
    stopped_by: StopReason
    stop_detail: str | None = None
    engaged_steps: int = 0
    takeover_steps: int = 0
    events: tuple[str, ...] = ()
    dropped: int = 0
    distance_m: float | None = None
    repeated_steps: int = 0
    paused_steps: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stopped_by"] = self.stopped_by.value
        d["events"] = list(self.events)
        return d

    def summary(self) -> str:
        """A few human-readable lines: loop FPS, then p50/p95 per stage."""
        lines = [f"drive: {self.steps} steps in {self.wall_s:.1f} s = {self.fps:.1f} FPS; "
                 f"stopped by {self.stopped_by.value}"
                 + (f" ({self.stop_detail})" if self.stop_detail else "")
                 + f"; engaged {self.engaged_steps} steps, "
                 f"takeover {self.takeover_steps} steps, dropped {self.dropped} ticks"
                 + (f", {self.repeated_steps} without a new frame" if self.repeated_steps else "")
                 + (f", {self.paused_steps} while the game was paused" if self.paused_steps else "")
                 + (f"; distance {self.distance_m:.0f} m" if self.distance_m is not None else "")]
        lines.append(f"  {'stage':<26}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}")
        for name in _ordered(self.stages):
            s = self.stages[name]
            if s.count:
                lines.append(f"  {name:<26}{s.p50_ms:9.2f}{s.p95_ms:9.2f}{s.mean_ms:9.2f}{s.max_ms:9.2f}")
        return "\n".join(lines)


def _ordered(names) -> list[str]:
    def key(name: str):
        base = name.split(".")[0]
        return (LOOP_STAGES.index(base) if base in LOOP_STAGES else len(LOOP_STAGES), name)

    return sorted(names, key=key)


class StageTimer:
    """Collects wall milliseconds per stage name; ``last`` holds each stage's latest value."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.last: dict[str, float] = {}

    def add(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(ms)
        self.last[name] = ms

    def stats(self) -> dict[str, StageStats]:
        return {name: StageStats.of(values) for name, values in self.samples.items()}


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class LoopParts:
    """What one drive is made of; ``run_ticks`` is the same tick for all of them.

    source: FrameSource (``SimSource``, ``CaptureSource``).
    decider: Decider (``AgentDecider`` = Perceiver + Controller; the scorecard's expert and baseline).
    keys_out: KeyOutput (``SimKeyOutput``, ``GuardedKeyOutput``).
    recorder: Recorder or None (``DriveRecorder``, the recorders' session writers: record_sim, record_window).
    hud: Hud or None (``HudWindow``; False from ``show`` = closed, the drive stops).
    scorer: Scorer or None: ``observe(Transition)`` for every tick once its outcome is grabbed, the
        last one (the source's end) included (the scorecard's metrics and interventions).
    stop_when: called before each grab, after the pacing wait; a non-empty string it returns ends
        the drive (stopped_by StopReason.REQUESTED, the string in ``stop_detail``).
    on_tick: called as on_tick(step, observation, perception, action, result) after each tick
        (tests, the demo's GIF); perception / action are None when the decider has none.
    """

    source: FrameSource
    decider: Decider
    keys_out: KeyOutput
    recorder: Recorder | None = None
    hud: Hud | None = None
    scorer: Scorer | None = None
    stop_when: Callable[[], str | None] | None = None
    on_tick: Callable | None = None


def run_loop(
    source: FrameSource,
    perceiver: Callable,
    controller,
    keys_out: KeyOutput,
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    fps: float | None = None,
    recorder: Recorder | None = None,
    hud: Hud | None = None,
    on_tick: Callable | None = None,
    stop_when: Callable[[], str | None] | None = None,
    skip_repeated: bool = False,
    axes=None,
) -> LoopStats:
    """The agent drives: ``run_ticks`` with ``AgentDecider(perceiver, controller, axes=axes)`` as the decider.

    perceiver: callable HxWx3 uint8 RGB -> perception.types.Perception (a Perceiver).
    controller: agent.runtime.controller.Controller (``update``, ``keys_for``, ``reset``).
    axes: an ``agent.runtime.axis_control.AxisShaper`` to drive analog axes instead of keys, or None.
    The rest as ``LoopParts`` and ``run_ticks``.
    """
    parts = LoopParts(source, AgentDecider(perceiver, controller, axes=axes), keys_out, recorder=recorder, hud=hud,
                      stop_when=stop_when, on_tick=on_tick)
    return run_ticks(parts, max_steps=max_steps, max_seconds=max_seconds, fps=fps, skip_repeated=skip_repeated)


def run_ticks(
    parts: LoopParts,
    *,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    fps: float | None = None,
    skip_repeated: bool = False,
) -> LoopStats:
    """Drive until a budget or a stop reason; returns LoopStats. Keys are released on any exit.

    max_steps: at most this many ticks (decisions); max_seconds: of wall time.
    fps: pace the loop at this rate (None: as fast as the parts go; a paced capture paces itself).
    skip_repeated: when the game has not drawn a new frame since the last tick (``repeated``), do not
        decide again: send the previous keys (the guard still checks and beats) and do not record
        the duplicate. Run the loop faster than the game's frame rate with this, and every new
        frame is acted on once, soon after it appears, with no aliasing of the key PWM against the
        game's frame clock. Such ticks count in ``repeated_steps``, not in the stages "perceive" /
        "control" / "frame_to_key".
    A disengagement (``KeyResult.engaged`` False after True) resets the decider, so it starts
    afresh when engaged again. While the game says it is paused (``Observation.paused``, from its
    telemetry) no decision is made and no key is held (the key output is sent none, so the guard
    keeps beating); the pause and the resume each get one log line and an event, and the decider
    starts afresh after it. Ctrl+C (KeyboardInterrupt) and SystemExit (SIGTERM via the guard's
    handlers) end the drive cleanly with stopped_by StopReason.USER / StopReason.SIGNAL.
    """
    from agent.io.pacing import RateLimiter

    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    source, decider, keys_out = parts.source, parts.decider, parts.keys_out
    recorder, hud, scorer, on_tick = parts.recorder, parts.hud, parts.scorer, parts.on_tick
    timer = StageTimer()
    pacer = RateLimiter(fps) if fps else None
    live = HudStats()
    events: list[str] = []
    steps = engaged_steps = takeover_steps = repeated_steps = paused_steps = 0
    was_paused = False
    last: Decision | None = None  # the latest decision (re-sent on a repeated frame)
    previous: tuple[Observation, Decision, KeyResult] | None = None  # the tick whose outcome comes next
    stopped_by, stop_detail = StopReason.STEPS, None
    distance = None
    was_engaged = True
    t_start = time.monotonic()
    perf = time.perf_counter
    try:
        while True:
            if max_steps is not None and steps >= max_steps:
                stopped_by = StopReason.STEPS
                break
            if max_seconds is not None and time.monotonic() - t_start >= max_seconds:
                stopped_by = StopReason.SECONDS
                break
            if pacer is not None:
                pacer.wait()
            asked = parts.stop_when() if parts.stop_when is not None else None
            if asked:
                stopped_by, stop_detail = StopReason.REQUESTED, str(asked)
                break
            t0 = perf()
            observation = source.grab()
            t1 = perf()
            timer.add("capture", (t1 - t0) * 1e3)
            if observation.info is not None and "distance" in observation.info:
                distance = float(observation.info["distance"])
            if scorer is not None and previous is not None:
                scorer.observe(Transition(*previous, observation))
                t1b = perf()
                timer.add("score", (t1b - t1) * 1e3)
                t1 = t1b
            if observation.ended:
                stopped_by = observation.ended
                break
            if observation.paused != was_paused:
                was_paused = observation.paused
                event = ("game paused: keys released, deciding nothing until it runs again" if was_paused
                         else "game running again: deciding afresh")
                log.info(event)
                events.append(event)
                decider.reset()
                last = None
            if observation.paused:
                result = keys_out.send(KeysHeld(), observation)  # hold nothing, axes neutral; the guard still beats
                previous = None  # nothing to score across a pause
                steps += 1
                paused_steps += 1
                timer.add("keys", (perf() - t1) * 1e3)
                if result.event:
                    events.append(result.event)
                was_engaged = result.engaged
                if on_tick is not None:
                    on_tick(steps - 1, observation, None, None, result)
                if result.stop:
                    stopped_by = result.stop
                    break
                continue
            repeat = skip_repeated and observation.repeated and last is not None
            if repeat:
                decision = last
            else:
                decision = decider.decide(observation)
                t2 = perf()
                for stage, ms in (decision.stage_ms or {"control": (t2 - t1) * 1e3}).items():
                    timer.add(stage, ms)
                t1 = t2
            result = keys_out.send(decision.keys, observation, axes=decision.axes)
            previous = (observation, decision, result)
            t4 = perf()
            timer.add("keys", (t4 - t1) * 1e3)
            steps += 1
            if result.event:
                events.append(result.event)
            engaged_steps += bool(result.engaged)
            if not result.engaged and was_engaged:
                decider.reset()  # start afresh when engaged again
                if repeat:
                    last = None
            was_engaged = result.engaged
            takeover_steps += bool(result.takeover)
            if repeat:
                repeated_steps += 1
                if on_tick is not None:
                    on_tick(steps - 1, observation, decision.perception, decision.action, result)
                if result.stop:
                    stopped_by = result.stop
                    break
                continue
            last = decision
            frame = observation.frame
            latency_ms = (time.monotonic() - frame.timestamp) * 1e3
            timer.add("frame_to_key", latency_ms)
            if recorder is not None:
                recorder.record(observation, decision, result, latency_ms)
                t5 = perf()
                timer.add("record", (t5 - t4) * 1e3)
                t4 = t5
            live.step = steps
            live.engaged = result.engaged
            live.speed_mps = observation.speed_mps
            live.status = "ENGAGED" if result.engaged else ("TAKEOVER" if result.takeover else "DISENGAGED")
            if hud is not None:
                live.stage_ms = dict(timer.last)
                shown = hud.show(frame, decision.perception, result.held, live)
                timer.add("hud", (perf() - t4) * 1e3)
                if not shown:
                    stopped_by = StopReason.HUD_CLOSED
                    break
            timer.add("tick", (perf() - t0) * 1e3)
            elapsed = time.monotonic() - t_start
            live.fps = steps / elapsed if elapsed > 0 else 0.0
            if on_tick is not None:
                on_tick(steps - 1, observation, decision.perception, decision.action, result)
            if result.stop:
                stopped_by = result.stop
                break
    except KeyboardInterrupt:
        stopped_by = StopReason.USER
    except SystemExit:
        stopped_by = StopReason.SIGNAL
    finally:
        try:
            keys_out.release()
        except Exception:  # noqa: BLE001 - the caller still closes the backend
            log.exception("releasing the keys failed")
    wall = time.monotonic() - t_start
    return LoopStats(steps=steps, wall_s=wall, fps=steps / wall if wall > 0 else 0.0, stages=timer.stats(),
                     stopped_by=stopped_by, stop_detail=stop_detail, engaged_steps=engaged_steps,
                     takeover_steps=takeover_steps,
                     events=tuple(events), dropped=pacer.dropped if pacer is not None else 0,
                     distance_m=distance, repeated_steps=repeated_steps, paused_steps=paused_steps)


# ----------------------------------------------------------------------------- simulator parts


class SimSource:
    """Frames from the in-process simulator; the env advances one step per grab with the
    keys the SimKeys backend holds (the game moves between key press and next frame), or, with
    ``axes`` (an ``agent.io.axes.sim.SimAxes``; a continuous env), with the analog axes it holds.

    env: a TruckSim-v0 env (gymnasium.make or TruckSimEnv). The first grab resets it with ``seed``
    (and ``options``, e.g. {"time_of_day": "night", "weather": "rain"}). ``clock_s`` is sim time
    (env steps x dt, counted over all episodes); ``frame.index`` is that step count.
    An episode that ends ends the drive (``ended`` = StopReason.COLLISION, ROUTE_DONE or TRUNCATED),
    unless ``restart``: then the env is reset with ``seed + episode`` (episode counted from 0; the
    same ``options``) and the frames go on, ``Observation.episode`` counting the episodes.
    """

    def __init__(self, env, keys, seed: int | None = None, options: dict | None = None,
                 restart: bool = False, axes=None) -> None:
        if restart and seed is None:
            raise ValueError("SimSource(restart=True) needs a seed (episode n is reset with seed + n)")
        if axes is not None and not env.unwrapped.config.continuous:
            raise ValueError("SimSource(axes=...) needs a continuous env (TruckSim-v0 with continuous=True)")
        self.env = env
        self.keys = keys
        self.axes = axes
        self.seed, self.options = seed, options
        self.restart = restart
        self.dt = float(env.unwrapped.config.dt)
        self.step = 0
        self.episode = 0
        self.info: dict | None = None
        self._obs: np.ndarray | None = None
        self._ended: StopReason | None = None
        self._started = False

    def first(self) -> Observation:
        """The first observation (the env reset now), before the loop grabs it (its first grab gives
        this one again): what a recorder sizes its session by."""
        if self._obs is None:
            self._obs, self.info = self.env.reset(seed=self.seed, options=self.options)
        return self._observation()

    def grab(self) -> Observation:
        if not self._started:
            self._started = True
            if self._obs is None:
                self._obs, self.info = self.env.reset(seed=self.seed, options=self.options)
        elif self._ended is None:
            action = self.keys.held().as_array() if self.axes is None else self.axes.action()
            obs, _reward, terminated, truncated, info = self.env.step(action)
            self.step += 1
            self._obs, self.info = obs, info
            if terminated or truncated:
                if self.restart:
                    self.episode += 1
                    self._obs, self.info = self.env.reset(seed=self.seed + self.episode, options=self.options)
                elif "collision" in info["events"]:
                    self._ended = StopReason.COLLISION
                elif truncated:
                    self._ended = StopReason.TRUNCATED
                else:
                    self._ended = StopReason.ROUTE_DONE
        return self._observation()

    def _observation(self) -> Observation:
        frame = Frame(image=self._obs, timestamp=time.monotonic(), index=self.step)
        return Observation(frame=frame, clock_s=self.step * self.dt, speed_mps=float(self.info["speed"]),
                           ended=self._ended, info=self.info, episode=self.episode)

    def close(self) -> None:
        self.env.close()


class SimKeyOutput:
    """Keys for the in-process simulator: a SimKeys backend (read by SimSource on the next grab);
    with ``axes`` (an ``agent.io.axes.sim.SimAxes``, for a continuous env) the analog axes instead."""

    def __init__(self, backend, axes=None) -> None:
        self.backend = backend
        self.axes = axes

    def send(self, keys: KeysHeld, observation: Observation, axes=None) -> KeyResult:
        self.backend.apply(keys)
        if self.axes is None:
            return KeyResult(held=self.backend.held())
        from agent.io.axes import NEUTRAL

        self.axes.send(axes if axes is not None else NEUTRAL)
        return KeyResult(held=self.backend.held(), axes=self.axes.last)

    def release(self) -> None:
        self.backend.release_all()
        if self.axes is not None:
            self.axes.neutral()

    def close(self) -> None:
        self.backend.close()


def open_sim(*, seed: int, size: tuple[int, int] = (320, 240), time_of_day: str | None = None,
             weather: str | None = None, traffic: float = 1.0, route_m: float | None = 5000.0,
             restart: bool = False, analog: bool = False, **env_options) -> tuple[SimSource, SimKeyOutput]:
    """The in-process simulator as loop parts: a TruckSim-v0 env (``gymnasium.make``) of ``size``
    (w, h) frames, ``traffic`` density, a ``route_m`` m route (None: the env's default), in its
    ``SimSource`` (reset with ``seed``; ``restart``: episodes go on) and the ``SimKeyOutput``
    whose keys it steps with. ``truckpilot drive --sim``, ``truckpilot eval`` and ``record_sim``
    drive the simulator through these. Close the source (it closes the env) and the key output.
    analog: the env takes continuous steering and pedals (``SimAxes``) instead of keys: a decision's
    ``axes`` drive it, as the SCS input plugin's block drives the sim window.
    env_options: further TruckSim-v0 options (e.g. min_box_height_px).
    """
    import gymnasium

    import sim  # noqa: F401  (registers TruckSim-v0)
    from agent.io.axes.sim import SimAxes
    from agent.io.keys import SimKeys

    width, height = size
    kwargs = dict(width=width, height=height, time_of_day=time_of_day, weather=weather, traffic_density=traffic,
                  **env_options)
    if route_m is not None:
        kwargs["route_length_m"] = route_m
    if analog:
        kwargs["continuous"] = True
    env = gymnasium.make("TruckSim-v0", **kwargs)
    keys = SimKeys()
    axes = SimAxes() if analog else None
    return SimSource(env, keys, seed=seed, restart=restart, axes=axes), SimKeyOutput(keys, axes)


# ----------------------------------------------------------------------------- real game parts


class CaptureSource:
    """Frames from an ``agent.io.capture.Capture`` (mss); a destroyed window ends the drive.

    telemetry: the game's ``agent.io.telemetry.TelemetrySource`` or None. With it each observation
    carries the game's speed (the controller holds its target speed on it) and whether the game is
    paused (the tick then decides nothing and holds no key); a block that stops reading is logged
    once and the drive goes on without it.

    While the window is hidden (unmapped, minimised, moved off the screen) each grab gives the
    last frame again as ``repeated`` with the capture's health (``hidden``, not ``ok``): the
    loop re-sends its keys, the guard releases them (DisengageReason.WINDOW_HIDDEN), and the
    drive waits until the window is back and re-engages by the usual rules.
    """

    def __init__(self, capture, telemetry=None) -> None:
        from agent.runtime.frame_clock import FrameClock

        self.capture = capture
        self.telemetry = telemetry
        self._last: Frame | None = None
        self.clock = FrameClock()  # clock_s: when a frame appeared, not when it was grabbed

    def _told(self) -> tuple[float | None, bool]:
        """(speed m/s or None, paused) from the game's telemetry, read right after the grab."""
        if self.telemetry is None:
            return None, False
        from agent.io.telemetry import TelemetryError

        try:
            reading = self.telemetry.read()
        except TelemetryError as exc:
            log.warning("game telemetry stopped (%s): driving on without its speed and pause", exc)
            self.telemetry = None
            return None, False
        return float(reading.speed_m_s), bool(reading.paused)

    def grab(self) -> Observation:
        from agent.io.capture import CaptureHidden, CaptureLost

        try:
            frame = self.capture.grab()
        except CaptureHidden:
            last = self._last or Frame(np.zeros((2, 2, 3), np.uint8), time.monotonic(), -1)
            return Observation(frame=last, clock_s=time.monotonic(), health=self.capture.health(), repeated=True)
        except CaptureLost as exc:
            log.warning("capture lost: %s", exc)
            last = self._last or Frame(np.zeros((2, 2, 3), np.uint8), time.monotonic(), -1)
            return Observation(frame=last, clock_s=last.timestamp, health=self.capture.health(),
                               ended=StopReason.CAPTURE_LOST)
        self._last = frame
        health = self.capture.health()
        repeated = getattr(health, "identical_frames", 0) > 0
        speed, paused = self._told()
        return Observation(frame=frame, clock_s=self.clock.observe(frame.timestamp, new=not repeated), health=health,
                           repeated=repeated, speed_mps=speed, paused=paused)

    def close(self) -> None:
        self.capture.close()
        if self.telemetry is not None:
            self.telemetry.close()


class GuardedKeyOutput:
    """Keys through a ``SafetyGuard`` (X11 XTest, uinput, SendInput).

    Engages on the first fresh frame. After a disengagement it re-engages by itself once the
    cause is gone for ``reengage_after_s`` (a person's takeover: their hands off the driving
    keys; lost focus: the game focused again; a stall of the loop: fresh frames, after only
    ``stall_reengage_after_s``; a frozen picture: 1 s, then 2, 4 ... 30 s while it stays frozen),
    unless ``reengage`` is False. An e-stop ends the
    drive (``KeyResult.stop`` = StopReason.ESTOP). While a person drives, ``person_keys`` are their
    keys (read from the guard's keyboard reader when it can say) and ``takeover`` is True, so the
    recorder stores the intervention as training data. Each reaction is chosen by the guard's
    ``disengagement.reason`` (a DisengageReason), never by its text.

    Times are seconds of ``clock`` (default ``time.monotonic``, the clock of frame timestamps).
    """

    def __init__(self, guard, *, reengage: bool = True, reengage_after_s: float = 1.0,
                 stall_reengage_after_s: float = 0.2, max_frame_age_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.guard = guard
        self.clock = clock
        self.reengage = reengage
        self.reengage_after_s = reengage_after_s
        self.stall_reengage_after_s = stall_reengage_after_s
        self.max_frame_age_s = max_frame_age_s if max_frame_age_s is not None else 3 * guard.config.period_s
        self._clear_since: float | None = None
        self._ever_engaged = False
        self._in_takeover = False
        self._stale_strikes = 0

    def _person_keys(self) -> KeysHeld | None:
        reader = getattr(self.guard, "keyboard", None)
        if reader is None or not hasattr(reader, "driving_keys"):
            return None
        return reader.driving_keys()

    def _fresh(self, observation: Observation, now: float) -> bool:
        """A usable, recent frame, and the game window focused (when the guard can tell)."""
        health = observation.health
        healthy = health is None or getattr(health, "ok", True)
        focus_check = getattr(self.guard, "focus_check", None)
        if healthy and focus_check is not None:
            healthy = bool(focus_check())
        return healthy and 0.0 <= now - observation.frame.timestamp <= self.max_frame_age_s

    def _why(self) -> Disengagement:
        return self.guard.disengagement or Disengagement(DisengageReason.NOT_ENGAGED)

    def send(self, keys: KeysHeld, observation: Observation, axes=None) -> KeyResult:
        guard = self.guard
        now = self.clock()
        event = None
        if not guard.engaged:
            why = self._why()
            if why.reason is DisengageReason.ESTOP:
                guard.heartbeat(guard.backend.held())
                return KeyResult(held=guard.backend.held(), engaged=False, event=None, stop=StopReason.ESTOP)
            person = self._person_keys()
            person_active = person is not None and any(person.as_array())
            cause_gone = self._fresh(observation, now) and not person_active
            if not cause_gone:
                self._clear_since = None
            elif self._clear_since is None:
                self._clear_since = now
            wait = 0.0 if not self._ever_engaged else self.reengage_after_s
            if why.reason is DisengageReason.CAPTURE_STALE:  # a frozen game: back off 1, 2, 4 ... 30 s
                wait = min(30.0, self.reengage_after_s * 2.0 ** max(0, self._stale_strikes - 1))
            elif why.reason is DisengageReason.GUARD_RELEASED and why.release in STALL_RELEASES:
                wait = min(wait, self.stall_reengage_after_s)  # a hiccup of the loop: resume soon
            may_engage = (not self._ever_engaged) or self.reengage
            if cause_gone and may_engage and now - self._clear_since >= wait:
                if guard.engage(True):
                    self._ever_engaged = True
                    self._in_takeover = False
                    event = "engaged"
            if not guard.engaged:
                held = guard.apply(KeysHeld(), observation.health)  # releases, centres; heartbeat
                takeover = self._in_takeover and person_active
                return KeyResult(held=held, engaged=False, person_keys=person, takeover=takeover, event=event,
                                 axes=self._axes())
        held = guard.apply(keys, observation.health, axes)
        if guard.engaged and not observation.repeated:
            self._stale_strikes = 0  # the picture moves while we drive: forget earlier frozen stops
        if not guard.engaged:
            why = self._why()
            event = f"disengaged: {why}"
            if why.reason is DisengageReason.CAPTURE_STALE:
                self._stale_strikes += 1
            self._clear_since = None
            self._in_takeover = why.reason is DisengageReason.TAKEOVER
            person = self._person_keys()
            stop = StopReason.ESTOP if why.reason is DisengageReason.ESTOP else None
            return KeyResult(held=held, engaged=False, person_keys=person,
                             takeover=self._in_takeover and person is not None and any(person.as_array()),
                             event=event, stop=stop, axes=self._axes())
        return KeyResult(held=held, engaged=True, event=event, axes=self._axes())

    def _axes(self):
        """The axes the guard holds, when it drives an analog output."""
        return self.guard.axes_held if getattr(self.guard, "axes", None) is not None else None

    def release(self) -> None:
        self.guard.backend.release_all()
        if getattr(self.guard, "axes", None) is not None:
            self.guard.centre_axes()
        self.guard.heartbeat(self.guard.backend.held())

    def close(self) -> None:
        self.guard.close()
        self.guard.backend.close()

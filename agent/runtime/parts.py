"""The parts the one driving tick (``agent.runtime.loop.run_ticks``) is made of, besides the
frame source and the key output: who decides the keys, what is scored, what is recorded.

Each tick: ``source.grab()`` -> (``scorer.observe(Transition)`` of the previous tick) ->
``decider.decide(observation)`` -> ``keys_out.send(decision.keys)`` -> ``recorder.record`` ->
``hud.show``. ``truckpilot drive`` (sim and window), ``truckpilot eval``, ``record_sim``, ``record_window`` and the
demo's GIF differ only in the parts they pass.

* ``AgentDecider``: TruckPilot itself, Perceiver -> Controller -> PWM keys. The one
  place the agent's tick is written; ``drive`` and the scorecard both drive with it.
* the scorecard's expert, baseline and its rescue switch are in ``agent.runtime.drivers``;
  its scorer in ``agent.runtime.route_scoring``.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.types import Action, HudStats, KeysHeld

if TYPE_CHECKING:
    from agent.runtime.loop import KeyResult, Observation


def perceive_stage(stage: str) -> str:
    """The loop's stage name for the Perceiver's ``stage`` (a perception.types.PERCEPTION_STAGES name)."""
    return f"perceive.{stage}"


@dataclass(frozen=True)
class Decision:
    """The keys one tick decided on one observation.

    keys: the driving keys to hold until the next tick.
    action: the continuous action behind them (steer -1..1, throttle 0..1, brake 0..1), when the
        decider has one (the agent's controller), else None.
    perception: what the Perceiver saw on this frame, when the decider perceived it, else None.
    stage_ms: wall milliseconds of the decider's own stages ("perceive", "perceive.<stage>",
        "control"); empty: the loop times the whole decision as "control".
    takeover: the keys are not the judged driver's own: the scorecard's expert rescuing it, or a
        person at the keyboard of a recording (recorded as such, not scored as the driver's).
    perturbed: the steering was disturbed on purpose (``record_sim --perturb``).
    axes: the analog steering and pedals to hold (``agent.io.axes.Axes``) when the decider drives
        an analog output (then ``keys`` holds no key), else None.
    """

    keys: KeysHeld
    action: Action | None = None
    perception: object | None = None
    stage_ms: Mapping[str, float] = field(default_factory=dict)
    takeover: bool = False
    perturbed: bool = False
    axes: object | None = None


class Decider(Protocol):
    """Turns an observation into the keys to hold (the agent, the scripted expert, the baseline ...)."""

    def decide(self, observation: Observation) -> Decision: ...

    def reset(self) -> None:
        """Start afresh: a new route, or someone else drove since the last decision."""


@dataclass(frozen=True)
class Transition:
    """One tick and what came of it: the keys ``result`` sent on ``before`` led to ``after``
    (in the sim: one env step). ``decision`` is the one whose keys were sent (re-sent on a
    ``skip_repeated`` tick)."""

    before: Observation
    decision: Decision
    result: KeyResult
    after: Observation


class Scorer(Protocol):
    """Judges each transition (the scorecard's metrics and interventions)."""

    def observe(self, transition: Transition) -> None: ...


class Recorder(Protocol):
    """Stores each decided tick (``DriveRecorder``, record_sim's and record_window's session recorders)."""

    def record(self, observation: Observation, decision: Decision, result: KeyResult, latency_ms: float) -> None: ...


class Hud(Protocol):
    """Shows each tick; False = the person closed it (the drive stops)."""

    def show(self, frame, perception, keys: KeysHeld, live: HudStats) -> bool: ...


class AgentDecider:
    """TruckPilot's decision: perceiver(frame) -> controller.update -> controller.keys_for.

    perceiver: callable HxWx3 uint8 RGB -> perception.types.Perception (a Perceiver).
    controller: ``agent.runtime.controller.Controller`` (or anything with ``update``, ``keys_for``, ``reset``).
    use_speed: give the controller the observation's speed (m/s; the sim knows it, a game does not);
        False drives as in a game, on the controller's cruise throttle duty.
    axes: an ``agent.runtime.axis_control.AxisShaper`` to drive an analog output: each decision
        then carries ``Decision.axes`` (steer from the steering head's value when the Perception
        has one, else the controller's continuous ``steer_signal``; its throttle and brake) and no
        key. The shaper's jerk and lateral-acceleration limits use the observation's speed when it
        is known and ``use_speed`` (without it: the plain rate limits and smoothing).
    The controller's clock is ``observation.clock_s`` (sim time in the sim, so a sim drive is
    deterministic at any loop speed). Stages: "perceive" (+ the Perceiver's own, "perceive.<stage>")
    and "control", wall ms.
    """

    def __init__(self, perceiver, controller, use_speed: bool = True, axes=None) -> None:
        self.perceiver = perceiver
        self.controller = controller
        self.use_speed = use_speed
        self.axes = axes

    def decide(self, observation: Observation) -> Decision:
        perf = time.perf_counter
        image = observation.frame.image
        t0 = perf()
        perception = self.perceiver(image)
        t1 = perf()
        size = (image.shape[1], image.shape[0])
        speed = observation.speed_mps if self.use_speed else None
        action = self.controller.update(perception, observation.clock_s, size, speed)
        axes = None
        if self.axes is None:
            keys = self.controller.keys_for(action, observation.clock_s)
        else:
            axes = self.axes.update(action, observation.clock_s, speed,
                                    steer_signal=self.controller.steer_signal,
                                    head_steer=getattr(perception, "steer", None))
            keys = KeysHeld()
        t2 = perf()
        stage_ms = {"perceive": (t1 - t0) * 1e3, "control": (t2 - t1) * 1e3}
        for stage, ms in perception.timings_ms.items():
            stage_ms[perceive_stage(stage)] = ms
        return Decision(keys=keys, action=action, perception=perception, stage_ms=stage_ms, axes=axes)

    def reset(self) -> None:
        self.controller.reset()
        if self.axes is not None:
            self.axes.reset()

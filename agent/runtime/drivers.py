"""The closed-loop scorecard's parts (``agent.apps.scorecard``), for the one tick (``run_ticks``).

The scorecard drives every route through ``agent.runtime.loop.run_ticks`` with the simulator's
frame source and keys (as ``truckpilot drive --sim``) and these parts:

* deciders: ``AgentDecider`` (``agent.runtime.parts``: TruckPilot itself, Perceiver ->
  Controller -> PWM keys, the very decider ``drive`` runs), ``ExpertDecider`` (the scripted
  autopilot, ``sim.expert.Expert``, reading ground truth, not pixels: the upper bound) and
  ``BaselineDecider`` (the source article's controller: the argmax of the direction
  classifier, a fixed 0.09 s press of the left/right key per decision, the throttle always held);
* ``Rescue``: the judged decider, or the expert while it rescues (an intervention);
* ``JudgeScorer``: each tick's outcome through ``sim.judge.RouteJudge`` (the scorecard's
  metrics, and who drives next).

Every decider runs on the simulator's clock (``Observation.clock_s`` = step x dt), so a route
is deterministic at any speed.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from agent.runtime.parts import Decider, Decision, Transition
from agent.types import KeysHeld, StopReason

if TYPE_CHECKING:
    from agent.runtime.loop import Observation

#: names of the drivers, in the scorecard's order (its default set)
DRIVER_NAMES: tuple[str, ...] = ("agent", "expert", "baseline")
#: the agent driving analog axes (``AgentDecider`` with an ``AxisShaper``): the simulator's continuous
#: controls in-process, the SCS SDK input plugin's block live; asked for by name (``--drivers agent,analog``)
ANALOG = "analog"
#: every driver the scorecard knows, in its table's order
ALL_DRIVERS: tuple[str, ...] = ("agent", ANALOG, "expert", "baseline")
#: the article's key pulse per decision, seconds
ARTICLE_PULSE_S = 0.09


class ExpertDecider:
    """The simulator's scripted autopilot, driving from ground truth (the env's world, not pixels).

    env: the TruckSim-v0 env the route runs in (gymnasium wrapper or TruckSimEnv); seed varies
    the expert's cruise speed; dt: the sim step, s (None: the expert's own default).
    analog: drive a continuous env with ``Decision.axes`` (the expert's continuous action) instead
    of keys.
    """

    name = "expert"

    def __init__(self, env, seed: int = 0, dt: float | None = None, analog: bool = False) -> None:
        from sim.expert import Expert

        self.env = env
        self.expert = Expert(seed=seed, dt=dt)
        self.analog = analog

    def decide(self, observation: Observation) -> Decision:
        if self.analog:
            from agent.io.axes import Axes

            steer, throttle, brake = (float(x) for x in self.expert.act_continuous(self.env.unwrapped))
            return Decision(keys=KeysHeld(), axes=Axes.clipped(steer, throttle, brake))
        return Decision(keys=KeysHeld.from_array(self.expert.act(self.env.unwrapped)))

    def reset(self) -> None:
        self.expert.reset()


class ArticlePulse:
    """The source article's steering, one step of ``dt`` s at a time.

    Each decision cycle: one step with the steering keys up while the next frame is
    classified (the article's loop captures and predicts between pulses), then the
    argmax direction's key ("left" / "right"; nothing for "straight") held for
    ``pulse_steps = max(1, round(pulse_s / dt))`` steps (0.09 s -> 1 step at dt = 1/15 s),
    then released. The throttle is held all the time; no brake, no speed control.
    """

    def __init__(self, dt: float, pulse_s: float = ARTICLE_PULSE_S) -> None:
        if dt <= 0 or pulse_s <= 0:
            raise ValueError(f"dt ({dt}) and pulse_s ({pulse_s}) must be > 0")
        self.pulse_steps = max(1, int(round(pulse_s / dt)))
        self.reset()

    def reset(self) -> None:
        self._pending: str | None = None  # decided key, pressed from the next step
        self._hold = 0  # steps left of the current pulse
        self._key: str | None = None

    def keys(self, direction: Callable[[], str]) -> tuple[KeysHeld, bool]:
        """This step's keys, and whether ``direction()`` (the argmax, "left" / "straight" /
        "right") was asked for: only on the steps that decide."""
        asked = False
        if self._hold > 0:
            self._hold -= 1
            key = self._key
        elif self._pending is not None:
            self._key, self._pending = self._pending, None
            self._hold = self.pulse_steps - 1
            key = self._key
        else:
            d = direction()
            asked = True
            self._pending = d if d in ("left", "right") else None
            self._key = None
            key = None
        return KeysHeld(left=key == "left", right=key == "right", throttle=True, brake=False), asked


class BaselineDecider:
    """The source article's driving loop (``ArticlePulse``) on the simulator's frames.

    perceiver: callable HxWx3 uint8 RGB -> Perception (its ``direction``, the argmax, is used);
    dt: the step, s; pulse_s: the key press per decision, s.
    """

    name = "baseline"

    def __init__(self, perceiver, dt: float, pulse_s: float = ARTICLE_PULSE_S) -> None:
        self.perceiver = perceiver
        self.pulse = ArticlePulse(dt, pulse_s)

    @property
    def pulse_steps(self) -> int:
        return self.pulse.pulse_steps

    def decide(self, observation: Observation) -> Decision:
        seen = []

        def direction() -> str:
            seen.append(self.perceiver(observation.frame.image))
            return seen[0].direction

        keys, _ = self.pulse.keys(direction)
        return Decision(keys=keys, perception=seen[0] if seen else None)

    def reset(self) -> None:
        self.pulse.reset()


class BaselineController:
    """The baseline as the live loop's controller (``update`` / ``keys_for`` / ``reset``, like
    ``agent.runtime.controller.Controller``): ``update`` keeps the frame's Perception and
    ``keys_for`` runs ``ArticlePulse`` on it, once per new frame (``run_loop`` with
    ``skip_repeated``), so a live drive pulses exactly as the in-process baseline per frame.

    dt: the game's frame interval, s (the pulse is ``round(pulse_s / dt)`` frames).
    """

    def __init__(self, dt: float, pulse_s: float = ARTICLE_PULSE_S) -> None:
        self._perception = None
        self.pulse = ArticlePulse(dt, pulse_s)

    def reset(self) -> None:
        self.pulse.reset()

    def update(self, perception, now: float, frame_size: tuple[int, int], speed_mps: float | None = None):
        from agent.types import Action

        self._perception = perception
        steer = {"left": -1.0, "right": 1.0}.get(perception.direction, 0.0)
        return Action(steer=steer, throttle=1.0, brake=0.0)

    def keys_for(self, action, now: float) -> KeysHeld:
        return self.pulse.keys(lambda: self._perception.direction)[0]


class Rescue:
    """The judged ``driver`` decides while ``judge.in_control``; else ``rescuer`` (the expert)
    does, its decisions marked ``takeover``. The rescuer is reset as it takes over, the driver
    as it gets control back (it starts afresh). judge: anything with ``in_control``
    (a ``sim.judge.RouteJudge``, fed each tick's outcome by ``JudgeScorer``)."""

    def __init__(self, driver: Decider, rescuer: Decider, judge) -> None:
        self.driver, self.rescuer, self.judge = driver, rescuer, judge
        self._rescuing = False

    def decide(self, observation: Observation) -> Decision:
        rescuing = not self.judge.in_control
        if rescuing and not self._rescuing:
            self.rescuer.reset()
        elif self._rescuing and not rescuing:
            self.driver.reset()  # handed back
        self._rescuing = rescuing
        if rescuing:
            return replace(self.rescuer.decide(observation), takeover=True)
        return self.driver.decide(observation)

    def reset(self) -> None:
        self.driver.reset()


class JudgeScorer:
    """The scorecard's scorer: each tick's outcome (the keys sent, the sim's info before and after)
    into ``judge`` (a ``sim.judge.RouteJudge``: metrics, interventions, who drives next)."""

    def __init__(self, judge) -> None:
        self.judge = judge

    def observe(self, transition: Transition) -> None:
        keys = transition.result.held
        ended = transition.after.ended
        self.judge.step(keys.left, keys.right, float(transition.before.info["distance"]), transition.after.info,
                        terminated=ended is not None and ended is not StopReason.TRUNCATED,
                        truncated=ended is StopReason.TRUNCATED)


def steer_state(keys: KeysHeld) -> int:
    """-1 (left only), +1 (right only) or 0: the steering the keys ask for."""
    return int(keys.right and not keys.left) - int(keys.left and not keys.right)

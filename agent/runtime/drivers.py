"""The three drivers of the closed-loop scorecard (``agent.apps.scorecard``).

Each turns the simulator's frame into the keys to hold for the next step, on
the simulator's clock (step x dt, so a run is deterministic at any speed):

* ``AgentDriver``: TruckPilot itself: Perceiver -> Controller (smoothed,
  hysteretic steering, speed holding, TTC braking) -> PWM keys.
* ``ExpertDriver``: the scripted autopilot (``sim.expert.Expert``), which reads
  ground truth, not pixels: the upper bound.
* ``BaselineDriver``: the source article's controller: the argmax of the
  direction classifier, a fixed 0.09 s press of the left/right key per
  decision, and the throttle always held.

The interface is ``reset()``, ``act(frame, info, env, now_s) -> KeysHeld`` and
``handback()`` (called when the expert returns control after an intervention).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from agent.types import KeysHeld

#: names of the drivers, in the scorecard's order
DRIVER_NAMES: tuple[str, ...] = ("agent", "expert", "baseline")
#: the article's key pulse per decision, seconds
ARTICLE_PULSE_S = 0.09


class Driver(Protocol):
    name: str

    def reset(self) -> None: ...

    def act(self, frame: np.ndarray, info: dict, env, now_s: float) -> KeysHeld: ...

    def handback(self) -> None: ...


class AgentDriver:
    """Perceiver + Controller + PWM keys (what ``truckpilot drive --sim`` runs).

    perceiver: callable HxWx3 uint8 RGB -> Perception; controller_config: ControllerConfig or None.
    use_speed: feed the sim's speed (info["speed"], m/s) to the controller's speed holding; False
    drives like a game, which gives no speed (the controller's cruise throttle duty).
    """

    name = "agent"

    def __init__(self, perceiver, controller_config=None, use_speed: bool = True) -> None:
        from agent.runtime.controller import Controller

        self.perceiver = perceiver
        self.controller = Controller(controller_config)
        self.use_speed = use_speed
        self.last_perception = None

    def reset(self) -> None:
        self.controller.reset()

    def act(self, frame: np.ndarray, info: dict, env, now_s: float) -> KeysHeld:
        perception = self.perceiver(frame)
        self.last_perception = perception
        size = (frame.shape[1], frame.shape[0])
        speed = float(info["speed"]) if self.use_speed else None
        action = self.controller.update(perception, now_s, size, speed)
        return self.controller.keys_for(action, now_s)

    def handback(self) -> None:
        self.controller.reset()


class ExpertDriver:
    """The simulator's scripted autopilot, driving from ground truth (not pixels)."""

    name = "expert"

    def __init__(self, seed: int = 0, dt: float | None = None) -> None:
        from sim.expert import Expert

        self.expert = Expert(seed=seed, dt=dt)

    def reset(self) -> None:
        self.expert.reset()

    def act(self, frame: np.ndarray, info: dict, env, now_s: float) -> KeysHeld:
        return KeysHeld.from_array(self.expert.act(env.unwrapped))

    def handback(self) -> None:
        pass


class BaselineDriver:
    """The source article's driving loop, on the simulator's clock.

    Each decision cycle: one step with the steering keys up while the next frame is
    classified (the article's loop captures and predicts between pulses), then the
    argmax direction's key ("left" / "right"; nothing for "straight") held for
    ``pulse_steps = max(1, round(pulse_s / dt))`` steps (0.09 s -> 1 step at dt = 1/15 s),
    then released. The throttle is held all the time; no brake, no speed control.
    """

    name = "baseline"

    def __init__(self, perceiver, dt: float, pulse_s: float = ARTICLE_PULSE_S) -> None:
        if dt <= 0 or pulse_s <= 0:
            raise ValueError(f"dt ({dt}) and pulse_s ({pulse_s}) must be > 0")
        self.perceiver = perceiver
        self.pulse_steps = max(1, int(round(pulse_s / dt)))
        self.reset()

    def reset(self) -> None:
        self._pending: str | None = None  # decided key, pressed from the next step
        self._hold = 0  # steps left of the current pulse
        self._key: str | None = None

    def act(self, frame: np.ndarray, info: dict, env, now_s: float) -> KeysHeld:
        if self._hold > 0:
            self._hold -= 1
            key = self._key
        elif self._pending is not None:
            self._key, self._pending = self._pending, None
            self._hold = self.pulse_steps - 1
            key = self._key
        else:
            direction = self.perceiver(frame).direction  # the argmax
            self._pending = direction if direction in ("left", "right") else None
            self._key = None
            key = None
        return KeysHeld(left=key == "left", right=key == "right", throttle=True, brake=False)

    def handback(self) -> None:
        self.reset()


class BaselineController:
    """The baseline as the live loop's controller (``update`` / ``keys_for`` / ``reset``, like
    ``agent.runtime.controller.Controller``): ``update`` keeps the frame's Perception and
    ``keys_for`` runs ``BaselineDriver`` on it, once per new frame (``run_loop`` with
    ``skip_repeated``), so a live drive pulses exactly as the in-process baseline per frame.

    dt: the game's frame interval, s (the pulse is ``round(pulse_s / dt)`` frames).
    """

    def __init__(self, dt: float, pulse_s: float = ARTICLE_PULSE_S) -> None:
        self._perception = None
        self.driver = BaselineDriver(lambda frame: self._perception, dt=dt, pulse_s=pulse_s)

    def reset(self) -> None:
        self.driver.reset()

    def update(self, perception, now: float, frame_size: tuple[int, int], speed_mps: float | None = None):
        from agent.types import Action

        self._perception = perception
        steer = {"left": -1.0, "right": 1.0}.get(perception.direction, 0.0)
        return Action(steer=steer, throttle=1.0, brake=0.0)

    def keys_for(self, action, now: float) -> KeysHeld:
        return self.driver.act(None, {}, None, now)


def steer_state(keys: KeysHeld) -> int:
    """-1 (left only), +1 (right only) or 0: the steering the keys ask for."""
    return int(keys.right and not keys.left) - int(keys.left and not keys.right)


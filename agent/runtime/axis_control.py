"""Control for an axis: the controller's continuous action -> ``Axes`` for an analog output.

Keys approximate a steering value by pulse-width modulation; a wheel, a pad or the SCS SDK input
plugin take the value itself. What reaches them is shaped here, in one config (``AxisConfig``):

* **smoothing**: an exponential moving average of each target (time constant ``*_tau_s``);
* **rate limit**: how fast an axis may move, in units of its range per second (openpilot's
  per-frame ``STEER_DELTA_UP`` / ``STEER_DELTA_DOWN`` limits, in time units): away from neutral
  (``*_rate_up``) and back toward it (``*_rate_down``, faster, so letting go is never slow);
* **jerk limit**: for the steering, from the truck's speed when it is known: with wheelbase L,
  full-lock road-wheel angle d and speed v, the lateral acceleration of steer s is about
  a = v^2 tan(s d) / L; the steer is capped where a reaches ``max_lat_accel_mps2`` (ISO 11270's
  3 m/s^2, as openpilot's ``ISO_LATERAL_ACCEL``) and its rate where the lateral jerk
  v^2 d / L x ds/dt reaches ``max_lat_jerk_up_mps3`` away from centre / ``max_lat_jerk_down_mps3``
  back (openpilot's lateral-limit test: 2.5 / 5.0 m/s^3). For the pedals, pedal travel stands
  for acceleration, so their rate limits are the longitudinal jerk limits. Without a speed only the
  plain rate limits apply.

``AxisShaper.update(action, now, speed_mps)`` once per decision gives the ``Axes`` to hold;
``reset()`` returns every axis to neutral state (after a disengagement, the output went neutral).
The steering target is the steering head's value when the direction model has one, else
``steer_gain`` x s + ``steer_gain_cubic`` x s^3 of the controller's continuous steer signal s
(smoothed p_right - p_left, ``agent.runtime.controller.Controller.steer_signal``), not its
key-oriented hysteresis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from agent.io.axes import Axes
from agent.runtime.controller import config_field, ema_alpha
from agent.types import Action


@dataclass(frozen=True)
class AxisConfig:
    """Every setting of analog control; ``field.metadata['help']`` explains each. Rates are in
    units of the axis range per second (steer: full lock = 1; pedals: full travel = 1)."""

    steer_gain: float = config_field(
        "multiplier on the smoothed p_right - p_left s before the limits (steer = steer_gain x s + "
        "steer_gain_cubic x s^3): the class probabilities saturate in any bend, where the wheel needs "
        "0.05-0.25 of full lock (built-in sim, radii 170-700 m). Tuned in-process without a speed on seeds "
        "201-212 day/clear, 600 m (demo model): 0.15 + 0.15 s^3 gave 0 interventions and mean |offset| "
        "0.14 m (keys: 3, 0.28 m); 0.2 alone 14 interventions; 0.2 + 0.15 s^3 0.28 m; 0.25 + 0.1 s^3 0.31 m", 0.15)
    steer_gain_cubic: float = config_field(
        "multiplier on s^3: more lock where the classifier is sure (s near +-1: a sharp bend) without "
        "more gain on the small, noisy s of a straight", 0.15)
    head_steer_gain: float = config_field("multiplier on the steering head's value (already the expert's steer, "
                                   "full lock = 1) when the direction model has that head", 1.0)
    steer_tau_s: float = config_field("time constant (s) of the EMA smoothing of the steer target", 0.1)
    steer_rate_up: float = config_field("steer rate limit away from centre, full lock per s", 1.6)
    steer_rate_down: float = config_field("steer rate limit back toward centre, full lock per s", 3.2)
    max_lat_accel_mps2: float = config_field("lateral acceleration cap (ISO 11270), m/s^2; needs the speed", 3.0)
    max_lat_jerk_up_mps3: float = config_field("lateral jerk cap steering away from centre, m/s^3; needs the speed", 2.5)
    max_lat_jerk_down_mps3: float = config_field("lateral jerk cap steering back toward centre, m/s^3; needs the speed", 5.0)
    wheelbase_m: float = config_field("the vehicle's wheelbase, m (the built-in simulator's truck: 6.0)", 6.0)
    full_lock_rad: float = config_field("road-wheel angle at full steering lock, rad (the built-in simulator: 0.15)", 0.15)
    pedal_tau_s: float = config_field("time constant (s) of the EMA smoothing of the throttle target (the brake is "
                               "only rate limited: braking is never smoothed away)", 0.05)
    throttle_rate_up: float = config_field("throttle rate limit pressing, travel per s (longitudinal jerk limit)", 2.0)
    throttle_rate_down: float = config_field("throttle rate limit releasing, travel per s", 5.0)
    brake_rate_up: float = config_field("brake rate limit pressing, travel per s (full brake in 0.1 s)", 10.0)
    brake_rate_down: float = config_field("brake rate limit releasing, travel per s", 3.0)

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"AxisConfig.{name}={value!r}: must be finite and >= 0")
        for name in ("steer_rate_up", "steer_rate_down", "throttle_rate_up", "throttle_rate_down",
                     "brake_rate_up", "brake_rate_down", "wheelbase_m", "full_lock_rad"):
            if getattr(self, name) <= 0:
                raise ValueError(f"AxisConfig.{name} must be > 0 (a rate of 0 would freeze the axis)")

    def to_record(self) -> dict:
        """These settings as JSON values (for a recorded drive's manifest)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    # ---- the physical steering limits ----------------------------------------
    def steer_cap(self, speed_mps: float | None) -> float:
        """|steer| at which the lateral acceleration reaches ``max_lat_accel_mps2`` at ``speed_mps``
        (1.0: no cap, for an unknown or low speed)."""
        if speed_mps is None or self.max_lat_accel_mps2 <= 0:
            return 1.0
        v2 = speed_mps * speed_mps
        if v2 < 1e-6:
            return 1.0
        return min(1.0, math.atan(self.max_lat_accel_mps2 * self.wheelbase_m / v2) / self.full_lock_rad)

    def steer_rate_caps(self, speed_mps: float | None) -> tuple[float, float]:
        """(rate up, rate down) of the steer, full lock per s: the plain rate limits, lowered to
        the lateral jerk caps at ``speed_mps`` when it is known (small-angle: jerk = v^2 d / L x rate)."""
        up, down = self.steer_rate_up, self.steer_rate_down
        if speed_mps is None or speed_mps * speed_mps < 1e-6:
            return up, down
        per_rate = speed_mps * speed_mps * self.full_lock_rad / self.wheelbase_m  # m/s^3 per (full lock / s)
        if self.max_lat_jerk_up_mps3 > 0:
            up = min(up, self.max_lat_jerk_up_mps3 / per_rate)
        if self.max_lat_jerk_down_mps3 > 0:
            down = min(down, self.max_lat_jerk_down_mps3 / per_rate)
        return up, down


def slew(value: float, target: float, dt: float, rate_up: float, rate_down: float, neutral: float = 0.0) -> float:
    """``value`` moved toward ``target`` by at most ``rate_up * dt`` where it moves away from
    ``neutral`` and ``rate_down * dt`` where it moves toward it (crossing neutral: down to it, then
    up beyond it, within the one step)."""
    if dt <= 0 or target == value:
        return value if dt <= 0 else target
    budget = dt
    toward_neutral = abs(target - neutral) < abs(value - neutral) or (target - neutral) * (value - neutral) < 0
    if toward_neutral:
        # first back toward neutral (no further than neutral, or the target if it is nearer)
        stop = neutral if (target - neutral) * (value - neutral) < 0 else target
        step = rate_down * budget
        if abs(stop - value) > step:
            return value + math.copysign(step, stop - value)
        budget -= abs(stop - value) / rate_down
        value = stop
        if value == target:
            return value
    step = rate_up * budget
    if abs(target - value) > step:
        return value + math.copysign(step, target - value)
    return target


class AxisShaper:
    """The controller's ``Action`` -> rate-, jerk- and acceleration-limited, smoothed ``Axes``.

    All state is in the object. ``update`` is called once per decision with the decision's clock
    ``now`` (s) and the truck's speed (m/s) when known.
    """

    def __init__(self, config: AxisConfig | None = None) -> None:
        self.config = config or AxisConfig()
        self.reset()

    def reset(self) -> None:
        self._last: float | None = None
        self._targets = [0.0, 0.0, 0.0]  # smoothed steer, throttle, brake targets
        self.axes = Axes()

    def update(self, action: Action, now: float, speed_mps: float | None = None,
               steer_signal: float | None = None, head_steer: float | None = None) -> Axes:
        """One decision -> Axes. ``action``: the controller's (its throttle and brake are used; its
        steer only when neither signal is given); the steer target is ``head_gain`` x ``head_steer``
        (the steering head's value) when given, else ``steer_gain`` x ``steer_signal`` (the
        smoothed p_right - p_left); all in [-1, 1], + = right."""
        c = self.config
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        first = self._last is None
        self._last = now
        if head_steer is not None:
            raw_steer = c.head_steer_gain * float(head_steer)
        elif steer_signal is not None:
            x = float(steer_signal)
            raw_steer = c.steer_gain * x + c.steer_gain_cubic * x * x * x
        else:
            raw_steer = action.steer
        if not all(math.isfinite(float(x)) for x in (raw_steer, action.throttle, action.brake)):
            raise ValueError(f"AxisShaper.update: non-finite action {action!r} / steer signal {steer_signal!r} "
                             f"/ head steer {head_steer!r}")
        cap = c.steer_cap(speed_mps)
        raw = (max(-cap, min(cap, raw_steer)), min(1.0, max(0.0, action.throttle)),
               min(1.0, max(0.0, action.brake)))
        taus = (c.steer_tau_s, c.pedal_tau_s, 0.0)
        for i, (target, tau) in enumerate(zip(raw, taus)):
            self._targets[i] = target if first else self._targets[i] + ema_alpha(dt, tau) * (target - self._targets[i])
        if first:  # the first decision starts from neutral: the axes only move with time
            return self.axes
        up, down = c.steer_rate_caps(speed_mps)
        steer = slew(self.axes.steer, self._targets[0], dt, up, down)
        throttle = slew(self.axes.throttle, self._targets[1], dt, c.throttle_rate_up, c.throttle_rate_down)
        brake = slew(self.axes.brake, self._targets[2], dt, c.brake_rate_up, c.brake_rate_down)
        if brake > 0.0:
            throttle = slew(self.axes.throttle, 0.0, dt, c.throttle_rate_up, c.throttle_rate_down)
        self.axes = Axes.clipped(steer, throttle, brake)
        return self.axes

"""Control for an axis (agent.runtime.axis_control): smoothing, rate limits, the speed-dependent
lateral-acceleration and jerk caps, and the agent's decider driving axes instead of keys."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.io.axes import Axes
from agent.runtime.axis_control import AxisConfig, AxisShaper, slew
from agent.runtime.controller import Controller
from agent.runtime.loop import Observation
from agent.runtime.parts import AgentDecider
from agent.types import Action, Frame, KeysHeld
from perception.types import Perception

DT = 1 / 15


def drive(shaper: AxisShaper, action: Action, steps: int, speed=None, signal=None, dt: float = DT) -> list[Axes]:
    return [shaper.update(action, i * dt, speed, steer_signal=signal) for i in range(steps)]


def test_a_step_in_the_target_is_rate_limited_and_smoothed():
    c = AxisConfig(steer_tau_s=0.0, steer_rate_up=1.0, pedal_tau_s=0.0)
    out = drive(AxisShaper(c), Action(steer=1.0, throttle=1.0, brake=0.0), 16)
    steer = [a.steer for a in out]
    assert steer[0] == 0.0  # the first decision starts from neutral
    assert all(b - a <= 1.0 * DT + 1e-9 for a, b in zip(steer, steer[1:]))  # at most 1 full lock / s
    assert steer[-1] == pytest.approx(1.0)  # 15 steps x 1/15 s at 1 / s: there
    shaper = AxisShaper(AxisConfig(steer_tau_s=0.3, steer_rate_up=100.0))
    shaper.update(Action(steer=0.0), 0.0)  # straight, then a step to full right
    smoothed = [shaper.update(Action(steer=1.0), i * DT).steer for i in range(1, 16)]
    assert 0.0 < smoothed[0] < smoothed[5] < 1.0  # the EMA approaches, it does not jump
    assert smoothed[0] == pytest.approx(1.0 - math.exp(-DT / 0.3))


def test_going_back_to_centre_is_faster_than_leaving_it():
    c = AxisConfig(steer_tau_s=0.0, steer_rate_up=1.0, steer_rate_down=3.0)
    shaper = AxisShaper(c)
    drive(shaper, Action(steer=1.0), 16)
    assert shaper.axes.steer == pytest.approx(1.0)
    back = [shaper.update(Action(steer=0.0), (16 + i) * DT).steer for i in range(6)]
    assert back[0] == pytest.approx(1.0 - 3.0 * DT)
    assert back[4] == pytest.approx(0.0, abs=1e-9)


def test_slew_crosses_centre_at_the_down_rate_then_the_up_rate():
    # from +0.1 to -1 in 0.1 s: 0.1 back to centre at 2 / s takes 0.05 s, then 0.05 s at 1 / s beyond it
    assert slew(0.1, -1.0, 0.1, rate_up=1.0, rate_down=2.0) == pytest.approx(-0.05)
    assert slew(0.5, 0.2, 0.1, rate_up=1.0, rate_down=2.0) == pytest.approx(0.3)  # toward centre: down rate
    assert slew(0.2, 0.5, 0.1, rate_up=1.0, rate_down=2.0) == pytest.approx(0.3)  # away: up rate


@pytest.mark.parametrize("speed", [15.0, 20.0, 25.0])
def test_the_steer_is_capped_at_iso_11270s_lateral_acceleration(speed):
    c = AxisConfig()
    assert c.steer_cap(10.0) == 1.0  # full lock at 10 m/s is 2.5 m/s^2 on the default truck: no cap
    cap = c.steer_cap(speed)
    assert cap < 1.0
    lateral = speed ** 2 * math.tan(cap * c.full_lock_rad) / c.wheelbase_m
    assert lateral == pytest.approx(c.max_lat_accel_mps2)  # exactly at 3 m/s^2
    shaper = AxisShaper(AxisConfig(steer_tau_s=0.0))
    out = drive(shaper, Action(steer=1.0), 300, speed=speed)
    assert max(a.steer for a in out) == pytest.approx(cap)
    assert c.steer_cap(None) == 1.0 and c.steer_cap(0.0) == 1.0  # unknown or no speed: no cap


def test_the_steer_rate_is_capped_by_the_lateral_jerk_at_speed():
    c = AxisConfig(steer_tau_s=0.0)
    speed = 20.0
    up, down = c.steer_rate_caps(speed)
    per_rate = speed ** 2 * c.full_lock_rad / c.wheelbase_m
    assert up * per_rate == pytest.approx(c.max_lat_jerk_up_mps3) and up < c.steer_rate_up
    assert down * per_rate == pytest.approx(c.max_lat_jerk_down_mps3)
    steer = [a.steer for a in drive(AxisShaper(c), Action(steer=1.0), 20, speed=speed)]
    jerk = [(b - a) / DT * per_rate for a, b in zip(steer, steer[1:])]
    assert max(jerk) == pytest.approx(c.max_lat_jerk_up_mps3)
    assert c.steer_rate_caps(None) == (c.steer_rate_up, c.steer_rate_down)


def test_the_brake_lifts_the_throttle_and_pedals_are_rate_limited():
    c = AxisConfig(pedal_tau_s=0.0, throttle_rate_up=2.0, brake_rate_up=5.0, throttle_rate_down=5.0)
    shaper = AxisShaper(c)
    drive(shaper, Action(throttle=1.0), 10)
    assert shaper.axes.throttle == pytest.approx(1.0)
    a = shaper.update(Action(throttle=0.0, brake=1.0), 10 * DT)
    assert a.brake == pytest.approx(5.0 * DT) and a.throttle == pytest.approx(1.0 - 5.0 * DT)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="steer_rate_up"):
        AxisConfig(steer_rate_up=0.0)
    with pytest.raises(ValueError, match="max_lat_accel_mps2"):
        AxisConfig(max_lat_accel_mps2=float("nan"))
    shaper = AxisShaper()
    shaper.update(Action(), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        shaper.update(Action(), DT, steer_signal=float("nan"))


class FixedPerceiver:
    """A perceiver whose every frame says ``probs`` (and ``steer``, the steering head's value)."""

    def __init__(self, probs: dict[str, float], steer: float | None = None) -> None:
        self.probs, self.steer = probs, steer

    def __call__(self, image) -> Perception:
        direction = max(self.probs, key=self.probs.get)
        kwargs = {"steer": self.steer} if self.steer is not None else {}
        return Perception(direction=direction, direction_probs=dict(self.probs), detections=(), **kwargs)


def observation(i: int, speed=None) -> Observation:
    return Observation(frame=Frame(np.zeros((24, 32, 3), np.uint8), 0.0, i), clock_s=i * DT, speed_mps=speed)


def test_the_agent_decider_drives_axes_from_the_continuous_steer_signal_and_presses_no_key():
    probs = {"left": 0.1, "straight": 0.3, "right": 0.6}  # p_right - p_left = 0.5: below the keys' hysteresis
    decider = AgentDecider(FixedPerceiver(probs), Controller(), use_speed=False, axes=AxisShaper())
    decisions = [decider.decide(observation(i)) for i in range(30)]
    assert all(d.keys == KeysHeld() for d in decisions)
    c = AxisConfig()
    assert decisions[-1].axes.steer == pytest.approx(c.steer_gain * 0.5 + c.steer_gain_cubic * 0.5 ** 3, abs=1e-3)
    assert decisions[-1].axes.throttle > 0  # the controller's cruise duty, as a pedal
    keys_only = AgentDecider(FixedPerceiver(probs), Controller(), use_speed=False)
    assert keys_only.decide(observation(0)).axes is None


def test_a_steering_head_value_takes_precedence_over_the_class_probabilities():
    if "steer" not in Perception.__dataclass_fields__:
        pytest.fail("perception.types.Perception has no steer field (the steering head)")
    decider = AgentDecider(FixedPerceiver({"left": 0.0, "straight": 0.0, "right": 1.0}, steer=-0.2), Controller(),
                           use_speed=False, axes=AxisShaper())
    last = [decider.decide(observation(i)) for i in range(30)][-1]
    assert last.axes.steer == pytest.approx(-0.2 * AxisConfig().head_steer_gain, abs=1e-3)

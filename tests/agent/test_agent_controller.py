"""Controller: hysteresis, PWM duty, speed holding, TTC braking."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.runtime.controller import Controller, ControllerConfig, KeyPwm
from agent.types import Action
from perception.types import Detection, Perception

W, H = 640, 360


def probs(left: float, right: float) -> Perception:
    return Perception(direction="straight", direction_probs={"left": left, "straight": 1 - left - right, "right": right})


def straight(detections=()) -> Perception:
    return Perception("straight", {"left": 0.0, "straight": 1.0, "right": 0.0}, tuple(detections))


def test_hysteresis_enter_and_exit_thresholds():
    ctl = Controller(ControllerConfig(steer_tau_s=0.0, steer_enter=0.4, steer_exit=0.2, steer_gain=1.0))
    t = 0.0
    def step(left, right):
        nonlocal t
        t += 0.05
        return ctl.update(probs(left, right), t, (W, H)).steer
    assert step(0.3, 0.0) == 0.0           # |steer| 0.3 < enter: not steering yet
    assert step(0.5, 0.0) == pytest.approx(-0.5)  # crosses enter: steer left
    assert step(0.3, 0.0) == pytest.approx(-0.3)  # between exit and enter: keeps steering
    assert step(0.1, 0.0) == 0.0           # below exit: stops
    assert step(0.3, 0.0) == 0.0           # back between: stays stopped
    assert step(0.0, 0.6) == pytest.approx(0.6)   # right
    assert step(0.5, 0.0) == pytest.approx(-0.5)  # swung through to the left side


def test_steer_gain_scales_and_clips():
    ctl = Controller(ControllerConfig(steer_tau_s=0.0, steer_gain=0.5))
    assert ctl.update(probs(0.0, 0.9), 0.0, (W, H)).steer == pytest.approx(0.45)
    ctl = Controller(ControllerConfig(steer_tau_s=0.0, steer_gain=3.0))
    assert ctl.update(probs(0.9, 0.0), 0.0, (W, H)).steer == -1.0


def test_ema_smooths_a_single_frame_spike():
    ctl = Controller(ControllerConfig(steer_tau_s=0.3, steer_enter=0.35, steer_gain=1.0))
    ctl.update(probs(0.0, 0.0), 0.0, (W, H))
    assert ctl.update(probs(0.0, 1.0), 0.05, (W, H)).steer == 0.0  # one spike: EMA ~0.15
    steers = [ctl.update(probs(0.0, 1.0), 0.05 * i, (W, H)).steer for i in range(2, 40)]
    assert steers[-1] > 0.9 and all(b >= a for a, b in zip(steers, steers[1:]))


@pytest.mark.parametrize("value", [0.1, 0.3, 0.5, 0.77, 0.9])
@pytest.mark.parametrize("tick", [0.005, 0.05])
def test_pwm_duty_matches_value(value, tick):
    pwm = KeyPwm(period_s=0.25, deadzone=0.05)
    times = np.arange(0, 2.0, tick)
    down = [pwm.update(value, t) for t in times]
    duty = float(np.mean(down))
    assert duty == pytest.approx(value, abs=tick / 0.25 * 0.5 + 0.02)
    # and within each period window (after the first), not only on average
    per_window = int(round(0.25 / tick))
    for start in range(per_window, len(down) - per_window, per_window):
        window = np.mean(down[start:start + per_window])
        assert abs(window - value) <= 1.0 / per_window + 1e-9


def test_pwm_extremes_and_durations():
    pwm = KeyPwm(period_s=0.2)
    assert not any(pwm.update(0.0, t) for t in np.arange(0, 1, 0.01))
    assert all(pwm.update(1.0, t) for t in np.arange(0, 1, 0.01))
    assert pwm.durations(0.25) == pytest.approx((0.05, 0.15))


def test_keys_for_turns_steer_into_left_key_duty():
    ctl = Controller(ControllerConfig(pwm_period_s=0.25))
    times = np.arange(0, 2.5, 0.01)
    keys = [ctl.keys_for(Action(steer=-0.4, throttle=0.6), t) for t in times]
    assert np.mean([k.left for k in keys]) == pytest.approx(0.4, abs=0.03)
    assert not any(k.right for k in keys)
    assert np.mean([k.throttle for k in keys]) == pytest.approx(0.6, abs=0.03)
    braking = [ctl.keys_for(Action(steer=0.0, throttle=0.8, brake=1.0), t) for t in times + 3]
    assert all(k.brake and not k.throttle for k in braking)


def test_speed_is_held_when_known():
    ctl = Controller(ControllerConfig(target_speed_mps=10.0))
    slow = ctl.update(straight(), 0.0, (W, H), speed_mps=4.0)
    assert slow.throttle > 0.9 and slow.brake == 0.0
    fast = ctl.update(straight(), 0.1, (W, H), speed_mps=16.0)
    assert fast.throttle == 0.0 and fast.brake > 0.0
    near = ctl.update(straight(), 0.2, (W, H), speed_mps=10.5)
    assert near.throttle == 0.0 and near.brake == 0.0
    unknown = ctl.update(straight(), 0.3, (W, H))
    assert unknown.throttle == pytest.approx(ctl.config.cruise_throttle)


def car(cx: float, bottom: float, h: float, label="car") -> Detection:
    return Detection(box=(cx - h, bottom - h, cx + h, bottom), label=label, score=0.9)


def drive(ctl, boxes, dt=0.05):
    actions = []
    for i, box in enumerate(boxes):
        actions.append(ctl.update(straight([box] if box else []), i * dt, (W, H), speed_mps=10.0))
    return actions


def test_growing_box_in_path_triggers_brake():
    ctl = Controller()
    # height grows 10 % per 50 ms frame: d ln h/dt ~ 1.9/s -> TTC ~ 0.5 s < 2 s
    boxes = [car(W / 2, 250 + 2 * i, 40 * 1.1 ** i) for i in range(12)]
    actions = drive(ctl, boxes)
    assert actions[0].brake == 0.0
    assert actions[-1].brake == 1.0 and actions[-1].throttle == 0.0
    assert ctl.obstacle.ttc_s < ctl.config.ttc_brake_s


@pytest.mark.parametrize("speed,brakes", [(None, False), (3.0, False), (15.0, True)])
def test_with_the_real_speed_the_ttc_threshold_is_the_stopping_time(speed, brakes):
    """A box closing at TTC ~2.5 s: past the 2 s of an unknown speed; at 15 m/s the truck needs
    15 / (2 x 3) + 0.5 = 3 s to stop, so it brakes; at 3 m/s 1 s, so it need not yet. (The box stands
    ~10 m off by its bottom row: ``stop_gap_m`` 0 keeps the range rule, tested below, out of this.)"""
    c = ControllerConfig(stop_gap_m=0.0)
    assert c.ttc_threshold(None) == c.ttc_brake_s
    assert c.ttc_threshold(15.0) == pytest.approx(15.0 / (2 * c.brake_decel_mps2) + c.reaction_s) == pytest.approx(3.0)
    ctl = Controller(c)
    rate = math.exp(0.05 / 2.5)  # d ln h / dt = 0.4 / s
    actions = [ctl.update(straight([car(W / 2, 250 + i, 40 * rate ** i)]), i * 0.05, (W, H), speed_mps=speed)
               for i in range(40)]
    assert ctl.obstacle.ttc_s == pytest.approx(2.5, rel=0.05)
    assert (actions[-1].brake == 1.0) is brakes, (speed, ctl.obstacle)


def row_at(distance_m: float, c: ControllerConfig = ControllerConfig()) -> float:
    """The image row (px, W x H frame) of the road point ``distance_m`` ahead of the camera."""
    focal = 0.5 * W / math.tan(math.radians(c.hfov_deg) / 2)
    return c.horizon * H + c.camera_height_m * focal / distance_m


def test_range_is_the_flat_road_distance_of_the_box_bottom():
    c = ControllerConfig()
    for d in (5.0, 12.0, 40.0):
        assert c.range_m(row_at(d), W, H) == pytest.approx(d)
    assert math.isinf(c.range_m(c.horizon * H, W, H)) and math.isinf(c.range_m(10.0, W, H))
    assert c.stopping_range_m(12.0, 0.0) == pytest.approx(c.stop_gap_m + 12.0 * c.reaction_s + 144 / 6)
    assert c.stopping_range_m(12.0, 12.0) == pytest.approx(c.stop_gap_m + 6.0)  # same speed: headway only
    assert c.stopping_range_m(0.0, 0.0) == c.stop_gap_m


@pytest.mark.parametrize("distance,brakes", [(32.0, True), (45.0, False)])
def test_a_standing_vehicle_is_braked_for_by_range_before_its_ttc_says_so(distance, brakes):
    """Closing on a standing vehicle at 12 m/s: its box bottom and height follow its distance d.
    At 32 m its TTC is 2.7 s, over the 2.5 s TTC threshold, but the truck needs 8 + 6 + 24 = 38 m:
    the range rule brakes; at 45 m neither does."""
    c = ControllerConfig()
    ctl = Controller(c)
    speed, dt, frames = 12.0, 0.05, 20
    actions = []
    for i in range(frames + 1):
        d = distance + speed * dt * (frames - i)
        actions.append(ctl.update(straight([car(W / 2, row_at(d), 0.5 * 600 / d)]), i * dt, (W, H), speed_mps=speed))
    assert ctl.obstacle.ttc_s > c.ttc_threshold(speed) and ctl.obstacle.ttc_s == pytest.approx(distance / speed, rel=0.1)
    assert (actions[-1].brake == 1.0) is brakes, ctl.obstacle
    assert ctl.obstacle.range_m == pytest.approx(distance)
    if brakes:  # the range rule alone: off (range_brake false), the TTC rule does not brake yet
        ctl = Controller(ControllerConfig(range_brake=False))
        for i in range(frames + 1):
            d = distance + speed * dt * (frames - i)
            action = ctl.update(straight([car(W / 2, row_at(d), 0.5 * 600 / d)]), i * dt, (W, H), speed_mps=speed)
        assert action.brake == 0.0 and math.isinf(ctl.obstacle.range_m)


@pytest.mark.parametrize("speed", [10.0, None])
def test_a_box_closing_faster_than_the_truck_drives_is_oncoming_and_not_braked_for(speed):
    """An oncoming car in the corridor on a bend, 70 -> 25 m at 30 m/s closing (TTC 0.8 s at the end):
    with the truck's speed known (10 m/s) nothing in its lane can close that fast, so neither rule
    brakes; without a speed the TTC rule must (it cannot tell)."""
    ctl = Controller()
    closing, dt, frames = 30.0, 0.05, 30
    for i in range(frames + 1):
        d = 25.0 + closing * dt * (frames - i)
        action = ctl.update(straight([car(W / 2, row_at(d), 0.5 * 600 / d)]), i * dt, (W, H), speed_mps=speed)
    assert ctl.obstacle.ttc_s < 1.5  # the smoothed growth lags the true 0.8 s a little
    assert action.brake == (0.0 if speed else 1.0), ctl.obstacle


def test_a_new_track_is_not_judged_oncoming_so_a_box_that_snaps_bigger_is_braked_for():
    """Seen on a vehicle coming out of fog, 27 m ahead at 11 m/s: its box snapped from 14 to 19 px in one
    frame, a growth rate that reads as closing at 28 m/s. In its first oncoming_min_track_s the track
    is not judged oncoming, so the truck brakes."""
    ctl = Controller()
    for i, (d, h) in enumerate(((27.3, 14.6), (26.8, 14.3), (23.2, 19.2))):
        bottom = row_at(d)
        action = ctl.update(straight([Detection((W / 2 - 20, bottom - h, W / 2 + 20, bottom), "car", 0.9)]),
                            i / 15, (W, H), speed_mps=11.0)
    assert ctl.obstacle.closing_mps > 11.0 + ctl.config.oncoming_margin_mps  # it looks oncoming
    assert action.brake == 1.0, ctl.obstacle


@pytest.mark.parametrize("distance,speed,brakes", [
    (20.0, 0.0, False),    # standing still 20 m behind a standing vehicle: creep closer
    (6.0, 0.0, True),      # ... 6 m behind it: hold
    (6.0, None, False),    # no speed, no range rule: a static box has no TTC
])
def test_standing_behind_a_vehicle_the_range_holds_the_truck_short_of_it(distance, speed, brakes):
    ctl = Controller()
    actions = [ctl.update(straight([car(W / 2, row_at(distance), 30)]), i * 0.05, (W, H), speed_mps=speed)
               for i in range(10)]
    assert math.isinf(ctl.obstacle.ttc_s)
    assert (actions[-1].brake == 1.0) is brakes, (distance, speed, ctl.obstacle)


def test_a_lead_at_the_trucks_own_speed_is_braked_for_only_inside_the_headway():
    """A box that keeps its size moves at the truck's speed: braking distance 0, so only closer than
    stop_gap_m + v x reaction_s (14 m at 12 m/s)."""
    for distance, brakes in ((18.0, False), (11.0, True)):
        ctl = Controller()
        actions = [ctl.update(straight([car(W / 2, row_at(distance), 30)]), i * 0.05, (W, H), speed_mps=12.0)
                   for i in range(10)]
        assert (actions[-1].brake == 1.0) is brakes, distance


@pytest.mark.parametrize("growth", [1.0, 0.97])
def test_static_or_shrinking_box_does_not_brake(growth):
    ctl = Controller()
    boxes = [car(W / 2, 250, 60 * growth ** i) for i in range(20)]
    actions = drive(ctl, boxes)
    assert all(a.brake == 0.0 for a in actions)
    assert math.isinf(ctl.obstacle.ttc_s)


def test_growing_box_outside_corridor_or_not_a_vehicle_does_not_brake():
    ctl = Controller()
    side = [car(60, 250, 40 * 1.1 ** i) for i in range(12)]  # left edge of the frame
    assert all(a.brake == 0.0 for a in drive(ctl, side))
    ctl.reset()
    sky = [Detection((300, 10, 340, 10 + 20 * 1.1 ** i), "car", 0.9) for i in range(12)]  # above corridor
    assert all(a.brake == 0.0 for a in drive(ctl, sky))
    ctl.reset()
    sign = [car(W / 2, 250, 40 * 1.1 ** i, label="sign") for i in range(12)]
    assert all(a.brake == 0.0 for a in drive(ctl, sign))


def test_brake_is_held_after_the_obstacle_leaves_then_released():
    ctl = Controller(ControllerConfig(brake_hold_s=0.5))
    boxes = [car(W / 2, 250 + 2 * i, 40 * 1.1 ** i) for i in range(12)] + [None] * 20
    actions = drive(ctl, boxes)
    assert actions[12].brake == 1.0          # gone 1 frame ago: still holding
    assert actions[-1].brake == 0.0 and actions[-1].throttle > 0  # hold expired


def test_config_validation_and_help():
    with pytest.raises(ValueError, match="steer_exit"):
        ControllerConfig(steer_enter=0.2, steer_exit=0.3)
    assert "time-to-collision" in ControllerConfig.help()["ttc_brake_s"]


def test_corridor_narrows_with_perspective_and_excludes_the_next_lane():
    ctl = Controller(ControllerConfig(corridor_top=0.45, corridor_bottom_width=0.5, corridor_top_width=0.04))
    assert ctl.corridor_at(0.4 * H, W, H) is None  # above the horizon
    near = ctl.corridor_at(H, W, H)
    far = ctl.corridor_at(0.5 * H, W, H)
    assert near == pytest.approx((0.25 * W, 0.75 * W))
    assert far[1] - far[0] < 0.1 * W
    # an oncoming car far away, left of centre, growing fast: not in our lane, no brake
    oncoming = [Detection((0.27 * W, 0.46 * H - 8 * 1.1 ** i, 0.34 * W, 0.52 * H), "car", 0.9) for i in range(12)]
    assert all(a.brake == 0.0 for a in drive(ctl, oncoming))

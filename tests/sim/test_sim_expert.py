"""The scripted expert: clean drives, stops for people, follows slow traffic."""
from __future__ import annotations

import numpy as np

from sim.env import TruckSimEnv
from sim.tools.evaluate_expert import evaluate_expert
from sim.expert import Expert
from sim.road import LANE_CENTRES_M, Road
from sim.actors import Pedestrian, Vehicle
from sim.truck import TRUCK_LENGTH_M, TruckControls
from sim.world import World

DT = 1.0 / 15.0


def test_expert_two_seeds_one_km_clean():
    report = evaluate_expert(seeds=(0, 1), route_length_m=1000.0, progress=False)
    assert report.all_finished
    assert report.collisions == 0
    assert report.off_road_steps == 0
    assert report.mean_abs_lateral_offset_m < 0.4
    shares = report.direction_shares
    assert all(shares[d] > 0.05 for d in ("left", "straight", "right")), shares


def _straight_world(crossing_s: float | None = None) -> World:
    road = Road(np.zeros(1500), (), np.array([crossing_s] if crossing_s else []))
    w = World(0, route_length_m=2500.0, traffic_density=0.0, pedestrian_density=0.0, road=road)
    w.truck.v = 20.0
    return w


def _step(w: World, expert: Expert) -> tuple[str, ...]:
    keys = expert.act(w)
    return w.step(DT, TruckControls.from_keys(*(bool(k) for k in keys)))


def test_expert_stops_for_a_crossing_pedestrian_then_drives_on():
    w = _straight_world(crossing_s=220.0)
    person = Pedestrian(500, 220.0, 9.5, "cross", 0.0, 1.8, (200, 0, 0), (0, 0, 80), (230, 190, 160), 220.0)
    person.v_lat = -0.3  # dawdling: needs 37 s to clear the truck's half of the road
    w.pedestrians.append(person)
    expert = Expert(seed=0)
    min_gap, stopped = np.inf, False
    for _ in range(int(50 / DT)):
        events = _step(w, expert)
        assert "collision" not in events
        if person.state == "cross" and person.d > -1.5:
            min_gap = min(min_gap, 220.0 - w.truck.s)
            stopped |= w.truck.v < 0.1
    assert stopped and min_gap > 0.5  # waited before the zebra
    assert w.truck.s > 225.0 and w.truck.v > 3.0  # and went on once the person had passed


def test_expert_follows_a_slow_truck_when_it_cannot_pass():
    w = _straight_world()
    slow = Vehicle(7, "truck", 0, 1, 3, w.truck.s + 60.0, 10.0, 10.0, 14.0, 2.5, 3.8, (200, 200, 0), (220, 220, 220), 0.8)
    # the passing lane is blocked by a car alongside, matching the truck's speed
    blocker = Vehicle(8, "car", 0, 1, 2, w.truck.s + 5.0, 10.0, 10.0, 4.5, 1.8, 1.5, (0, 0, 200), (40, 40, 40), 1.5)
    w.vehicles += [slow, blocker]
    expert = Expert(seed=0)
    for _ in range(int(30 / DT)):
        events = _step(w, expert)
        assert "collision" not in events
        blocker.s = w.truck.s - 5.0  # stays alongside
        assert abs(w.truck.d - LANE_CENTRES_M[3]) < 1.0  # did not pull out
    gap = slow.s - slow.length / 2 - w.truck.s
    assert abs(w.truck.v - 10.0) < 1.5 and 12.0 < gap < 40.0


def test_expert_on_env_and_direction_label_agree():
    env = TruckSimEnv(width=96, height=72, traffic_density=0.5)
    env.reset(seed=11)
    expert = Expert(seed=0)
    for _ in range(200):
        action = expert.act(env)
        assert action.dtype == np.int8 and action.shape == (4,) and not (action[0] and action[1])
        _, _, term, _, info = env.step(action)
        assert not term
        steer = expert.intended_steer(env)
        assert -1.0 <= steer <= 1.0
        assert info["direction"] == expert.direction(env)
    assert info["speed"] > 8.0


def test_expert_overtakes_a_slow_truck_when_the_passing_lane_is_clear():
    w = _straight_world()
    slow = Vehicle(7, "truck", 0, 1, 3, w.truck.s + 70.0, 11.0, 11.0, 14.0, 2.5, 3.8, (200, 200, 0), (220, 220, 220), 0.8)
    w.vehicles.append(slow)
    expert = Expert(seed=0)
    lanes = set()
    for _ in range(int(60 / DT)):
        assert "collision" not in _step(w, expert)
        lanes.add(w.nearest_lane())
        if w.truck.s - TRUCK_LENGTH_M > slow.s + 40 and w.nearest_lane() == 3:
            break
    assert lanes == {2, 3}  # pulled out to pass and came back
    assert w.truck.s - TRUCK_LENGTH_M > slow.s + slow.length / 2  # and is ahead of it now


def test_waiting_pedestrian_does_not_step_out_in_front_of_the_truck():
    w = _straight_world(crossing_s=120.0)
    person = Pedestrian(501, 120.0, 10.0, "wait", 0.0, 1.7, (0, 200, 0), (0, 0, 80), (230, 190, 160), 120.0)
    w.pedestrians.append(person)
    expert = Expert(seed=0)
    started_at = None
    for i in range(int(20 / DT)):
        assert "collision" not in _step(w, expert)
        if person.state == "cross" and started_at is None:
            started_at = w.truck.s
    # it only started once the truck could stop comfortably before the zebra, or had passed it
    assert started_at is None or started_at > 120.0 or 120.0 - started_at > 20.0**2 / 4.0


def test_continuous_actions_drive_too():
    env = TruckSimEnv(width=96, height=72, continuous=True, traffic_density=0.5)
    env.reset(seed=5)
    expert = Expert(seed=0)
    for _ in range(300):
        action = expert.act_continuous(env)
        assert env.action_space.contains(action)
        _, _, term, _, info = env.step(action)
        assert not term and "off_road" not in info["events"]
    assert info["speed"] > 8.0 and abs(info["lateral_offset"]) < 1.0

"""Stopped (broken-down) vehicles in the truck's lane (``SimConfig.stopped_per_km``): where they stand,
that they never move, that nothing changes without them, and that the expert passes them."""
from __future__ import annotations

import numpy as np
import pytest

from sim.actors import Vehicle
from sim.config import SimConfig
from sim.expert import STOPPED_WAIT_GAP_M, Expert
from sim.road import EGO_START_LANE, LANE_CENTRES_M, Road
from sim.truck import TRUCK_LENGTH_M, TruckControls
from sim.world import STOPPED_CROSSING_CLEAR_M, STOPPED_FIRST_M, World

DT = 1.0 / 15.0


def _drive(w: World, expert: Expert, seconds: float, until=None) -> list[tuple[str, ...]]:
    events = []
    for _ in range(int(seconds / DT)):
        keys = expert.act(w)
        events.append(w.step(DT, TruckControls.from_keys(*(bool(k) for k in keys))))
        if "collision" in events[-1] or (until is not None and until()):
            break
    return events


def test_none_by_default_and_the_option_is_checked():
    assert SimConfig().stopped_per_km == 0.0
    w = World(3, route_length_m=2000.0)
    assert w.pending_stopped_s == [] and not any(v.stopped for v in w.vehicles)
    with pytest.raises(ValueError, match="stopped_per_km"):
        SimConfig(stopped_per_km=-1.0)


def test_they_stand_in_the_truck_lane_at_the_rate_asked_and_never_move():
    w = World(5, route_length_m=5000.0, traffic_density=1.0, stopped_per_km=2.0)
    planned = sorted(list(w.pending_stopped_s) + [v.s for v in w.vehicles if v.stopped])
    assert 6 <= len(planned) <= 14, planned  # 2 per km over ~4.8 km, spaced 0.5-1.5 x 500 m
    assert planned[0] >= w.start_s + STOPPED_FIRST_M
    before, after = STOPPED_CROSSING_CLEAR_M
    for s in planned:  # never on or just before a zebra crossing
        assert all(not (c - before < s < c + after) for c in w.road.crossings), (s, w.road.crossings)
    placed = {}
    _drive(w, Expert(seed=5), 40.0)
    for v in w.vehicles:
        if v.stopped:
            placed.setdefault(v.uid, v.s)
            assert v.lane == EGO_START_LANE and v.d == LANE_CENTRES_M[EGO_START_LANE] and v.v == 0.0
            assert v.s == placed[v.uid]
    assert placed, "no stopped vehicle within reach after 40 s"


def _straight_world_with_a_stopped(kind: str, blocked: bool) -> tuple[World, Vehicle]:
    road = Road(np.zeros(1500), (), np.array([]))
    w = World(0, route_length_m=2500.0, traffic_density=0.0, pedestrian_density=0.0, road=road)
    w.truck.v = 20.0
    length, width = (14.0, 2.55) if kind == "truck" else (4.6, 1.9)
    stopped = Vehicle(7, kind, 0, 1, 3, w.truck.s + 150.0, 0.0, 0.0, length, width, 3.0, (200, 0, 0), (9, 9, 9), 1.0)
    stopped.stopped = True
    w.vehicles.append(stopped)
    if blocked:  # a slow truck alongside in the passing lane: the expert must wait behind
        w.vehicles.append(Vehicle(8, "truck", 0, 1, 2, w.truck.s + 20.0, 9.0, 9.0, 16.0, 2.5, 3.8, (0, 0, 200),
                                  (9, 9, 9), 0.8))
    return w, stopped


@pytest.mark.parametrize("kind", ["car", "truck"])
def test_expert_passes_a_stopped_vehicle_when_the_passing_lane_is_clear(kind):
    w, stopped = _straight_world_with_a_stopped(kind, blocked=False)
    events = _drive(w, Expert(seed=0), 30.0, until=lambda: w.truck.s - TRUCK_LENGTH_M > stopped.s + 20)
    assert not any("collision" in e for e in events)
    assert w.truck.s - TRUCK_LENGTH_M > stopped.s + 20  # past it...
    assert w.truck.v > 15.0  # ...without slowing much: it moved out early
    assert w.nearest_lane() == 2


@pytest.mark.parametrize("kind", ["car", "truck"])
def test_expert_waits_behind_a_stopped_vehicle_then_passes_when_the_lane_clears(kind):
    w, stopped = _straight_world_with_a_stopped(kind, blocked=True)
    expert = Expert(seed=0)
    gaps_at_standstill = []

    def past() -> bool:
        if w.truck.v < 0.1:
            gaps_at_standstill.append(stopped.s - stopped.length / 2 - w.truck.s)
        return w.truck.s - TRUCK_LENGTH_M > stopped.s + 20

    events = _drive(w, expert, 90.0, until=past)
    assert not any("collision" in e for e in events)
    assert gaps_at_standstill, "the expert never stopped although the passing lane was blocked"
    assert min(gaps_at_standstill) > STOPPED_WAIT_GAP_M - 15.0  # waited well back: room to pull out
    assert w.truck.s - TRUCK_LENGTH_M > stopped.s + 20


def test_expert_drives_2km_routes_with_double_traffic_and_stopped_vehicles():
    """The issue's hard card conditions: every stopped vehicle passed, no collision, never off the road,
    and hardly ever what the scorecard calls an intervention (|offset| > 1.5 m for over 1 s: a lane
    line crossed slowly; at traffic 2 without stopped vehicles the expert does that 5 times in 20 routes)."""
    slow_crossings = 0
    for seed in range(4):
        w = World(seed, route_length_m=2000.0, traffic_density=2.0, stopped_per_km=2.0)
        planned = len(w.pending_stopped_s) + sum(v.stopped for v in w.vehicles)
        passed = set()
        expert = Expert(seed=seed)
        beyond = [0]

        def done() -> bool:
            nonlocal slow_crossings
            passed.update(v.uid for v in w.vehicles if v.stopped and v.s < w.truck.s - TRUCK_LENGTH_M)
            beyond[0] = beyond[0] + 1 if abs(w.lateral_offset()) > 1.5 else 0
            slow_crossings += beyond[0] == int(1.0 / DT) + 1
            return w.route_done

        events = _drive(w, expert, 400.0, until=done)
        assert w.route_done, (seed, w.distance_m)
        assert not any("collision" in e or "off_road" in e for e in events), seed
        assert planned >= 2 and len(passed) == planned, (seed, planned, passed)
    assert slow_crossings <= 2, slow_crossings


def test_the_env_option_reaches_the_world():
    import gymnasium

    import sim  # noqa: F401

    env = gymnasium.make("TruckSim-v0", stopped_per_km=3.0, route_length_m=1000.0)
    try:
        env.reset(seed=1)
        world = env.unwrapped.world
        assert world.stopped_per_km == 3.0
        assert any(v.stopped for v in world.vehicles)  # the first stands within 450 m of the start
    finally:
        env.close()


@pytest.mark.parametrize("kind", ["car", "truck"])
def test_an_expert_that_does_not_pass_brakes_and_stands_close_behind_it_in_its_lane(kind):
    """``Expert(pass_stopped=False)``: the recordings of what an agent that brakes for a broken-down
    vehicle sees; the passing expert (above) moves out 160 m before it, so it never shows one close."""
    w, stopped = _straight_world_with_a_stopped(kind, blocked=False)
    gaps_at_standstill, lanes = [], set()

    def watch() -> bool:
        lanes.add(w.nearest_lane())
        if w.truck.v < 0.1:
            gaps_at_standstill.append(stopped.s - stopped.length / 2 - w.truck.s)
        return len(gaps_at_standstill) > 45  # stood 3 s

    events = _drive(w, Expert(seed=0, pass_stopped=False), 60.0, until=watch)
    assert not any("collision" in e for e in events)
    assert lanes == {EGO_START_LANE}  # never moved out
    assert gaps_at_standstill and 3.0 < min(gaps_at_standstill) < 12.0, gaps_at_standstill[:3]
    assert max(gaps_at_standstill) - min(gaps_at_standstill) < 0.5  # and stays there


@pytest.mark.parametrize("kind", ["car", "truck"])
def test_too_close_to_pull_out_the_expert_keeps_its_lane_and_so_does_its_label(kind):
    """Standing 10 m behind a broken-down vehicle (where an agent's range braking stops the truck), the
    truck has no room to steer round it and cannot reverse: the passing expert keeps its lane and stands,
    and its direction label is not "left" (a model taught "left" there creeps out and clips the vehicle).
    50 m back, with the passing lane clear, it pulls out and passes as before."""
    w, stopped = _straight_world_with_a_stopped(kind, blocked=False)
    w.truck.s = stopped.s - stopped.length / 2 - 10.0
    w.truck.v = 0.0
    expert = Expert(seed=0)
    assert expert._pull_out_m(w, stopped) > 10.0
    assert expert.target_lane(w) == EGO_START_LANE and expert.direction(w) != "left"
    events = _drive(w, expert, 10.0)
    assert not any("collision" in e for e in events)
    assert w.nearest_lane() == EGO_START_LANE and abs(w.truck.psi) < 0.01 and w.truck.v < 0.5
    w, stopped = _straight_world_with_a_stopped(kind, blocked=False)
    w.truck.s = stopped.s - stopped.length / 2 - 50.0
    w.truck.v = 0.0
    assert expert.target_lane(w) == 2 and expert.direction(w) == "left"
    events = _drive(w, expert, 40.0, until=lambda: w.truck.s - TRUCK_LENGTH_M > stopped.s + 20)
    assert not any("collision" in e for e in events) and w.truck.s - TRUCK_LENGTH_M > stopped.s + 20

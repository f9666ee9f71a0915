"""World physics and events, stepped with no rendering at all."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sim.road import LANE_CENTRES_M, Road, generate_road, lane_of
from sim.actors import Vehicle
from sim.truck import BRAKE_DECEL_M_S2, STEER_CENTRE_RATE_PER_S, STEER_RATE_PER_S, TruckControls
from sim.world import World

DT = 1.0 / 15.0


def _road(kappa_value: float = 0.0, length_m: float = 3000.0) -> Road:
    n = int(length_m / 2.0) + 1
    return Road(np.full(n, kappa_value), (), np.array([]))


def _world(kappa_value: float = 0.0, speed: float = 20.0) -> World:
    w = World(0, route_length_m=2000.0, traffic_density=0.0, pedestrian_density=0.0, road=_road(kappa_value))
    w.truck.v = speed
    return w


def _hold_speed(w: World) -> TruckControls:
    return TruckControls(0.0, 0.6 if w.truck.v < 20 else 0.3, 0.0)


def test_physics_runs_without_pygame():
    code = ("import sys; from sim.world import World, TruckControls; w = World(3); "
            "[w.step(1/15, TruckControls(0.1, 1.0, 0.0)) for _ in range(100)]; "
            "assert w.truck.v > 5 and 'pygame' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_road_from_seed_has_bends_both_ways_and_is_deterministic():
    a, b, c = generate_road(5, 5000.0), generate_road(5, 5000.0), generate_road(6, 5000.0)
    assert np.array_equal(a.kappa, b.kappa) and not np.array_equal(a.kappa, c.kappa)
    assert (a.kappa > 1 / 1000).mean() > 0.2 and (a.kappa < -1 / 1000).mean() > 0.2
    assert np.abs(a.kappa).max() <= 1 / 170 + 1e-9
    assert lane_of(5.25) == 3 and lane_of(-5.0) == 0


def test_straight_road_without_steering_stays_in_lane():
    w = _world(0.0)
    for _ in range(150):
        events = w.step(DT, _hold_speed(w))
        assert "off_road" not in events
    assert abs(w.lateral_offset()) < 1e-6 and w.distance_m > 190


@pytest.mark.parametrize("kappa", [1 / 250, -1 / 250])
def test_bend_without_steering_drifts_off_the_road_within_seconds(kappa):
    w = _world(kappa)
    seconds = None
    for i in range(int(10 / DT)):
        events = w.step(DT, _hold_speed(w))
        if "off_road" in events:
            seconds = (i + 1) * DT
            break
    assert seconds is not None and seconds < 6.0
    # centrifugal: a right bend (kappa > 0) throws the truck out to the left, and vice versa
    assert np.sign(w.lateral_offset()) == -np.sign(kappa)


def test_steering_moves_at_a_finite_rate_and_recentres():
    w = _world(0.0)
    w.step(DT, TruckControls.from_keys(False, True, True, False))
    assert w.truck.steer == pytest.approx(STEER_RATE_PER_S * DT)
    for _ in range(3):
        w.step(DT, TruckControls.from_keys(False, True, True, False))
    held = w.truck.steer
    assert held == pytest.approx(4 * STEER_RATE_PER_S * DT)
    w.step(DT, TruckControls.from_keys(False, False, True, False))
    assert w.truck.steer == pytest.approx(held - STEER_CENTRE_RATE_PER_S * DT)
    assert w.truck.psi > 0 and w.truck.d > LANE_CENTRES_M[3]  # turned right


def test_brake_stops_the_truck():
    w = _world(0.0, speed=20.0)
    start = w.truck.s
    for _ in range(int(8 / DT)):
        w.step(DT, TruckControls(0.0, 0.0, 1.0))
    assert w.truck.v == 0.0
    stop = w.truck.s - start
    assert 20.0**2 / (2 * (BRAKE_DECEL_M_S2 + 0.5)) < stop < 20.0**2 / (2 * BRAKE_DECEL_M_S2) + 5


def test_lane_departure_and_off_road_events():
    w = _world(0.0)
    seen = []
    for _ in range(int(6 / DT)):
        seen += w.step(DT, TruckControls.from_keys(False, True, True, False))
    assert "lane_departure" in seen and "off_road" in seen
    w2 = _world(0.0)
    seen2 = []
    for _ in range(int(3 / DT)):
        seen2 += w2.step(DT, TruckControls(-0.25, 0.5, 0.0, centring=False))
    assert "lane_departure" in seen2 and "off_road" not in seen2


def test_collision_with_a_stopped_car_ahead():
    w = _world(0.0, speed=15.0)
    car = Vehicle(99, "car", 0, 1, 3, w.truck.s + 40.0, 0.0, 0.0, 4.5, 1.8, 1.5, (200, 0, 0), (40, 40, 40), 1.5)
    w.vehicles.append(car)
    hit_at = None
    for i in range(int(6 / DT)):
        if "collision" in w.step(DT, TruckControls(0.0, 1.0, 0.0)):
            hit_at = i
            break
    assert hit_at is not None
    assert w.truck.s >= car.s - car.length / 2 - 1.0
    assert w.lead_distance() == 0.0


def test_traffic_keeps_its_distance_and_lanes():
    w = World(4, route_length_m=3000.0, traffic_density=1.5, pedestrian_density=1.0)
    for _ in range(int(60 / DT)):
        w.step(DT, TruckControls(0.0, 0.0, 1.0))  # truck parked: traffic flows around it
        for v in w.vehicles:
            assert (v.d > 0) == (v.direction > 0)  # nobody crosses into the other direction
    assert len(w.vehicles) > 5
    # no two vehicles of one lane overlap
    for lane in range(4):
        occ = sorted((v.s - v.length / 2, v.s + v.length / 2) for v in w.vehicles if v.lanes_occupied() == (lane,))
        for (a0, a1), (b0, b1) in zip(occ, occ[1:]):
            assert b0 > a1 - 0.5

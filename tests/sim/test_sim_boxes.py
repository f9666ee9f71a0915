"""Ground-truth boxes against an object-id mask drawn by the same drawing code."""
from __future__ import annotations

import numpy as np
import pytest

from sim.expert import Expert
from sim.render import UNLABELLED_ID, Renderer
from sim.road import LANE_CENTRES_M, Road
from sim.actors import Pedestrian, Vehicle
from sim.truck import TruckControls
from sim.world import World

DT = 1.0 / 15.0


def _drive(world: World, steps: int) -> None:
    expert = Expert(seed=0, dt=DT)
    for _ in range(steps):
        keys = expert.act(world)
        world.step(DT, TruckControls.from_keys(*(bool(k) for k in keys)))


def _check_boxes_against_mask(result, width: int, height: int) -> int:
    """Every box holds all its object's pixels, with no slack; an object that
    nothing nearer overlaps has exactly its pixels' bounding box. Returns how
    many boxes were checked exactly."""
    boxes, mask = result.boxes, result.id_mask
    assert mask.shape == (height, width)
    exact = 0
    for box, uid in zip(boxes, result.uids):
        x0, y0, x1, y1 = box.tolist()
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert box.tolist() == np.round(box).tolist(), f"object {uid}: box {box} is not on pixel edges"
        index = result.drawn_uids.index(uid) + 1
        ys, xs = np.nonzero(mask == index)
        assert len(xs) > 0, f"object {uid} has a box but no pixels"
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        # and the object's visible pixels fill a fair share of the box (not a loose box)
        area = (x1 - x0) * (y1 - y0)
        assert len(xs) / area > 0.15, f"object {uid}: {len(xs)} px in a {area:.0f} px box"
        inside = mask[int(y0):int(y1), int(x0):int(x1)]
        if not ((inside > index).any()):  # nothing drawn later (nearer, or a pole) covers it
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
            exact += 1
    return exact


@pytest.mark.parametrize("tod,weather", [("day", "clear"), ("dusk", "rain"), ("night", "clear")])
def test_boxes_cover_their_objects_pixels(tod, weather):
    renderer = Renderer(320, 240, tod, weather)
    checked, labels = 0, set()
    for seed in (0, 1):
        world = World(seed, route_length_m=2000.0)
        for _ in range(6):
            _drive(world, 60)
            result = renderer.render(world, np.random.default_rng(0), id_mask=True)
            checked += _check_boxes_against_mask(result, 320, 240)
            labels.update(result.labels)
    assert checked >= 10  # boxes checked to the pixel
    assert {"car", "truck", "sign"} <= labels


def _lone_car_world(distance_m: float, second_car_behind_m: float | None = None) -> World:
    road = Road(np.zeros(2000), (), np.array([]))
    w = World(0, route_length_m=3000.0, traffic_density=0.0, pedestrian_density=0.0, road=road)
    w.roadside.objects.clear()
    w.roadside.s = []
    front = Vehicle(1, "car", 0, 1, 3, w.truck.s + distance_m, 0.0, 0.0, 4.5, 1.8, 1.5, (200, 0, 0), (40, 40, 40), 1.5)
    w.vehicles.append(front)
    if second_car_behind_m is not None:
        w.vehicles.append(Vehicle(2, "car", 0, 1, 3, front.s + second_car_behind_m, 0.0, 0.0, 4.5, 1.8, 1.5,
                                  (0, 0, 200), (40, 40, 40), 1.5))
    return w


def test_box_of_a_placed_car_matches_its_projection():
    renderer = Renderer(320, 240, "day", "clear")
    w = _lone_car_world(30.0)
    r = renderer.render(w, id_mask=True)
    assert r.labels == ("car",)
    x0, y0, x1, y1 = r.boxes[0].tolist()
    # the car sits in the truck's lane, straight ahead: centred, below the horizon
    assert abs((x0 + x1) / 2 - 160) < 6
    assert y1 > renderer.horizon and y0 < renderer.horizon + 20
    # its width follows the pinhole model: f * 1.8 m / distance
    eye_to_rear = 30.0 - 4.5 / 2 + 1.5
    assert (x1 - x0) == pytest.approx(renderer.f * 1.8 / eye_to_rear, rel=0.15)
    _check_boxes_against_mask(r, 320, 240)


@pytest.mark.parametrize("distance_m", [40.0, 60.0, 80.0, 100.0])
def test_a_far_walker_box_is_the_pixels_drawn(distance_m):
    """A walker 1-2 px wide: pygame truncates its float rectangle, so the box
    must be the changed pixels, not the projection (IoU < 0.5 between the two
    at some sub-pixel offsets)."""
    renderer = Renderer(320, 240, "day", "clear")
    for offset_m in np.linspace(0.0, 0.3, 7):
        w = _lone_car_world(500.0)
        w.vehicles.clear()
        w.pedestrians.append(Pedestrian(7, w.truck.s + distance_m, 3.0 + offset_m, "wait", 0.0, 1.75,
                                        (200, 40, 40), (30, 30, 90), (220, 180, 150), 0.0))
        r = renderer.render(w, id_mask=True)
        assert r.labels == ("person",), f"{distance_m} m, {offset_m:.2f} m aside: {r.labels}"
        x0, y0, x1, y1 = r.boxes[0].tolist()
        assert x1 - x0 <= 4
        # the whole walker is drawn, legs included: the box is as tall as the projection
        tall = renderer.f * 1.75 / (distance_m + 1.5)  # eye to walker (the eye is 1.5 m behind the truck's s)
        assert y1 - y0 == pytest.approx(tall, abs=1.5), f"{distance_m} m: box {y1 - y0} px tall, projection {tall:.1f}"
        assert _check_boxes_against_mask(r, 320, 240) == 1


def test_hidden_far_and_fogged_objects_are_left_out():
    renderer = Renderer(320, 240, "day", "clear")
    # a car straight behind another car of the same size is hidden: one box only
    r = renderer.render(_lone_car_world(25.0, second_car_behind_m=8.0), id_mask=True)
    assert r.uids == (1,)
    # far away: a few pixels tall -> no box
    r = renderer.render(_lone_car_world(178.0))
    assert len(r.boxes) == 0 or (r.boxes[:, 3] - r.boxes[:, 1]).min() >= 4
    # in thick fog a car 80 m away is not visible, in clear air it is
    assert Renderer(320, 240, "day", "clear").render(_lone_car_world(80.0)).labels == ("car",)
    assert Renderer(320, 240, "day", "fog").render(_lone_car_world(80.0)).labels == ()


def test_sign_pole_is_not_part_of_the_sign_box():
    renderer = Renderer(320, 240, "day", "clear")
    world = World(2, route_length_m=2000.0, traffic_density=0.0)
    for _ in range(40):
        _drive(world, 10)
        r = renderer.render(world, id_mask=True)
        if "sign" in r.labels and (r.id_mask == UNLABELLED_ID).any():
            i = r.labels.index("sign")
            x0, y0, x1, y1 = r.boxes[i]
            ys, _ = np.nonzero(r.id_mask == UNLABELLED_ID)
            assert ys.max() > y1  # the pole reaches below the plate's box
            return
    pytest.fail("no sign came into view")


def test_lane_centres_are_right_hand_traffic():
    assert LANE_CENTRES_M[3] > LANE_CENTRES_M[2] > 0 > LANE_CENTRES_M[1] > LANE_CENTRES_M[0]

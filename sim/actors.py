"""Traffic vehicles and pedestrians (their state and looks), and the
Intelligent Driver Model they follow. Pure Python; no drawing."""
from __future__ import annotations

import math
import random

from .road import LANE_CENTRES_M

IDM_DELTA = 4.0


class Vehicle:
    """A traffic vehicle. ``s`` is its centre; ``direction`` +1 drives with the
    truck (lanes 2, 3), -1 oncoming (lanes 0, 1). ``stopped``: broken down where it
    stands (``SimConfig.stopped_per_km``): it never moves nor changes lane."""

    __slots__ = ("uid", "kind", "style", "direction", "lane", "from_lane", "lc_t", "s", "d", "v", "v0",
                 "accel", "length", "width", "height", "color", "color2", "slow_until", "slow_v0",
                 "a_max", "headway", "gap", "lead_v", "lead", "stopped")

    def __init__(self, uid, kind, style, direction, lane, s, v, v0, length, width, height, color, color2, a_max):
        self.uid, self.kind, self.style, self.direction = uid, kind, style, direction
        self.lane = lane
        self.from_lane = lane
        self.lc_t = 1.0  # lane change progress, 1 = done
        self.s, self.d, self.v, self.v0 = s, LANE_CENTRES_M[lane], v, v0
        self.accel = 0.0
        self.length, self.width, self.height = length, width, height
        self.color, self.color2 = color, color2
        self.slow_until = -1.0
        self.slow_v0 = v0
        self.a_max = a_max
        self.headway = 1.4 if kind == "car" else 1.8
        self.gap, self.lead_v = math.inf, 0.0  # leader this step (m, m/s along own direction)
        self.lead = None  # the leader itself (a Vehicle or the Truck), or None
        self.stopped = False

    @property
    def braking(self) -> bool:
        return self.accel < -0.8

    def lanes_occupied(self) -> tuple[int, ...]:
        return (self.lane,) if self.lc_t >= 1.0 else (self.from_lane, self.lane)


class Pedestrian:
    """A person. ``state`` is 'wait' (at a crossing kerb), 'cross' or 'walk'
    (along the roadside). ``v_lat`` m/s across the road (+ = toward +d),
    ``v_long`` m/s along it."""

    __slots__ = ("uid", "s", "d", "state", "wait_s", "v_lat", "v_long", "height", "width", "shirt", "pants",
                 "skin", "crossing_s", "phase")

    def __init__(self, uid, s, d, state, wait_s, height, shirt, pants, skin, crossing_s):
        self.uid, self.s, self.d, self.state, self.wait_s = uid, s, d, state, wait_s
        self.v_lat = 0.0
        self.v_long = 0.0
        self.height = height
        self.width = 0.5
        self.shirt, self.pants, self.skin = shirt, pants, skin
        self.crossing_s = crossing_s
        self.phase = 0.0  # walking animation phase (rad)


CAR_COLOURS = ((200, 30, 35), (30, 60, 160), (230, 230, 230), (25, 25, 28), (150, 155, 160), (90, 90, 95),
                (40, 120, 60), (230, 180, 30), (120, 30, 40), (60, 140, 190), (210, 110, 30), (245, 245, 240))
TRAILER_COLOURS = ((235, 235, 235), (200, 200, 205), (180, 40, 40), (40, 70, 150), (60, 120, 70),
                    (220, 170, 40), (120, 120, 125), (90, 60, 40))
SHIRTS = ((200, 40, 40), (40, 80, 180), (230, 200, 40), (40, 150, 70), (240, 240, 240), (30, 30, 30),
           (160, 60, 160), (240, 120, 30), (90, 180, 200))
SKINS = ((240, 200, 170), (200, 150, 110), (150, 100, 70), (100, 65, 45))
PANTS = ((40, 40, 60), (30, 30, 30), (70, 60, 50), (50, 70, 120))


def jitter(rng: random.Random, rgb, amount: int = 18) -> tuple[int, int, int]:
    """``rgb`` with each channel moved by up to +-amount (clipped to 0..255)."""
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def idm(v: float, v0: float, gap: float, dv: float, a_max: float, b: float, headway: float, s0: float) -> float:
    """Intelligent Driver Model acceleration (m/s^2), clipped to [-8, a_max]."""
    free = 1.0 - (v / max(v0, 0.1)) ** IDM_DELTA
    free = max(free, -2.5 / a_max)  # slowing to a lower desired speed is firm, not an emergency
    inter = 0.0
    if gap < math.inf:
        s_star = s0 + max(0.0, v * headway + v * dv / (2.0 * math.sqrt(a_max * b)))
        inter = (s_star / max(gap, 0.1)) ** 2
    return max(-8.0, min(a_max, a_max * (free - inter)))


def random_vehicle(rng: random.Random, uid: int, lane: int, s: float) -> Vehicle:
    """A car (70%) or truck of random style, size, colour and desired speed in
    ``lane`` at ``s``; the fast lanes (1, 2) get faster drivers."""
    direction = 1 if lane >= 2 else -1
    is_truck = rng.random() < 0.3
    fast_lane = lane in (1, 2)
    if is_truck:
        length = rng.uniform(8.0, 17.0)
        width = rng.uniform(2.4, 2.55)
        height = rng.uniform(3.2, 4.0)
        v0 = rng.uniform(13.0, 18.0) if not fast_lane else rng.uniform(18.0, 22.0)
        style = rng.randrange(3)  # box trailer, tanker, flatbed/curtain
        color = jitter(rng, rng.choice(CAR_COLOURS))
        color2 = jitter(rng, rng.choice(TRAILER_COLOURS), 12)
        a_max = 0.8
        kind = "truck"
    else:
        style = rng.randrange(4)  # sedan, hatchback, suv, van
        length = (4.6, 4.0, 4.8, 5.2)[style] * rng.uniform(0.92, 1.08)
        width = (1.8, 1.7, 1.95, 2.0)[style] * rng.uniform(0.95, 1.05)
        height = (1.45, 1.5, 1.75, 2.1)[style] * rng.uniform(0.95, 1.05)
        v0 = rng.uniform(14.0, 21.0) if not fast_lane else rng.uniform(22.0, 28.0)
        color = jitter(rng, rng.choice(CAR_COLOURS))
        color2 = (40, 50, 60)
        a_max = 1.6
        kind = "car"
    v = v0
    return Vehicle(uid, kind, style, direction, lane, s, v, v0, length, width, height, color, color2, a_max)


def stopped_vehicle(rng: random.Random, uid: int, lane: int, s: float) -> Vehicle:
    """A broken-down vehicle standing in ``lane`` at ``s``: looks like ``random_vehicle``, speed 0."""
    v = random_vehicle(rng, uid, lane, s)
    v.v = v.v0 = v.slow_v0 = 0.0
    v.stopped = True
    return v


def random_pedestrian(rng: random.Random, uid: int, s: float, d: float, state: str, wait_s: float,
                      crossing_s: float, pants=PANTS) -> Pedestrian:
    """A person at (s, d) with a random height (1.5-1.95 m) and clothes."""
    return Pedestrian(uid, s, d, state, wait_s, rng.uniform(1.5, 1.95), jitter(rng, rng.choice(SHIRTS)),
                      jitter(rng, rng.choice(pants)), rng.choice(SKINS), crossing_s)

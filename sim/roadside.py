"""Static roadside furniture drawn from the road's seed: signs (labelled,
class "sign") and unlabelled scenery (trees, pines, bushes, poles, lamps,
buildings). Pure data; numpy + stdlib only.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import numpy as np

from .road import PAVED_HALF_WIDTH_M, Road

SIGN_SHAPES: tuple[str, ...] = ("circle", "triangle", "rect", "diamond", "square", "octagon")
SCENERY_KINDS: tuple[str, ...] = ("tree", "pine", "bush", "pole", "lamp", "building")


@dataclass(frozen=True)
class StaticObject:
    """One fixed object beside the road.

    s, d: Frenet position of its foot (m). width_m, height_m: the visible
    extent (for a sign: the plate); base_m: height of the plate's lower edge
    above the road (signs), 0 otherwise. color/color2/color3: RGB tuples.
    """

    uid: int
    kind: str  # "sign" or one of SCENERY_KINDS
    s: float
    d: float
    width_m: float
    height_m: float
    base_m: float
    shape: str
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    color3: tuple[int, int, int]

    @property
    def solid_half_width_m(self) -> float:
        """Half width of the part a truck collides with (trunk, pole, wall)."""
        if self.kind in ("building",):
            return self.width_m / 2
        if self.kind == "bush":
            return 0.0
        return 0.15


def _jitter(rng: random.Random, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


_SIGN_COLOURS = {
    "circle": ((235, 235, 235), (200, 20, 25)),  # speed limit: white disc, red ring
    "triangle": ((240, 240, 240), (210, 25, 30)),  # warning
    "rect": ((20, 110, 60), (240, 240, 240)),  # green direction board
    "diamond": ((245, 200, 20), (20, 20, 20)),  # yellow priority / curve
    "square": ((25, 80, 190), (245, 245, 245)),  # blue information / crossing
    "octagon": ((200, 20, 25), (245, 245, 245)),  # stop
}


class Roadside:
    """All static objects, sorted by s, with a fast window query."""

    def __init__(self, objects: list[StaticObject]):
        self.objects = sorted(objects, key=lambda o: o.s)
        self.s = [o.s for o in self.objects]

    def window(self, s0: float, s1: float) -> list[StaticObject]:
        """Objects with s in [s0, s1]."""
        return self.objects[bisect.bisect_left(self.s, s0):bisect.bisect_right(self.s, s1)]


def generate_roadside(road: Road, seed: int, uid_start: int = 1_000_000) -> Roadside:
    """Signs every ~90-260 m (warnings before bends and crossings), scenery every
    ~10-30 m per side, villages (buildings, lamps) around crossings."""
    rng = random.Random(seed * 7919 + 11)
    objs: list[StaticObject] = []
    uid = uid_start

    def add(**kw) -> None:
        nonlocal uid
        objs.append(StaticObject(uid=uid, **kw))
        uid += 1

    def add_sign(s: float, d: float, shape: str) -> None:
        face, rim = _SIGN_COLOURS[shape]
        size = rng.uniform(0.7, 1.2)
        width = size * (2.2 if shape == "rect" else 1.0)
        height = size * (1.1 if shape == "rect" else 1.0)
        add(kind="sign", s=s, d=d, width_m=width, height_m=height, base_m=rng.uniform(1.6, 2.4),
            shape=shape, color=_jitter(rng, face, 15), color2=_jitter(rng, rim, 15), color3=(70, 70, 75))

    end = road.length_m
    # warning signs before bends and crossings
    for p in road.pieces:
        if p.kind in ("left", "right") and p.start_m > 80:
            add_sign(p.start_m - rng.uniform(40, 90), PAVED_HALF_WIDTH_M + 0.8, rng.choice(("diamond", "triangle")))
    for c in road.crossings:
        add_sign(c - rng.uniform(25, 45), PAVED_HALF_WIDTH_M + 0.8, "square")
        add_sign(c + rng.uniform(25, 45), -(PAVED_HALF_WIDTH_M + 0.8), "square")
    s = 60.0
    while s < end:
        side = 1.0 if rng.random() < 0.75 else -1.0
        add_sign(s, side * (PAVED_HALF_WIDTH_M + rng.uniform(0.6, 1.6)), rng.choice(SIGN_SHAPES))
        s += rng.uniform(90, 260)
    # scenery on both sides
    for side in (-1.0, 1.0):
        s = rng.uniform(0, 15)
        while s < end:
            near_village = road.crossings.size and float(np.min(np.abs(road.crossings - s))) < 140
            if near_village and rng.random() < 0.55:
                w = rng.uniform(7, 16)
                add(kind="building", s=s + w / 2, d=side * rng.uniform(15, 22) , width_m=w,
                    height_m=rng.uniform(5, 12), base_m=0.0, shape="block",
                    color=_jitter(rng, rng.choice(((190, 170, 140), (170, 90, 70), (200, 200, 190), (120, 130, 140))), 20),
                    color2=_jitter(rng, (70, 60, 55), 15), color3=_jitter(rng, (150, 190, 220), 20))
                s += w + rng.uniform(3, 10)
                continue
            if near_village and rng.random() < 0.5:
                add(kind="lamp", s=s, d=side * (PAVED_HALF_WIDTH_M + 0.6), width_m=0.25, height_m=7.0, base_m=0.0,
                    shape="lamp", color=(90, 95, 100), color2=(255, 240, 190), color3=(60, 60, 60))
                s += rng.uniform(25, 35)
                continue
            r = rng.random()
            kind = "tree" if r < 0.45 else "pine" if r < 0.65 else "bush" if r < 0.82 else "pole"
            if kind == "pole":
                add(kind="pole", s=s, d=side * rng.uniform(11, 13), width_m=0.3, height_m=rng.uniform(8, 10), base_m=0.0,
                    shape="pole", color=_jitter(rng, (110, 85, 60), 15), color2=(60, 60, 60), color3=(0, 0, 0))
            elif kind == "bush":
                add(kind="bush", s=s, d=side * rng.uniform(11, 25), width_m=rng.uniform(1.5, 3.5), height_m=rng.uniform(0.8, 1.6),
                    base_m=0.0, shape="bush", color=_jitter(rng, (50, 110, 45), 25), color2=(0, 0, 0), color3=(0, 0, 0))
            else:
                h = rng.uniform(5, 12)
                add(kind=kind, s=s, d=side * rng.uniform(12, 30), width_m=h * rng.uniform(0.35, 0.6), height_m=h, base_m=0.0,
                    shape=kind, color=_jitter(rng, (40, 115, 40) if kind == "tree" else (25, 80, 45), 25),
                    color2=_jitter(rng, (95, 70, 45), 15), color3=(0, 0, 0))
            s += rng.uniform(18, 45)
    return Roadside(objs)

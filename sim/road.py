"""A seeded road: centreline geometry, lanes and pedestrian crossings.

Coordinates. The road is described in Frenet coordinates (s, d): ``s`` metres
along the centreline from the start, ``d`` metres to the right of the
centreline. The world plane uses x forward at the start and y to the right;
heading ``theta`` rotates from x toward y, so positive curvature (1/m) is a
right-hand bend. Traffic drives on the right: the ego direction uses lanes
with d > 0, the oncoming direction lanes with d < 0.

Lanes (index: centre d): 0: -5.25 and 1: -1.75 oncoming (1 is their fast
lane), 2: +1.75 ego fast/overtaking lane, 3: +5.25 ego right lane, where the
truck normally drives. Beyond the lanes (|d| > 7) a 2 m paved shoulder; grass
from |d| = 9.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANE_WIDTH_M = 3.5
LANES_PER_DIRECTION = 2
LANE_CENTRES_M: tuple[float, ...] = (-5.25, -1.75, 1.75, 5.25)
EGO_LANES: tuple[int, ...] = (2, 3)
ONCOMING_LANES: tuple[int, ...] = (0, 1)
EGO_START_LANE = 3
ROAD_HALF_WIDTH_M = LANE_WIDTH_M * LANES_PER_DIRECTION  # 7.0, outer edge lines
SHOULDER_M = 2.0
PAVED_HALF_WIDTH_M = ROAD_HALF_WIDTH_M + SHOULDER_M  # 9.0, beyond is grass
SAMPLE_SPACING_M = 2.0
#: road generated past the route end so that the view and traffic never run out
ROAD_MARGIN_M = 700.0


def lane_of(d: float) -> int:
    """Index of the lane whose centre is nearest to lateral position ``d`` (m)."""
    return int(min(3, max(0, int(np.floor(d / LANE_WIDTH_M)) + 2)))


@dataclass(frozen=True)
class RoadPiece:
    """One piece of the layout: ``kind`` is 'straight', 'left' or 'right';
    ``radius_m`` is inf for straights."""

    start_m: float
    length_m: float
    kind: str
    radius_m: float


class Road:
    """Sampled centreline every SAMPLE_SPACING_M metres.

    Arrays (all float64, shape (n,)): ``s`` arc length, ``kappa`` curvature
    (1/m, + = right), ``theta`` heading (rad), ``x``, ``y`` world position (m).
    """

    def __init__(self, kappa: np.ndarray, pieces: tuple[RoadPiece, ...], crossings: np.ndarray):
        self.ds = SAMPLE_SPACING_M
        self.kappa = np.asarray(kappa, dtype=np.float64)
        n = len(self.kappa)
        self.s = np.arange(n, dtype=np.float64) * self.ds
        # heading at each sample; position by integrating the mid-point heading
        self.theta = np.concatenate([[0.0], np.cumsum(0.5 * (self.kappa[1:] + self.kappa[:-1]) * self.ds)])
        mid = 0.5 * (self.theta[1:] + self.theta[:-1])
        self.x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * self.ds)])
        self.y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * self.ds)])
        self.pieces = pieces
        #: s (m) of each zebra crossing, ascending
        self.crossings = np.asarray(crossings, dtype=np.float64)
        self.length_m = float(self.s[-1])
        self.xy = self.x + 1j * self.y  #: complex positions, for fast rotation into a camera frame
        self._kappa_list = self.kappa.tolist()  # fast scalar reads for physics

    # --- scalar queries (fast paths for physics) ---
    def curvature_at(self, s: float) -> float:
        """Curvature (1/m) at arc length ``s``, linearly interpolated."""
        k = self._kappa_list
        f = s / self.ds
        i = int(f)
        if i < 0:
            return k[0]
        if i >= len(k) - 1:
            return k[-1]
        t = f - i
        return k[i] * (1.0 - t) + k[i + 1] * t

    def max_abs_curvature(self, s0: float, s1: float) -> float:
        """Largest |curvature| (1/m) on [s0, s1]."""
        i0 = max(0, int(s0 / self.ds))
        i1 = min(len(self.kappa), int(s1 / self.ds) + 2)
        if i1 <= i0:
            return abs(self.curvature_at(s0))
        return float(np.abs(self.kappa[i0:i1]).max())

    def pose_at(self, s: float) -> tuple[float, float, float]:
        """(x, y, theta) of the centreline at ``s`` (interpolated)."""
        return (
            float(np.interp(s, self.s, self.x)),
            float(np.interp(s, self.s, self.y)),
            float(np.interp(s, self.s, self.theta)),
        )

    def to_world(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frenet (s, d) arrays -> world (x, y) arrays, metres."""
        x = np.interp(s, self.s, self.x)
        y = np.interp(s, self.s, self.y)
        th = np.interp(s, self.s, self.theta)
        return x - np.sin(th) * d, y + np.cos(th) * d

    def next_crossing(self, s: float) -> float:
        """s of the first crossing at or after ``s``, or inf."""
        i = int(np.searchsorted(self.crossings, s))
        return float(self.crossings[i]) if i < len(self.crossings) else float("inf")


def constant_road(curvature: float, route_length_m: float) -> Road:
    """A road of constant ``curvature`` (1/m, + = right; 0: straight) long enough for the route,
    without zebra crossings: the scripted scenarios' road."""
    n = int(np.ceil((route_length_m + ROAD_MARGIN_M) / SAMPLE_SPACING_M)) + 1
    kind = "straight" if curvature == 0 else "right" if curvature > 0 else "left"
    piece = RoadPiece(0.0, (n - 1) * SAMPLE_SPACING_M, kind, float("inf") if curvature == 0 else 1.0 / abs(curvature))
    return Road(np.full(n, float(curvature)), (piece,), np.array([]))


def generate_road(seed: int, route_length_m: float) -> Road:
    """A road of straights and left/right bends of varied radius, from ``seed``.

    Bends cover about 60% of the length, left and right equally often, with
    40 m curvature ramps so steering is smooth. Zebra crossings sit on
    straights, at least 500 m apart.
    """
    rng = np.random.default_rng([int(seed), 0x0AD])
    total = route_length_m + ROAD_MARGIN_M
    ds = SAMPLE_SPACING_M
    pieces: list[RoadPiece] = []
    pos = 0.0
    # a calm start: the truck gets up to speed on a straight
    pieces.append(RoadPiece(0.0, 120.0, "straight", float("inf")))
    pos = 120.0
    last_sign = int(rng.choice([-1, 1]))
    while pos < total:
        if pieces[-1].kind != "straight" and rng.random() < 0.55:
            length = float(rng.uniform(80.0, 260.0))
            pieces.append(RoadPiece(pos, length, "straight", float("inf")))
        else:
            sign = -last_sign if rng.random() < 0.7 else last_sign
            last_sign = sign
            radius = float(np.exp(rng.uniform(np.log(170.0), np.log(700.0))))
            length = float(rng.uniform(140.0, 360.0))
            pieces.append(RoadPiece(pos, length, "right" if sign > 0 else "left", radius))
        pos += pieces[-1].length_m
    n = int(np.ceil(total / ds)) + 1
    s = np.arange(n) * ds
    kappa = np.zeros(n)
    for p in pieces:
        if p.kind == "straight":
            continue
        sign = 1.0 if p.kind == "right" else -1.0
        mask = (s >= p.start_m) & (s < p.start_m + p.length_m)
        kappa[mask] = sign / p.radius_m
    # ramps: moving average over 40 m gives linear curvature transitions (clothoids)
    width = int(40.0 / ds)
    kernel = np.ones(width) / width
    kappa = np.convolve(np.pad(kappa, (width // 2, width - 1 - width // 2), mode="edge"), kernel, mode="valid")
    crossings: list[float] = []
    for p in pieces:
        if p.kind == "straight" and p.length_m >= 100.0 and p.start_m > 250.0:
            c = p.start_m + p.length_m / 2
            if (not crossings or c - crossings[-1] >= 350.0) and rng.random() < 0.85 and c < total - 300:
                crossings.append(c)
    return Road(kappa, tuple(pieces), np.array(crossings))

"""World model: the truck (``sim.truck``), traffic and pedestrians
(``sim.actors``) and the roadside, stepped together with an explicit ``dt``.
No drawing and no pygame here (HighwayEnv style), so physics is testable
without rendering.

Frenet coordinates throughout (see ``sim.road``): s metres along the road,
d metres right of the centreline. Speeds in m/s, accelerations in m/s^2,
angles in radians (heading error positive = pointing right of the road).
"""
from __future__ import annotations

import math
import random

from .actors import PANTS, Pedestrian, Vehicle, idm, random_pedestrian, random_vehicle, stopped_vehicle
from .road import (
    EGO_START_LANE,
    LANE_CENTRES_M,
    LANE_WIDTH_M,
    PAVED_HALF_WIDTH_M,
    ROAD_HALF_WIDTH_M,
    Road,
    generate_road,
)
from .roadside import Roadside, generate_roadside
from .truck import PHYSICS_SUBSTEP_S, TRUCK_LENGTH_M, TRUCK_WIDTH_M, Truck, TruckControls

# --- traffic ---------------------------------------------------------------
TRAFFIC_BEHIND_M = 250.0  #: traffic is simulated from this far behind the truck...
TRAFFIC_AHEAD_M = 450.0  #: ...to this far ahead; spawns happen at these edges, out of view
LANE_SPACING_M = 130.0  #: mean gap per lane at traffic_density 1
LANE_CHANGE_S = 4.0
#: stopped vehicles (``stopped_per_km``): the first stands at least this far past the start...
STOPPED_FIRST_M = 150.0
#: ...none this close to a zebra crossing (before it, after it), nor this close to the route's end
STOPPED_CROSSING_CLEAR_M = (60.0, 40.0)
STOPPED_END_CLEAR_M = 60.0
#: traffic behind a stopped vehicle moves out of its lane from this far back
STOPPED_AVOID_M = 120.0
_OTHER_LANE = {3: 2, 2: 3, 1: 0, 0: 1}


class World:
    """The whole simulated world for one episode.

    ``road`` may be injected (tests build roads of known shape); otherwise it
    is generated from ``road_seed`` (default: ``seed``).

    ``step(dt, controls)`` advances everything and returns the truck's events
    for that step ("collision", "off_road", "lane_departure", "oncoming_lane").

    ``stopped_per_km``: broken-down vehicles standing in the truck's lane (lane 3),
    on average this many per km of route, placed from their own random stream (so
    0, the default, leaves every other draw as it was); each appears when it comes
    within ``TRAFFIC_AHEAD_M`` of the truck. Traffic behind one moves to the
    passing lane when it can.
    """

    def __init__(self, seed: int, route_length_m: float = 5000.0, traffic_density: float = 1.0,
                 pedestrian_density: float = 1.0, road_seed: int | None = None, road: Road | None = None,
                 stopped_per_km: float = 0.0):
        self.seed = int(seed)
        self.route_length_m = float(route_length_m)
        self.traffic_density = float(traffic_density)
        self.stopped_per_km = float(stopped_per_km)
        self.pedestrian_density = float(pedestrian_density)
        rs = self.seed if road_seed is None else int(road_seed)
        self.road: Road = road if road is not None else generate_road(rs, route_length_m)
        self.roadside: Roadside = generate_roadside(self.road, rs)
        self.rng = random.Random(self.seed * 1_000_003 + 17)
        self.start_s = 20.0
        self.truck = Truck(self.start_s, LANE_CENTRES_M[EGO_START_LANE], 0.0)
        self.time_s = 0.0
        self.vehicles: list[Vehicle] = []
        self.pedestrians: list[Pedestrian] = []
        self._next_uid = 1
        self._crossings_populated: set[int] = set()
        self._next_walker_s = self.start_s + 40.0
        self.lane = EGO_START_LANE  # lane of the truck's centre last step (None when outside all lanes)
        self.events: tuple[str, ...] = ()
        self._populate_initial_traffic()
        self._populate_crossings()
        self._stopped_rng = random.Random(self.seed * 7_919 + 29)
        #: s (m) of the stopped vehicles not placed yet, ascending
        self.pending_stopped_s: list[float] = self._plan_stopped()
        self._place_stopped()

    # ------------------------------------------------------------------ queries
    @property
    def distance_m(self) -> float:
        """Metres travelled along the road since the start."""
        return self.truck.s - self.start_s

    @property
    def route_progress(self) -> float:
        return max(0.0, min(1.0, self.distance_m / self.route_length_m))

    @property
    def route_done(self) -> bool:
        return self.distance_m >= self.route_length_m

    def truck_lane(self) -> int | None:
        """Lane index of the truck's centre, or None outside the four lanes."""
        d = self.truck.d
        if abs(d) > ROAD_HALF_WIDTH_M:
            return None
        return min(3, int((d + ROAD_HALF_WIDTH_M) // LANE_WIDTH_M))

    def nearest_lane(self) -> int:
        d = self.truck.d
        return min(range(4), key=lambda i: abs(LANE_CENTRES_M[i] - d))

    def lateral_offset(self) -> float:
        """Metres from the centre of the truck's (nearest) lane, + = right."""
        return self.truck.d - LANE_CENTRES_M[self.nearest_lane()]

    def crossing_blocked(self, crossing_s: float, direction: int) -> bool:
        """True while a crossing pedestrian is in, or heading into, the half
        of the road used by traffic going ``direction`` at ``crossing_s``."""
        for p in self.pedestrians:
            if p.state != "cross" or p.crossing_s != crossing_s:
                continue
            if direction > 0:
                if (p.v_lat > 0 and p.d < PAVED_HALF_WIDTH_M) or (p.v_lat < 0 and p.d > -1.5):
                    return True
            else:
                if (p.v_lat < 0 and p.d > -PAVED_HALF_WIDTH_M) or (p.v_lat > 0 and p.d < 1.5):
                    return True
        return False

    def lead_gap(self, d_lo: float, d_hi: float, max_m: float = 250.0, ignore: Vehicle | None = None
                 ) -> tuple[float, float]:
        """(gap m, speed m/s along +s) of the nearest vehicle or person ahead of the
        truck's front whose lateral extent overlaps [d_lo, d_hi]; (inf, 0) if none.
        ``ignore``: a vehicle left out."""
        front = self.truck.s
        best, best_v = math.inf, 0.0
        for v in self.vehicles:
            if v is ignore:
                continue
            gap = v.s - v.length / 2 - front  # to its end nearest the truck, either direction
            if gap < -v.length or gap > max_m or gap >= best:
                continue
            if v.d + v.width / 2 > d_lo and v.d - v.width / 2 < d_hi:
                best, best_v = max(gap, 0.0), v.v * v.direction
        for p in self.pedestrians:
            gap = p.s - 0.25 - front
            if gap < -0.5 or gap > max_m or gap >= best:
                continue
            if p.d + 0.25 > d_lo and p.d - 0.25 < d_hi:
                best, best_v = max(gap, 0.0), p.v_long
        return best, best_v

    def lead_distance(self) -> float:
        """Gap (m) from the truck's front to the nearest vehicle/person ahead in its lane, or inf."""
        c = LANE_CENTRES_M[self.nearest_lane()]
        return self.lead_gap(c - LANE_WIDTH_M / 2, c + LANE_WIDTH_M / 2)[0]

    # ------------------------------------------------------------------ spawning
    def _uid(self) -> int:
        uid = self._next_uid
        self._next_uid += 1
        return uid

    def _make_vehicle(self, lane: int, s: float) -> Vehicle:
        return random_vehicle(self.rng, self._uid(), lane, s)

    def _lane_clear(self, lane: int, s: float, margin: float) -> bool:
        for v in self.vehicles:
            if lane in v.lanes_occupied() and abs(v.s - s) < margin + v.length / 2:
                return False
        if lane in self._truck_lanes() and abs(self.truck.s - TRUCK_LENGTH_M / 2 - s) < margin + TRUCK_LENGTH_M / 2:
            return False
        return True

    def _populate_initial_traffic(self) -> None:
        if self.traffic_density <= 0:
            return
        spacing = LANE_SPACING_M / self.traffic_density
        for lane in range(4):
            s = self.truck.s - TRAFFIC_BEHIND_M + self.rng.uniform(0, spacing)
            while s < self.truck.s + TRAFFIC_AHEAD_M:
                # keep the start fair: nothing within 60 m ahead or 40 m behind the truck in its lanes
                near = -TRUCK_LENGTH_M - 40 < s - self.truck.s < 60
                if not (lane >= 2 and near) and s > 0:
                    self.vehicles.append(self._make_vehicle(lane, s))
                s += spacing * self.rng.uniform(0.6, 1.6)

    def _plan_stopped(self) -> list[float]:
        """Where the stopped vehicles will stand (s, m, ascending): ``stopped_per_km`` per km on
        average, spaced 0.5-1.5 x the mean, clear of the start, zebra crossings and the route's end."""
        if self.stopped_per_km <= 0:
            return []
        rng, spacing = self._stopped_rng, 1000.0 / self.stopped_per_km
        end = self.start_s + min(self.route_length_m, self.road.length_m - self.start_s) - STOPPED_END_CLEAR_M
        before, after = STOPPED_CROSSING_CLEAR_M
        out = []
        s = self.start_s + STOPPED_FIRST_M + rng.uniform(0.0, 0.5) * spacing
        while s < end:
            c = self.road.next_crossing(s - after)
            if not (c - before < s):  # the nearest crossing at or after s - after is more than `before` ahead
                out.append(s)
            s += spacing * rng.uniform(0.5, 1.5)
        return out

    def _place_stopped(self) -> None:
        """Stopped vehicles within ``TRAFFIC_AHEAD_M`` of the truck appear (out of view); moving
        traffic where one appears is taken away."""
        horizon = self.truck.s + TRAFFIC_AHEAD_M
        while self.pending_stopped_s and self.pending_stopped_s[0] < horizon:
            s = self.pending_stopped_s.pop(0)
            v = stopped_vehicle(self._stopped_rng, self._uid(), EGO_START_LANE, s)
            self.vehicles = [o for o in self.vehicles if EGO_START_LANE not in o.lanes_occupied()
                             or abs(o.s - s) > (o.length + v.length) / 2 + 10.0]
            self.vehicles.append(v)

    def _spawn_traffic(self, dt: float) -> None:
        self._place_stopped()
        if self.traffic_density <= 0:
            if self.stopped_per_km > 0:  # no traffic, but stopped vehicles behind the truck still go
                self.vehicles = [v for v in self.vehicles if v.s > self.truck.s - TRAFFIC_BEHIND_M - 30]
            return
        ts = self.truck.s
        lo, hi = ts - TRAFFIC_BEHIND_M, ts + TRAFFIC_AHEAD_M
        self.vehicles = [v for v in self.vehicles if lo - 30 < v.s < hi + 30]
        counts = [0, 0, 0, 0]
        for v in self.vehicles:
            if not v.stopped:  # the stopped ones come on top of the traffic's density
                counts[v.lane] += 1
        target = (TRAFFIC_AHEAD_M + TRAFFIC_BEHIND_M) / (LANE_SPACING_M / self.traffic_density)
        for lane in range(4):
            if counts[lane] >= target or self.rng.random() > dt / 2.0:
                continue
            # oncoming traffic and slow right-lane traffic appear ahead; the fast lane fills from behind
            s = hi if lane != 2 else lo
            if self.road.length_m - 20 < s or s < 0:
                continue
            if self._lane_clear(lane, s, 60.0):
                self.vehicles.append(self._make_vehicle(lane, s))

    def _populate_crossings(self) -> None:
        """Create the people of crossings within 600 m ahead (lazily, once per
        crossing), and people walking along the verge every ~100-300 m."""
        if self.pedestrian_density <= 0:
            return
        rng = self.rng
        while self._next_walker_s < self.truck.s + 400.0:
            s = self._next_walker_s
            side = rng.choice((-1.0, 1.0))
            p = random_pedestrian(rng, self._uid(), s, side * rng.uniform(10.2, 12.5), "walk", 0.0, -1.0)
            p.v_long = rng.choice((-1.0, 1.0)) * rng.uniform(0.0, 1.5)
            self.pedestrians.append(p)
            self._next_walker_s += rng.uniform(100.0, 300.0) / self.pedestrian_density
        for i, c in enumerate(self.road.crossings):
            if i in self._crossings_populated or not (self.truck.s - 50 < c < self.truck.s + 600):
                continue
            self._crossings_populated.add(i)
            n_cross = max(0, int(round(rng.uniform(0.6, 2.4) * self.pedestrian_density)))
            for _ in range(n_cross):
                side = rng.choice((-1.0, 1.0))
                p = random_pedestrian(rng, self._uid(), c + rng.uniform(-1.5, 1.5), side * rng.uniform(9.6, 10.6),
                                      "wait", rng.uniform(0.0, 25.0), float(c))
                self.pedestrians.append(p)
            n_walk = int(round(rng.uniform(0.0, 4.0) * self.pedestrian_density))
            for _ in range(n_walk):
                side = rng.choice((-1.0, 1.0))
                p = random_pedestrian(rng, self._uid(), c + rng.uniform(-120, 120), side * rng.uniform(10.0, 11.5),
                                      "walk", 0.0, float(c), pants=PANTS[:3])
                p.v_long = rng.choice((-1.0, 1.0)) * rng.uniform(0.9, 1.5)
                self.pedestrians.append(p)

    # ------------------------------------------------------------------ stepping
    def step(self, dt: float, controls: TruckControls) -> tuple[str, ...]:
        """Advance the world by ``dt`` seconds; return the truck's events."""
        n = max(1, int(math.ceil(dt / PHYSICS_SUBSTEP_S - 1e-9)))
        h = dt / n
        t = self.truck
        for _ in range(n):
            t.advance(h, controls, self.road.curvature_at(t.s))
        self._step_traffic(dt)
        self._step_pedestrians(dt)
        self._spawn_traffic(dt)
        self._populate_crossings()
        self.time_s += dt
        self.events = self._detect_events()
        return self.events

    def _truck_lanes(self) -> tuple[int, ...]:
        """Lanes the truck's body overlaps."""
        d = self.truck.d
        half = TRUCK_WIDTH_M / 2
        return tuple(i for i, c in enumerate(LANE_CENTRES_M) if abs(c - d) < LANE_WIDTH_M / 2 + half - 0.2)

    def _step_traffic(self, dt: float) -> None:
        rng = self.rng
        t = self.truck
        truck_lanes = self._truck_lanes()
        # per-lane occupants sorted along each direction of travel: (position of rear/front, speed, ...)
        lanes: list[list[tuple[float, float, float, object]]] = [[], [], [], []]
        for v in self.vehicles:
            for ln in v.lanes_occupied():
                lanes[ln].append((v.s, v.length, v.v * v.direction, v))
        for ln in truck_lanes:
            lanes[ln].append((t.s - TRUCK_LENGTH_M / 2, TRUCK_LENGTH_M, t.v, t))
        for ln in range(4):
            lanes[ln].sort(key=lambda e: e[0])
        active_crossings = self._active_crossings()
        blocked = [(cs, d) for cs in active_crossings for d in (1, -1) if self.crossing_blocked(cs, d)]
        for v in self.vehicles:
            v.gap, v.lead_v, v.lead = math.inf, 0.0, None
        # leader in each lane: the next occupant along the vehicle's direction
        for occ in lanes:
            n = len(occ)
            for k in range(n):
                cs, o_len, cv, obj = occ[k]
                if obj is t:
                    continue
                if obj.direction > 0:
                    j = k + 1
                    while j < n and occ[j][0] <= cs:
                        j += 1
                    if j >= n:
                        continue
                else:
                    j = k - 1
                    while j >= 0 and occ[j][0] >= cs:
                        j -= 1
                    if j < 0:
                        continue
                nb = occ[j]
                gap = abs(nb[0] - cs) - (nb[1] + o_len) / 2
                if gap < obj.gap:
                    obj.gap, obj.lead_v, obj.lead = gap, nb[2] * obj.direction, nb[3]
        time_s = self.time_s
        p_slow, p_change = dt / 45.0, dt / 25.0
        for v in self.vehicles:
            if v.stopped:
                v.accel = 0.0
                continue
            v0 = v.slow_v0 if v.slow_until > time_s else v.v0
            gap, dv = v.gap, v.v - v.lead_v
            # crossings with someone on the road: a stop line 4 m before the zebra
            if blocked:
                front = v.s + v.direction * v.length / 2
                for cs, d in blocked:
                    if d == v.direction:
                        g = (cs - d * 4.0 - front) * d
                        if -1.0 < g < gap:
                            gap, dv = max(g, 0.1), v.v
            v.accel = idm(v.v, v0, gap, dv, v.a_max, 2.5, v.headway, 4.0)
        for v in self.vehicles:
            if v.stopped:
                continue
            v.v = max(0.0, v.v + v.accel * dt)
            v.s += v.direction * v.v * dt
            if v.lc_t < 1.0:
                v.lc_t = min(1.0, v.lc_t + dt / LANE_CHANGE_S)
                x = v.lc_t * v.lc_t * (3 - 2 * v.lc_t)
                v.d = LANE_CENTRES_M[v.from_lane] * (1 - x) + LANE_CENTRES_M[v.lane] * x
            if isinstance(v.lead, Vehicle) and v.lead.stopped and v.gap < STOPPED_AVOID_M:
                # a broken-down vehicle ahead: move out of its lane as soon as that is safe
                other = _OTHER_LANE[v.lane]
                if v.lc_t >= 1.0 and self._lane_change_safe(v, other, urgent=True):
                    v.from_lane, v.lane, v.lc_t = v.lane, other, 0.0
                continue
            r = rng.random()
            if r < p_slow:
                # occasional braking: desired speed drops for a few seconds
                if v.slow_until < time_s:
                    v.slow_until = time_s + rng.uniform(2.0, 5.0)
                    v.slow_v0 = v.v0 * rng.uniform(0.35, 0.7)
            elif r < p_slow + p_change and v.lc_t >= 1.0:
                # occasional lane change within the vehicle's own direction
                other = _OTHER_LANE[v.lane]
                if self._lane_change_safe(v, other):
                    v.from_lane, v.lane, v.lc_t = v.lane, other, 0.0

    def _lane_change_safe(self, v: Vehicle, lane: int, urgent: bool = False) -> bool:
        """Enough room in ``lane`` around ``v``, with a wide berth around the truck. ``urgent`` (a
        stopped vehicle ahead): half the room from the traffic in ``lane`` (it brakes for ``v``)."""
        for o in self.vehicles:
            if o is v or lane not in o.lanes_occupied():
                continue
            rel = (o.s - v.s) * v.direction
            need_ahead = 20.0 + v.v * 1.0
            need_behind = 20.0 + max(0.0, o.v - v.v) * 3.0
            if urgent:
                need_ahead, need_behind = need_ahead / 2, need_behind / 2
            if -need_behind - (o.length + v.length) / 2 < rel < need_ahead + (o.length + v.length) / 2:
                return False
        if lane in self._truck_lanes() or (lane >= 2 and abs(self.truck.d - LANE_CENTRES_M[lane]) < 3.0):
            t_mid = self.truck.s - TRUCK_LENGTH_M / 2
            rel = (t_mid - v.s) * v.direction
            need_ahead = 25.0 + v.v * 1.2
            # never cut in within 45 m ahead of the truck's front, nor close behind it
            need_behind = 45.0 + self.truck.v * 1.0
            if -need_behind - (TRUCK_LENGTH_M + v.length) / 2 < rel < need_ahead + (TRUCK_LENGTH_M + v.length) / 2:
                return False
        # the truck might be about to move into that lane: keep clear of it while it overlaps
        for cs in self._active_crossings():
            if abs(cs - v.s) < 80:
                return False
        return True

    def _active_crossings(self) -> list[float]:
        return sorted({p.crossing_s for p in self.pedestrians if p.state == "cross"})

    def _vehicle_committed(self, crossing_s: float) -> bool:
        """True if some vehicle is too close to the crossing to stop comfortably before it."""
        for v in self.vehicles:
            front = v.s + v.direction * v.length / 2
            dist = (crossing_s - front) * v.direction
            if -(v.length + 3.0) < dist < v.v * v.v / (2 * 2.0) + 25.0:
                return True
        t = self.truck
        dist = crossing_s - t.s
        return -(TRUCK_LENGTH_M + 3.0) < dist < t.v * t.v / (2 * 2.0) + 25.0

    def _step_pedestrians(self, dt: float) -> None:
        ts = self.truck.s
        keep = []
        for p in self.pedestrians:
            if p.state == "wait":
                p.wait_s -= dt
                if p.wait_s <= 0 and not self._vehicle_committed(p.crossing_s):
                    p.state = "cross"
                    p.v_lat = (-1.0 if p.d > 0 else 1.0) * self.rng.uniform(1.1, 1.6)
            elif p.state == "cross":
                p.d += p.v_lat * dt
                p.phase += dt * 7.0
                if abs(p.d) > 10.0 and p.d * p.v_lat > 0:
                    p.state = "walk"
                    p.v_lat = 0.0
                    p.v_long = self.rng.choice((-1.0, 1.0)) * self.rng.uniform(0.9, 1.4)
            else:
                p.s += p.v_long * dt
                p.phase += dt * 6.0 * abs(p.v_long)
            if p.s > ts - 150:
                keep.append(p)
        self.pedestrians = keep

    def _detect_events(self) -> tuple[str, ...]:
        t = self.truck
        events: list[str] = []
        half = TRUCK_WIDTH_M / 2 + abs(math.sin(t.psi)) * TRUCK_LENGTH_M / 2
        rear, front = t.s - TRUCK_LENGTH_M, t.s
        hit = False
        for v in self.vehicles:
            if v.s + v.length / 2 > rear and v.s - v.length / 2 < front and abs(v.d - t.d) < half + v.width / 2:
                hit = True
                break
        if not hit:
            for p in self.pedestrians:
                if rear < p.s < front + 0.25 and abs(p.d - t.d) < half + 0.25:
                    hit = True
                    break
        if not hit and abs(t.d) > PAVED_HALF_WIDTH_M - 1.0:
            for o in self.roadside.window(rear - 10, front + 10):
                w = o.solid_half_width_m
                ext = o.width_m / 2 if o.kind == "building" else 0.15
                if w > 0 and o.s - ext < front and o.s + ext > rear and abs(o.d - t.d) < half + w:
                    hit = True
                    break
        if hit:
            events.append("collision")
        if abs(t.d) + TRUCK_WIDTH_M / 2 > PAVED_HALF_WIDTH_M:
            events.append("off_road")
        lane = self.truck_lane()
        if lane != self.lane:
            events.append("lane_departure")
            self.lane = lane
        if t.d < 0:
            events.append("oncoming_lane")
        return tuple(events)


def make_world(seed: int, **kwargs) -> World:
    """Convenience: ``World(seed, **kwargs)``."""
    return World(seed, **kwargs)

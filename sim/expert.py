"""Scripted expert (autopilot) that drives from ground truth through the same
keys a person presses.

Lateral: Stanley-style control on the Frenet state (curvature feed-forward with
a short preview for the steering lag, heading and cross-track feedback) gives
an *intended* steer in [-1, 1]; keys are then pulsed so that the truck's
rate-limited steering follows it (each step the key -- left, none or right --
whose predicted steer lands nearest the intent is held). Longitudinal: an
Intelligent-Driver-Model acceleration (cruise speed, curve speed, gap keeping,
a stop line before a zebra crossing while someone crosses) turned into
throttle/brake pulses by sigma-delta modulation (a duty cycle over a few
frames). Overtaking: a slow vehicle ahead in the right lane is passed in the
left lane of the truck's direction when that lane is clear. A stopped (broken-down)
vehicle in the right lane is passed too, with a firmer lane change; while the
passing lane is busy the expert waits ``STOPPED_WAIT_GAP_M`` behind it, room
enough to pull out from a standstill. Nearer than the room it needs to pull out
(``_pull_out_m``: someone else drove the truck there, say an agent that braked
late), it keeps its lane and stands: the simulator's truck has no reverse, so its
direction label there is the lane, not a turn it could not complete. An expert
made with ``pass_stopped=False`` never passes one: it brakes for it as for a
standing lead and stands behind it (IDM's 7 m standstill gap), for recordings
of what an agent that brakes for a broken-down vehicle sees (the passing expert
pulls out 160 m before it, so its frames never hold one close and straight
ahead).

``intended_steer`` and ``direction`` are pure functions of the world (so the
env can label frames while a person or a model drives); ``act`` keeps only
the PWM accumulators.
"""
from __future__ import annotations

import math
import random

import numpy as np

from .config import DEFAULT_DT
from .road import LANE_CENTRES_M, LANE_WIDTH_M
from .truck import (
    BRAKE_DECEL_M_S2,
    MAX_STEER_RAD,
    TRUCK_LENGTH_M,
    TRUCK_WHEELBASE_M,
    TRUCK_WIDTH_M,
    UNDERSTEER_SPEED_M_S,
    drag_decel,
    engine_accel,
    steer_after,
)
from .world import World

#: |intended steer| below this is labelled "straight"
DIRECTION_DEADBAND = 0.05
#: a stopped vehicle this close ahead in the right lane is passed (when the passing lane is clear)
STOPPED_LOOKAHEAD_M = 160.0
#: bumper-to-bumper gap the expert waits at behind a stopped vehicle it cannot pass yet
STOPPED_WAIT_GAP_M = 45.0
#: cross-track feedback limit (rad) while moving out round a stopped vehicle (0.035 otherwise)
STOPPED_PASS_FEEDBACK_RAD = 0.10
#: with stopped vehicles on the road, lane changes move sideways at least this fast (m/s)
LANE_CHANGE_LATERAL_M_S = 1.0


def world_of(world_or_env) -> World:
    """Accept a World, a TruckSimEnv, or any wrapper around one."""
    if isinstance(world_or_env, World):
        return world_or_env
    env = getattr(world_or_env, "unwrapped", world_or_env)
    world = getattr(env, "world", None)
    if not isinstance(world, World):
        raise TypeError(f"Expert needs a sim World or a TruckSimEnv after reset(), got {type(world_or_env).__name__}")
    return world


class Expert:
    """Deterministic autopilot. ``seed`` varies its cruise speed a little
    (19.5-20.5 m/s) so that different experts do not drive identically.
    ``pass_stopped``: False: stand behind a broken-down vehicle in the truck's lane instead of
    passing it (see the module doc)."""

    def __init__(self, seed: int = 0, cruise_speed_m_s: float | None = None, dt: float | None = None,
                 deadband: float = DIRECTION_DEADBAND, pass_stopped: bool = True):
        rng = random.Random(int(seed) * 31 + 5)
        self.cruise_speed_m_s = cruise_speed_m_s if cruise_speed_m_s is not None else 20.0 + rng.uniform(-0.5, 0.5)
        self.dt = dt
        self.deadband = deadband
        self.pass_stopped = pass_stopped
        self.curve_lateral_accel_m_s2 = 1.6
        self.comfort_decel_m_s2 = 2.0
        self._throttle_acc = 0.0
        self._brake_acc = 0.0

    def reset(self) -> None:
        self._throttle_acc = 0.0
        self._brake_acc = 0.0

    # ---------------------------------------------------------------- lanes
    def target_lane(self, world_or_env) -> int:
        """Lane index the expert wants to be in now (3 = right lane, 2 = passing lane)."""
        w = world_of(world_or_env)
        t = w.truck
        cur = w.nearest_lane()
        if cur not in (2, 3):
            return 3
        crossing_near = w.road.next_crossing(t.s - TRUCK_LENGTH_M - 5) - t.s < 220.0
        if cur == 3:
            gap, stopped = self.stopped_ahead(w) if self.pass_stopped else (math.inf, None)
            if stopped is not None and self._pull_out_m(w, stopped) <= gap:
                # a broken-down vehicle, with room to pull out round it (the truck cannot reverse: closer,
                # it keeps its lane, and so does its direction label): pass it, zebra crossing or not (it
                # will not move); once moving out, carry on unless the passing lane's traffic is close
                moving_out = t.d < LANE_CENTRES_M[3] - 0.3 and t.psi < -0.02
                if (self._lane_clear(w, 2, ahead_m=30.0, behind_m=15.0) or
                        (moving_out and self._lane_clear(w, 2, ahead_m=15.0, behind_m=5.0, closing_s=1.5))):
                    return 2
            c = LANE_CENTRES_M[3]
            gap, lead_v = w.lead_gap(c - LANE_WIDTH_M / 2, c + LANE_WIDTH_M / 2, 90.0)
            if (gap < 70.0 and lead_v < self.cruise_speed_m_s - 2.5 and lead_v > 3.0 and not crossing_near
                    and self._lane_clear(w, 2, ahead_m=30.0, behind_m=15.0)):
                return 2
            return 3
        # in the passing lane: go back when the right lane is clear beside and a little ahead (and no
        # broken-down vehicle stands within the distance at which the right lane would leave it again)
        if self._lane_clear(w, 3, ahead_m=30.0, behind_m=12.0, slow_ok=False) and \
                self.stopped_ahead(w)[0] >= STOPPED_LOOKAHEAD_M:
            return 3
        return 2

    def stopped_ahead(self, w: World, lane: int = 3):
        """(gap m from the truck's front, vehicle) of what to pass round in ``lane``: the nearest
        stopped (broken-down) vehicle ahead within STOPPED_LOOKAHEAD_M, or a vehicle standing (under
        3 m/s) in the queue before it; (inf, None) if there is no stopped vehicle that close."""
        t = w.truck
        lo, hi = LANE_CENTRES_M[lane] - LANE_WIDTH_M / 2, LANE_CENTRES_M[lane] + LANE_WIDTH_M / 2
        found = nearest = None
        best = near = math.inf
        for v in w.vehicles:
            if v.direction < 0 or v.d + v.width / 2 <= lo or v.d - v.width / 2 >= hi:
                continue
            gap = v.s - v.length / 2 - t.s
            if gap <= -v.length:
                continue
            if v.stopped and gap < best:
                best, found = gap, v
            if gap < near:
                near, nearest = gap, v
        if found is None or best >= STOPPED_LOOKAHEAD_M:
            return math.inf, None
        if nearest is not found and nearest.v < 3.0:
            found, best = nearest, near  # queued behind it: pass the queue too
        return max(best, 0.0), found

    def _pull_out_m(self, w: World, v) -> float:
        """Metres the truck needs to get far enough left to pass the stopped vehicle ``v`` (0: clear
        already). The world's collision test sweeps the body sideways by |sin psi| x half its length."""
        t = w.truck
        left_edge = v.d - v.width / 2
        if t.d + TRUCK_WIDTH_M / 2 + abs(math.sin(t.psi)) * TRUCK_LENGTH_M / 2 + 0.2 < left_edge:
            return 0.0
        e = t.d - LANE_CENTRES_M[2]
        heading = max(0.03, min(STOPPED_PASS_FEEDBACK_RAD, math.atan(0.35 * e / (t.v + 2.0))) / 0.9)  # psi settles
        now = max(0.0, -t.psi)  # already heading left this much
        h = max(heading, now)
        clear_d = left_edge - TRUCK_WIDTH_M / 2 - math.sin(h) * TRUCK_LENGTH_M / 2 - 0.2
        # sideways at the larger heading, the metres to turn to it (~1 rad per 60 m), the steering lag
        return max(0.0, t.d - clear_d) / math.tan(h) + max(0.0, heading - now) * 60.0 + 3.0 + 0.5 * t.v

    def _lane_clear(self, w: World, lane: int, ahead_m: float, behind_m: float, slow_ok: bool = True,
                    closing_s: float = 3.5) -> bool:
        t = w.truck
        front, rear = t.s, t.s - TRUCK_LENGTH_M
        lo = LANE_CENTRES_M[lane] - LANE_WIDTH_M / 2
        hi = LANE_CENTRES_M[lane] + LANE_WIDTH_M / 2
        for v in w.vehicles:
            if v.direction < 0 or v.d + v.width / 2 < lo or v.d - v.width / 2 > hi:
                continue
            v_rear, v_front = v.s - v.length / 2, v.s + v.length / 2
            need_ahead = ahead_m + max(0.0, t.v - v.v) * 3.0
            need_behind = behind_m + max(0.0, v.v - t.v) * closing_s
            if v_rear < front + need_ahead and v_front > rear - need_behind:
                return False
            if not slow_ok and v_rear >= front and v_rear - front < 120.0 and v.v < self.cruise_speed_m_s - 2.5:
                # a slow vehicle not far ahead in the right lane: stay out and pass it too
                return False
        return True

    # ---------------------------------------------------------------- steering
    def intended_steer(self, world_or_env) -> float:
        """Steer the expert wants now, in [-1, 1] (negative = left)."""
        w = world_of(world_or_env)
        t = w.truck
        target_d = LANE_CENTRES_M[self.target_lane(w)]
        v = max(t.v, 1.0)
        kappa = w.road.curvature_at(t.s + 0.35 * v)
        understeer = 1.0 + (v / UNDERSTEER_SPEED_M_S) ** 2
        delta_ff = math.atan(TRUCK_WHEELBASE_M * kappa * understeer)
        e = t.d - target_d
        limit = 0.035
        if w.stopped_per_km > 0:
            # a road with broken-down vehicles is driven slower: lane changes keep ~1 m/s sideways, so the
            # truck crosses a lane line within the scorecard's 1 s grace (0.035 rad is 0.4 m/s at 12 m/s)
            limit = max(limit, min(STOPPED_PASS_FEEDBACK_RAD, LANE_CHANGE_LATERAL_M_S * 0.9 / (v + 1.0)))
        if target_d < t.d and self.stopped_ahead(w)[0] < STOPPED_LOOKAHEAD_M:
            limit = STOPPED_PASS_FEEDBACK_RAD  # moving out round a broken-down vehicle: firmer
        fb_e = max(-limit, min(limit, math.atan(0.35 * e / (v + 2.0))))
        delta = delta_ff - 0.9 * t.psi * understeer - fb_e * understeer
        return max(-1.0, min(1.0, delta / MAX_STEER_RAD))

    def direction(self, world_or_env) -> str:
        """'left', 'straight' or 'right': the intended steer with a deadband."""
        s = self.intended_steer(world_or_env)
        if s < -self.deadband:
            return "left"
        if s > self.deadband:
            return "right"
        return "straight"

    # ---------------------------------------------------------------- speed
    def desired_accel(self, world_or_env) -> float:
        """Longitudinal acceleration (m/s^2) the expert wants now."""
        w = world_of(world_or_env)
        t = w.truck
        v = t.v
        # curve speed: never faster than what the bends ahead allow with comfortable braking
        v_target = self.cruise_speed_m_s
        b = self.comfort_decel_m_s2
        for ahead in (0.0, 20.0, 40.0, 70.0, 100.0, 140.0, 180.0):
            k = abs(w.road.curvature_at(t.s + ahead))
            if k > 1e-6:
                v_curve = math.sqrt(self.curve_lateral_accel_m_s2 / k)
                v_target = min(v_target, math.sqrt(v_curve * v_curve + 2.0 * b * ahead))
        # who is in the way: the truck's body span and the lane it is heading for
        lane = self.target_lane(w)
        lo = min(t.d - TRUCK_WIDTH_M / 2, LANE_CENTRES_M[lane] - 1.2)
        hi = max(t.d + TRUCK_WIDTH_M / 2, LANE_CENTRES_M[lane] + 1.2)
        gap, lead_v = w.lead_gap(lo, hi)
        # not passing: a broken-down vehicle is a standing lead like any other (lead_gap holds it)
        stopped_gap, stopped = self.stopped_ahead(w) if self.pass_stopped else (math.inf, None)
        wait_gap = None
        if stopped is not None and (need := self._pull_out_m(w, stopped)) > 0:
            if lane != 2:
                # whoever leads, never nearer than STOPPED_WAIT_GAP_M: room to pull out from a standstill
                wait_gap = max(stopped_gap - (STOPPED_WAIT_GAP_M - 7.0), 0.1)
            elif stopped_gap >= need and stopped_gap <= gap + 1e-6:
                # pulling out with room enough: the passing lane's traffic leads instead
                gap, lead_v = w.lead_gap(lo, hi, ignore=stopped)
            elif stopped_gap < gap:
                gap, lead_v = stopped_gap, 0.0  # pulling out, short of room: it leads like any vehicle
        dv = v - lead_v
        crossing = w.road.next_crossing(t.s - 3.0)
        if crossing - t.s < 250.0 and w.crossing_blocked(crossing, 1):
            stop_gap = crossing - 5.0 - t.s
            if stop_gap < gap:
                gap, dv = max(stop_gap, 0.1), v
        a = _idm(v, v_target, gap, dv)
        if wait_gap is not None:
            a = min(a, _idm(v, v_target, wait_gap, v))
        return a

    # ---------------------------------------------------------------- keys
    def act(self, world_or_env) -> np.ndarray:
        """Keys to hold this step: int8 array (4,) in (left, right, throttle, brake) order."""
        w = world_of(world_or_env)
        dt = self.dt or getattr(getattr(getattr(world_or_env, "unwrapped", None), "config", None), "dt", None) or DEFAULT_DT
        t = w.truck
        target = self.intended_steer(w)
        options = ((0, steer_after(t.steer, 0.0, dt, True)),
                   (-1, steer_after(t.steer, -1.0, dt, False)),
                   (1, steer_after(t.steer, 1.0, dt, False)))
        key = min(options, key=lambda o: abs(o[1] - target))[0]
        a = self.desired_accel(w)
        v = t.v
        drag = drag_decel(v)
        if a >= -drag:
            duty_t = min(1.0, max(0.0, (a + drag) / max(engine_accel(v), 0.05)))
            duty_b = 0.0
        else:
            duty_t = 0.0
            duty_b = min(1.0, max(0.0, (-a - drag) / BRAKE_DECEL_M_S2))
        if v < 0.3 and a < 0.0:
            duty_b = 1.0  # hold the truck at a standstill
        throttle = brake = False
        if duty_t > 0:
            self._throttle_acc += duty_t
            if self._throttle_acc >= 0.5:
                self._throttle_acc -= 1.0
                throttle = True
        else:
            self._throttle_acc = 0.0
        if duty_b > 0:
            self._brake_acc += duty_b
            if self._brake_acc >= 0.5:
                self._brake_acc -= 1.0
                brake = True
        else:
            self._brake_acc = 0.0
        return np.array([key < 0, key > 0, throttle, brake], dtype=np.int8)

    def act_continuous(self, world_or_env) -> np.ndarray:
        """Continuous action float32 (3,): (steer in [-1, 1], throttle, brake)."""
        w = world_of(world_or_env)
        a = self.desired_accel(w)
        v = w.truck.v
        drag = drag_decel(v)
        throttle = min(1.0, max(0.0, (a + drag) / max(engine_accel(v), 0.05))) if a >= -drag else 0.0
        brake = min(1.0, max(0.0, (-a - drag) / BRAKE_DECEL_M_S2)) if a < -drag else 0.0
        if v < 0.3 and a < 0.0:
            brake = 1.0
        return np.array([self.intended_steer(w), throttle, brake], dtype=np.float32)


def _idm(v: float, v0: float, gap: float, dv: float) -> float:
    """The expert's IDM: 1.2 m/s^2 max, 2 m/s^2 comfortable, 2 s headway, 7 m standstill gap."""
    a_max, b, headway, s0 = 1.2, 2.0, 2.0, 7.0
    free = 1.0 - (v / max(v0, 0.1)) ** 4
    free = max(free, -2.0 / a_max)
    inter = 0.0
    if gap < math.inf:
        s_star = s0 + max(0.0, v * headway + v * dv / (2.0 * math.sqrt(a_max * b)))
        inter = (s_star / max(gap, 0.1)) ** 2
    return max(-BRAKE_DECEL_M_S2, min(a_max, a_max * (free - inter)))

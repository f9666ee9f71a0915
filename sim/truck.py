"""The ego truck: controls, steering and longitudinal dynamics, and its
motion in Frenet coordinates (s along the road, d to the right, heading
error psi, + = pointing right). Pure Python; no drawing."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .road import PAVED_HALF_WIDTH_M

TRUCK_LENGTH_M = 16.5  #: tractor + trailer, front bumper to rear
TRUCK_WIDTH_M = 2.5
TRUCK_WHEELBASE_M = 6.0
CAB_EYE_BEHIND_FRONT_M = 1.5  #: driver's eye behind the front bumper
MAX_STEER_RAD = 0.15  #: road-wheel angle at full lock (steer = +-1)
STEER_RATE_PER_S = 1.6  #: steer moves toward a held key's lock at this rate (units of full lock / s)
STEER_CENTRE_RATE_PER_S = 0.8  #: with no key held, steer returns to centre at this rate
UNDERSTEER_SPEED_M_S = 32.0  #: yaw response falls as 1 / (1 + (v / this)^2)
ENGINE_ACCEL_M_S2 = 1.5  #: full-throttle acceleration at standstill
ENGINE_FADE_SPEED_M_S = 34.0  #: full-throttle acceleration falls linearly to 0 at this speed
BRAKE_DECEL_M_S2 = 6.0  #: full brake
ROLLING_DRAG_M_S2 = 0.15
AERO_DRAG_PER_V2 = 0.0006
GRASS_DRAG_M_S2 = 1.5
GRIP_LATERAL_M_S2 = 5.5  #: beyond this lateral acceleration the truck slides (drifts wide)
PHYSICS_SUBSTEP_S = 1.0 / 30.0


def steer_after(steer: float, target: float, dt: float, centring: bool) -> float:
    """Steer (in [-1, 1]) after ``dt`` seconds moving toward ``target``.

    With a key held the steer moves at STEER_RATE_PER_S; ``centring`` (no key
    held) returns it at STEER_CENTRE_RATE_PER_S. Continuous control uses the
    key rate in both directions.
    """
    rate = STEER_CENTRE_RATE_PER_S if centring else STEER_RATE_PER_S
    step = rate * dt
    if steer < target:
        return min(target, steer + step)
    return max(target, steer - step)


def engine_accel(v: float) -> float:
    """Full-throttle acceleration (m/s^2) at speed ``v``."""
    return ENGINE_ACCEL_M_S2 * max(0.0, 1.0 - v / ENGINE_FADE_SPEED_M_S)


def drag_decel(v: float) -> float:
    """Coasting deceleration (m/s^2, positive) on tarmac at speed ``v``."""
    return (ROLLING_DRAG_M_S2 + AERO_DRAG_PER_V2 * v * v) if v > 0 else 0.0


@dataclass(frozen=True)
class TruckControls:
    """One step's driver input: ``steer_target`` in [-1, 1] (negative = left),
    ``throttle`` and ``brake`` in [0, 1]; ``centring`` is True when steering
    keys are released (self-centring rate applies)."""

    steer_target: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0
    centring: bool = True

    @classmethod
    def from_keys(cls, left: bool, right: bool, throttle: bool, brake: bool) -> "TruckControls":
        target = (1.0 if right else 0.0) - (1.0 if left else 0.0)
        return cls(target, 1.0 if throttle else 0.0, 1.0 if brake else 0.0, centring=target == 0.0)


class Truck:
    """Ego truck. ``s`` is the front bumper; ``psi`` the heading error (rad,
    + = pointing right of the road); ``steer`` in [-1, 1] of full lock."""

    __slots__ = ("s", "d", "psi", "v", "steer", "accel", "lateral_accel")

    def __init__(self, s: float, d: float, v: float):
        self.s, self.d, self.psi, self.v = s, d, 0.0, v
        self.steer = 0.0
        self.accel = 0.0
        self.lateral_accel = 0.0

    @property
    def eye_s(self) -> float:
        return self.s - CAB_EYE_BEHIND_FRONT_M

    def path_curvature(self) -> float:
        """Curvature (1/m, + = right) the truck's wheels ask for now, after understeer."""
        c = math.tan(self.steer * MAX_STEER_RAD) / TRUCK_WHEELBASE_M
        return c / (1.0 + (self.v / UNDERSTEER_SPEED_M_S) ** 2)

    def advance(self, h: float, c: TruckControls, kappa: float) -> None:
        """Integrate ``h`` seconds (keep h <= PHYSICS_SUBSTEP_S) on a road of
        curvature ``kappa`` (1/m) under the driver's controls ``c``.

        Kinematic bicycle in Frenet coordinates: the wheels ask for a path
        curvature (steer, understeer, grip-limited); the road bends under the
        truck at ``kappa``, so with the wheels straight in a bend the heading
        error grows and the truck drifts to the outside of the bend.
        """
        t = self
        t.steer = steer_after(t.steer, max(-1.0, min(1.0, c.steer_target)), h, c.centring)
        v = t.v
        a = max(0.0, min(1.0, c.throttle)) * engine_accel(v) - max(0.0, min(1.0, c.brake)) * BRAKE_DECEL_M_S2
        a -= drag_decel(v)
        if abs(t.d) > PAVED_HALF_WIDTH_M:
            a -= GRASS_DRAG_M_S2 if v > 0 else 0.0
        t.accel = a
        v_new = max(0.0, v + a * h)
        vm = 0.5 * (v + v_new)
        # wheels' curvature, limited by grip: beyond it the truck slides wide (drift)
        c_wheels = t.path_curvature()
        if vm > 1.0:
            c_max = GRIP_LATERAL_M_S2 / (vm * vm)
            c_wheels = max(-c_max, min(c_max, c_wheels))
        t.lateral_accel = vm * vm * c_wheels
        denom = 1.0 - kappa * t.d
        s_dot = vm * math.cos(t.psi) / denom
        t.s += s_dot * h
        t.d += vm * math.sin(t.psi) * h
        t.psi += (vm * c_wheels - kappa * s_dot) * h
        t.v = v_new

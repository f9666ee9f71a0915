"""Judging a driver on one route from ground truth: the scorecard's metrics and interventions.

One home for the rules that ``truckpilot eval`` applies in-process (``agent.apps.scorecard``)
and that the sim window applies to a driver in another process (``truckpilot sim --judge``,
``truckpilot eval --live``):

* an intervention is a moment the expert must take over: "off_road", "oncoming_lane" (the
  truck's centre left of the centreline), or |lateral offset| > ``intervention_offset_m`` for
  more than ``offset_grace_s`` (a lane change crosses the line faster; a drift does not);
* with ``stall_s`` > 0, also standing still (under ``stall_speed_mps``) for more than ``stall_s``:
  the driver is stuck (behind a broken-down vehicle it will not pass), and the expert drives it
  on; off by default (0), so cards without stopped vehicles judge as they always did;
* the expert then drives at least ``recover_s``, and until the truck is back within
  ``settled_offset_m`` of a lane centre (off-road and oncoming lanes cleared), at most
  ``max_recover_s``, then hands back; after a stall, until it has also driven ``stall_recover_m``
  further, at most ``stall_max_recover_s``;
* a rescue that reaches its time limit unfinished with the truck moved less than ``stuck_m``
  since the takeover ends the route as stuck (``stuck`` True): the expert cannot get the truck out
  either (the simulator's truck has no reverse: standing 8 m behind a broken-down vehicle, or nose
  to nose with oncoming traffic, it has no room to pull out), so handing back would count the same
  standstill again at every hand-back; the one intervention that led there is counted;
* a collision ends the route; so does the route's end (finished) or the env's truncation.

Per route the judge counts (units: m, steps of ``dt`` s): distance, the distance the driver
itself drove, steps it drove, collisions, interventions, whether it ended stuck, lane departures (the
"lane_departure" event) and the sum of |offset| while it drove, changes of its steering
keys (left / none / right), and reversals of the truck's steering wheel (``info["steer"]``):
the steering reversal rate of driving research, counted each time the wheel turns back by at
least ``reversal_gap`` (of full lock) from its last extreme. Keys and analog input are judged
alike by it (a key-state change need not move the wheel the other way; an axis has no keys).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeConfig:
    """The intervention rules (m, s); the scorecard's defaults."""

    intervention_offset_m: float = 1.5  #: |offset| beyond this (for offset_grace_s) is an intervention
    offset_grace_s: float = 1.0  #: how long |offset| may exceed the limit (a lane change passes faster)
    recover_s: float = 2.0  #: the expert drives at least this long after an intervention
    max_recover_s: float = 6.0  #: ... and until back within settled_offset_m of a lane centre, at most this long
    settled_offset_m: float = 0.5
    reversal_gap: float = 0.02  #: the wheel must turn back this much (full lock = 1) to count a reversal
    stall_s: float = 0.0  #: standing still longer than this is an intervention (0: never)
    stall_speed_mps: float = 0.5  #: ... standing: slower than this
    stall_recover_m: float = 60.0  #: after a stall the expert drives at least this far (round what held it)
    stall_max_recover_s: float = 40.0  #: ... at most this long (it may wait for the passing lane to clear)
    stuck_m: float = 2.0  #: a rescue at its time limit that moved the truck less than this ends the route (stuck)


class Verdict(enum.Enum):
    """What happens after a step: the same driver goes on, the expert takes over (an
    intervention), the driver gets control back, or the route is over."""

    GO_ON = "go_on"
    TAKEOVER = "takeover"
    HANDBACK = "handback"
    END = "end"


def steer_state(left: bool, right: bool) -> int:
    """-1 (left only), +1 (right only) or 0: the steering the keys ask for."""
    return int(right and not left) - int(left and not right)


class RouteJudge:
    """Counts one route step by step and says who drives next.

    ``step(left, right, before_m, info, terminated, truncated)`` after each env step:
    left/right: the steering keys the step was driven with; before_m: the distance before the
    step (m); info, terminated, truncated: what the env returned. ``in_control`` says whether
    the driver (True) or the rescuing expert (False) drives the next step.
    """

    def __init__(self, route_m: float, dt: float, config: JudgeConfig = JudgeConfig()) -> None:
        self.route_m, self.dt, self.config = float(route_m), float(dt), config
        self.grace_steps = max(1, int(round(config.offset_grace_s / dt)))
        self.min_recover = int(round(config.recover_s / dt))
        self.max_recover = int(round(config.max_recover_s / dt))
        self.steps = self.driver_steps = self.interventions = self.collisions = 0
        self.lane_departures = self.steer_changes = self.steer_reversals = 0
        self.offset_sum_m = self.driver_distance_m = 0.0
        self.distance_m = 0.0
        self.finished = False
        self.stuck = False  #: the route ended with the rescuing expert unable to move the truck on
        self._taken_at_m = 0.0  # the distance at the last takeover
        self._over_limit = 0  # consecutive driver steps beyond the offset limit
        self._standing = 0  # consecutive driver steps standing still
        self._recover_to_m: float | None = None  # after a stall: the distance the expert drives to
        self._recovering = 0  # steps the rescuer has driven in this recovery (0 = the driver drives)
        self._last_steer: int | None = None
        self._wheel_extreme: float | None = None  # the wheel's last extreme (reversal counting)
        self._wheel_dir = 0  # +1 turning right, -1 left, 0 not yet known

    @property
    def in_control(self) -> bool:
        """The driver (not the rescuing expert) drives the next step."""
        return self._recovering == 0

    def step(self, left: bool, right: bool, before_m: float, info: dict, terminated: bool,
             truncated: bool) -> Verdict:
        c = self.config
        in_control = self.in_control  # who drove this step
        self.steps += 1
        events = info["events"]
        self.distance_m = float(info["distance"])
        offset = float(info["lateral_offset"])
        if in_control:
            self.driver_steps += 1
            self.driver_distance_m += self.distance_m - float(before_m)
            self.offset_sum_m += abs(offset)
            self.lane_departures += events.count("lane_departure")
            s = steer_state(left, right)
            if self._last_steer is not None and s != self._last_steer:
                self.steer_changes += 1
            self._last_steer = s
            self._count_reversal(float(info.get("steer", 0.0)))
        if "collision" in events:
            self.collisions += 1
            return Verdict.END
        if terminated or truncated:
            self.finished = bool(self.distance_m >= self.route_m - 1e-6)
            return Verdict.END
        if in_control:
            self._over_limit = self._over_limit + 1 if abs(offset) > c.intervention_offset_m else 0
            self._standing = self._standing + 1 if c.stall_s > 0 and float(info["speed"]) < c.stall_speed_mps else 0
            stalled = c.stall_s > 0 and self._standing * self.dt > c.stall_s
            if ("off_road" in events or "oncoming_lane" in events or self._over_limit > self.grace_steps
                    or stalled):
                self.interventions += 1
                self._recovering, self._over_limit, self._standing = 1, 0, 0
                self._recover_to_m = self.distance_m + c.stall_recover_m if stalled else None
                self._taken_at_m = self.distance_m
                return Verdict.TAKEOVER
            return Verdict.GO_ON
        self._recovering += 1
        settled = abs(offset) < c.settled_offset_m and "off_road" not in events and "oncoming_lane" not in events
        if self._recover_to_m is not None:  # after a stall
            done = settled and self.distance_m >= self._recover_to_m
            timed_out = self._recovering * self.dt > c.stall_max_recover_s
        else:
            done = self._recovering > self.min_recover and settled
            timed_out = self._recovering > self.max_recover
        if not done and timed_out and self.distance_m - self._taken_at_m < c.stuck_m:
            self.stuck = True
            return Verdict.END
        if done or timed_out:
            self._recovering = 0
            self._recover_to_m = None
            self._last_steer = None
            self._wheel_extreme, self._wheel_dir = None, 0
            return Verdict.HANDBACK
        return Verdict.GO_ON

    def stop_request(self) -> str | None:
        """"stuck" once the route has ended stuck (the drive loop's ``stop_when``: the loop goes on
        after an END verdict otherwise), else None."""
        return "stuck" if self.stuck else None

    def _count_reversal(self, wheel: float) -> None:
        """One driver step's wheel position (full lock = 1): a reversal when it turns back by at
        least ``reversal_gap`` from the last extreme in the direction it was turning."""
        gap = self.config.reversal_gap
        if self._wheel_extreme is None:
            self._wheel_extreme = wheel
            return
        d = wheel - self._wheel_extreme
        if self._wheel_dir == 0:
            if abs(d) >= gap:
                self._wheel_dir, self._wheel_extreme = (1 if d > 0 else -1), wheel
        elif d * self._wheel_dir > 0:
            self._wheel_extreme = wheel  # further the same way
        elif abs(d) >= gap:
            self.steer_reversals += 1
            self._wheel_dir, self._wheel_extreme = -self._wheel_dir, wheel

    def to_dict(self) -> dict:
        """The route's counts (JSON-ready; the fields of the scorecard's RouteScore)."""
        return {"route_m": self.route_m, "distance_m": self.distance_m, "driver_distance_m": self.driver_distance_m,
                "finished": self.finished, "stuck": self.stuck, "collisions": self.collisions,
                "interventions": self.interventions,
                "lane_departures": self.lane_departures, "offset_sum_m": self.offset_sum_m,
                "driver_steps": self.driver_steps, "steer_changes": self.steer_changes,
                "steer_reversals": self.steer_reversals, "steps": self.steps,
                "dt": self.dt}

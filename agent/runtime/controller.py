"""Controller: ``Perception`` -> ``Action`` -> ``KeysHeld``.

Steering: steer = p_right - p_left from the direction classifier, smoothed by
an exponential moving average with time constant ``steer_tau_s``, with
hysteresis (steering starts when |steer| exceeds ``steer_enter`` and stops
when it falls below ``steer_exit`` < ``steer_enter``).

Speed: with a known speed (``speed_mps``, e.g. from the simulator) a
proportional controller holds ``target_speed_mps``; without it the throttle is
a duty cycle (``cruise_throttle``) reduced in turns.

Obstacles: a car, truck or person whose box bottom overlaps the ego corridor
(a trapezoid from the frame bottom up to the horizon, narrowing with
perspective, so oncoming traffic in the next lane is not in it) is tracked from frame to frame; its
time-to-collision from box growth, TTC = h / (dh/dt), is estimated from the
smoothed growth rate of log(h); TTC below the braking threshold brakes (throttle
off) and keeps braking for ``brake_hold_s`` after the last trigger. A static
or shrinking box has no finite TTC and never brakes. The threshold is
``ttc_brake_s`` without a speed; with the truck's real speed v (the simulator,
a game's telemetry) it is the time the truck needs to stop from v at
``brake_decel_mps2`` plus ``reaction_s``: TTC < v / (2 a) + t_r (the obstacle
taken as standing, the worst case: closing at v, stopping takes v / (2 a) of
the time to reach it), so a fast truck brakes earlier and a slow one later.

With a known speed it also brakes on range: on a flat road a box's bottom row y gives the
obstacle's distance from the camera, d = camera_height x f / (y - horizon row), f the focal length
in px from the horizontal field of view. The truck brakes while d < ``stop_gap_m`` + v x
``reaction_s`` + (v^2 - u^2) / (2 ``brake_decel_mps2``), u = v - d x d ln(h)/dt the obstacle's own
speed (0 for a standing one): room to stop ``stop_gap_m`` behind it. The TTC rule needs a steady
growth rate, which a learned detector's jittering box of a far vehicle does not give; the range
needs only the box bottom. The geometry (``horizon``, ``camera_height_m``, ``hfov_deg``) defaults
to the simulator's cab camera: set it for a game's camera. Nothing in the truck's lane closes
faster than the truck drives; a box that does (by more than ``oncoming_margin_mps``, once tracked
for ``oncoming_min_track_s``) is oncoming traffic in the corridor on a bend, and neither rule
brakes for it.

Keys: binary keys approximate continuous values by pulse-width modulation
(``KeyPwm``): over any window of at least ``pwm_period_s`` the key is down for
about |value| of the time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.types import Action, KeysHeld
from perception.boxes import pair_iou
from perception.types import Detection, Perception


def config_field(text: str, default):
    """A dataclass field with ``default`` and its help text in ``metadata["help"]`` (the configs' CLIs print it)."""
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ControllerConfig:
    """Every controller setting; ``field.metadata['help']`` explains each."""

    steer_tau_s: float = config_field("time constant (s) of the EMA smoothing steer = p_right - p_left", 0.15)
    steer_enter: float = config_field("|smoothed steer| above which steering starts", 0.35)
    steer_exit: float = config_field("|smoothed steer| below which steering stops (< steer_enter)", 0.15)
    steer_gain: float = config_field(
        "multiplier on the smoothed steer while steering (clipped to [-1, 1]); 0.5 tames the bang-bang "
        "weaving of a 3-class direction signal (built-in sim: 0 vs 5 collisions in 8 x 100 s at 1.0)", 0.5)
    target_speed_mps: float = config_field("speed to hold when speed is known, m/s", 12.0)
    speed_kp: float = config_field("throttle per m/s of speed below target", 0.25)
    brake_kp: float = config_field("brake per m/s of speed above target + speed_deadband_mps", 0.15)
    speed_deadband_mps: float = config_field("overspeed tolerated before braking, m/s", 1.5)
    cruise_throttle: float = config_field("throttle duty when speed is unknown", 0.6)
    turn_slowdown: float = config_field("fraction of throttle removed at full steer", 0.5)
    obstacle_labels: tuple[str, ...] = config_field("detection labels that can block the ego path", ("car", "truck", "person"))
    min_score: float = config_field("ignore detections scoring below this", 0.4)
    corridor_center: float = config_field("ego corridor centre as a fraction of frame width", 0.5)
    corridor_bottom_width: float = config_field("ego corridor width at the frame bottom, fraction of frame width", 0.5)
    corridor_top_width: float = config_field("ego corridor width at its top (the horizon), fraction of frame width", 0.04)
    corridor_top: float = config_field("ego corridor top (about the horizon), fraction of frame height from the top", 0.45)
    ttc_brake_s: float = config_field("brake when time-to-collision drops below this, s (when the speed is unknown)", 2.0)
    brake_decel_mps2: float = config_field(
        "with a known speed v: the deceleration the brakes are counted on, m/s^2; brake when TTC < v / (2 x this) "
        "+ reaction_s", 3.0)
    reaction_s: float = config_field("with a known speed: margin added to the stopping time, s", 0.5)
    range_brake: bool = config_field("with a known speed, brake on range as well as on TTC (see the module doc)", True)
    stop_gap_m: float = config_field(
        "with a known speed: brake while an in-path obstacle's range (camera to its base, m; from its box bottom "
        "on a flat road) is under this + v x reaction_s + the braking distance down to its speed: stand about "
        "this far behind a standing one", 8.0)
    oncoming_margin_mps: float = config_field(
        "with a known speed and range_brake: an obstacle closing faster than the truck's own speed + this, m/s "
        "(closing = range x box growth), comes towards it: oncoming traffic seen in the corridor on a bend, "
        "not braked for", 4.0)
    oncoming_min_track_s: float = config_field(
        "... judged only once the obstacle has been tracked this long, s: the first growth rates of a new "
        "track jump with its box (a vehicle coming out of fog snapped from 14 to 19 px in one frame)", 0.3)
    horizon: float = config_field(
        "the horizon's row (where a flat road vanishes), fraction of the frame height from the top (the "
        "simulator's cab camera: 0.42)", 0.42)
    camera_height_m: float = config_field("the camera's height above the road, m (the simulator's: 2.6)", 2.6)
    hfov_deg: float = config_field("the camera's horizontal field of view, degrees (the simulator's: 62)", 62.0)
    growth_tau_s: float = config_field("time constant (s) of the EMA on the box growth rate d ln(h)/dt", 0.2)
    track_iou: float = config_field("IoU with the previous box to count as the same object", 0.3)
    brake_hold_s: float = config_field("keep braking this long after the last TTC trigger, s", 1.0)
    stop_hold_mps: float = config_field(
        "with a known speed: braking for a tracked in-path obstacle below this speed (m/s) holds the truck "
        "at a standstill until the obstacle pulls away or leaves the path", 2.0)
    stop_hold_min_height: float = config_field(
        "... and only for an obstacle this near: its box at least this fraction of the frame height (a car "
        "~25 m ahead in the simulator's 62 deg view; a far box's pixel steps fake a TTC)", 0.06)
    release_growth: float = config_field(
        "a held obstacle pulls away when its box shrinks faster than this, d ln(h)/dt in 1/s", -0.05)
    pwm_period_s: float = config_field("key PWM period: window over which duty ~ |value|, s", 0.25)
    pwm_deadzone: float = config_field("|value| below this gives no key press at all", 0.05)

    def __post_init__(self) -> None:
        if not 0 <= self.steer_exit < self.steer_enter <= 1:
            raise ValueError(f"need 0 <= steer_exit ({self.steer_exit}) < steer_enter ({self.steer_enter}) <= 1")
        if self.pwm_period_s <= 0 or self.steer_tau_s < 0 or self.growth_tau_s < 0:
            raise ValueError("pwm_period_s must be > 0 and time constants >= 0")
        if not (0 <= self.horizon < 1 and self.camera_height_m > 0 and 0 < self.hfov_deg < 180
                and self.stop_gap_m >= 0):
            raise ValueError(f"need 0 <= horizon ({self.horizon}) < 1, camera_height_m ({self.camera_height_m}) > 0, "
                             f"0 < hfov_deg ({self.hfov_deg}) < 180 and stop_gap_m ({self.stop_gap_m}) >= 0")
        if self.brake_decel_mps2 <= 0 or self.reaction_s < 0:
            raise ValueError(f"need brake_decel_mps2 > 0 (got {self.brake_decel_mps2}) and reaction_s >= 0 "
                             f"(got {self.reaction_s})")

    def ttc_threshold(self, speed_mps: float | None) -> float:
        """The TTC (s) below which the truck brakes: ``ttc_brake_s`` without a speed, else the time to
        stop from ``speed_mps`` at ``brake_decel_mps2`` plus ``reaction_s`` (see the module doc)."""
        if speed_mps is None:
            return self.ttc_brake_s
        return max(0.0, float(speed_mps)) / (2.0 * self.brake_decel_mps2) + self.reaction_s

    def range_m(self, y: float, width: int, height: int) -> float:
        """Distance (m) from the camera to the road point at image row ``y`` (px from the top) of a
        ``width`` x ``height`` frame, on a flat road (see the module doc); inf at or above the horizon."""
        below = y - self.horizon * height
        if below <= 0:
            return math.inf
        focal = 0.5 * width / math.tan(math.radians(self.hfov_deg) / 2)
        return self.camera_height_m * focal / below

    def stopping_range_m(self, speed_mps: float, obstacle_mps: float) -> float:
        """The range (m) under which the truck at ``speed_mps`` brakes for an obstacle moving at
        ``obstacle_mps`` along its way: ``stop_gap_m`` + reaction distance + braking distance."""
        v, u = max(0.0, speed_mps), min(max(0.0, obstacle_mps), max(0.0, speed_mps))
        return self.stop_gap_m + v * self.reaction_s + (v * v - u * u) / (2.0 * self.brake_decel_mps2)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for CLIs)."""
        return {f.name: f.metadata["help"] for f in cls.__dataclass_fields__.values()}

    def to_record(self) -> dict:
        """These settings as JSON values (tuples as lists): what a recorded drive keeps in its
        manifest's ``source["controller"]``, so ``truckpilot replay`` drives it the same way."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in self.__dataclass_fields__}

    @classmethod
    def from_record(cls, record: dict) -> "ControllerConfig":
        """The settings ``to_record`` wrote; ValueError naming fields this version does not know (a
        session recorded by another version) or a value out of range."""
        unknown = sorted(set(record) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"the recorded controller settings have fields this version does not know: {unknown}")
        return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in record.items()})


def ema_alpha(dt: float, tau: float) -> float:
    """Weight of the new sample for an EMA with time constant tau over dt."""
    if tau <= 0:
        return 1.0
    return 1.0 - math.exp(-max(dt, 0.0) / tau)


class KeyPwm:
    """Pulse-width modulation of one binary key (first-order sigma-delta).

    ``update(value, now)`` is called once per tick with a duty in [0, 1] and
    returns whether the key should be down until the next tick. The modulator
    integrates (value - key_down) over the real elapsed time and presses the
    key while it owes down-time, so over any window of at least
    ``period_s`` the down fraction is ~value (within one tick), whatever the
    tick rate; the accumulated error is clamped to one period (no wind-up).
    """

    def __init__(self, period_s: float = 0.25, deadzone: float = 0.05) -> None:
        self.period_s = period_s
        self.deadzone = deadzone
        self.reset()

    def reset(self) -> None:
        self._error = 0.0
        self._down = False
        self._last: float | None = None

    def update(self, value: float, now: float) -> bool:
        value = min(max(float(value), 0.0), 1.0)
        if value < self.deadzone:
            self._error, self._down, self._last = 0.0, False, now
            return False
        if value >= 1.0 - self.deadzone:
            self._error, self._down, self._last = 0.0, True, now
            return True
        if self._last is None:
            self._last = now
            self._error = 0.0
            self._down = True  # start with the pulse, so a new value acts at once
            return True
        dt = min(max(now - self._last, 0.0), self.period_s)
        self._last = now
        self._error += (value - (1.0 if self._down else 0.0)) * dt
        self._error = min(max(self._error, -self.period_s), self.period_s)
        self._down = self._error > 0 or (self._error == 0 and value >= 0.5)
        return self._down

    def durations(self, value: float) -> tuple[float, float]:
        """(down seconds, up seconds) within one period for ``value``."""
        value = min(max(float(value), 0.0), 1.0)
        return value * self.period_s, (1.0 - value) * self.period_s


@dataclass(frozen=True)
class ObstacleState:
    """The tracked in-path obstacle: box (xyxy px), TTC in s (inf if not closing), range in m from its
    box bottom (inf without a known speed, when the range rule is not used), and the speed it closes
    at, m/s (range x the box's growth rate; 0 without a range): faster than the truck drives is
    oncoming traffic."""

    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    ttc_s: float = math.inf
    braking: bool = False
    range_m: float = math.inf
    closing_mps: float = 0.0


class Controller:
    """Perception -> Action, with all state explicit in the object.

    ``update(perception, now, frame_size=(W, H), speed_mps=None)`` once per
    frame; ``keys_for(action, now)`` once per tick turns the action into keys
    by PWM; ``reset()`` forgets everything (after a disengagement).
    """

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        self._pwm = {name: KeyPwm(self.config.pwm_period_s, self.config.pwm_deadzone)
                     for name in ("left", "right", "throttle", "brake")}
        self.reset()

    def reset(self) -> None:
        self._steer_ema: float | None = None
        self._steer_dir = 0  # -1 left, 0 none, +1 right (hysteresis state)
        self._last_time: float | None = None
        self._track_box: tuple[float, float, float, float] | None = None
        self._track_time: float | None = None
        self._track_start = 0.0  # when the tracked obstacle was first seen, s
        self._growth: float = 0.0  # EMA of d ln(h) / dt, 1/s
        self._brake_until = -math.inf
        self.obstacle = ObstacleState()
        for pwm in self._pwm.values():
            pwm.reset()

    @property
    def steer_signal(self) -> float:
        """The smoothed continuous steer p_right - p_left in [-1, 1] (+ = right) of the latest
        update, before the key hysteresis and gain (0.0 before the first): what an analog output
        steers by (``agent.runtime.axis_control``)."""
        return 0.0 if self._steer_ema is None else float(self._steer_ema)

    # ---- steering ---------------------------------------------------------
    def _steer(self, probs: dict[str, float], dt: float) -> float:
        c = self.config
        raw = float(probs.get("right", 0.0)) - float(probs.get("left", 0.0))
        if self._steer_ema is None:
            self._steer_ema = raw
        else:
            self._steer_ema += ema_alpha(dt, c.steer_tau_s) * (raw - self._steer_ema)
        s = self._steer_ema
        if self._steer_dir == 0:
            if abs(s) > c.steer_enter:
                self._steer_dir = 1 if s > 0 else -1
        elif abs(s) < c.steer_exit:
            self._steer_dir = 0
        elif (s > 0) != (self._steer_dir > 0) and abs(s) > c.steer_enter:
            self._steer_dir = -self._steer_dir  # swung straight through to the other side
        if self._steer_dir == 0 or (s > 0) != (self._steer_dir > 0):
            return 0.0
        return max(-1.0, min(1.0, s * c.steer_gain))

    # ---- obstacles ----------------------------------------------------------
    def corridor_at(self, y: float, width: int, height: int) -> tuple[float, float] | None:
        """The ego corridor's x extent (px) at image row ``y``: a trapezoid narrowing
        in perspective from ``corridor_bottom_width`` at the bottom to
        ``corridor_top_width`` at ``corridor_top``; None above the top."""
        c = self.config
        top = height * c.corridor_top
        if y <= top:
            return None
        depth = min(1.0, (y - top) / max(height - top, 1e-6))  # 0 at the horizon, 1 at the bottom
        half = 0.5 * width * (c.corridor_top_width + (c.corridor_bottom_width - c.corridor_top_width) * depth)
        centre = width * c.corridor_center
        return centre - half, centre + half

    def _in_path(self, det: Detection, width: int, height: int) -> bool:
        """A vehicle / person whose box bottom (where it meets the road) overlaps
        the corridor at that row."""
        c = self.config
        if det.label not in c.obstacle_labels or det.score < c.min_score:
            return False
        x1, _, x2, y2 = det.box
        extent = self.corridor_at(y2, width, height)
        return extent is not None and x2 > extent[0] and x1 < extent[1]

    def _obstacle(self, detections, now: float, width: int, height: int,
                  speed_mps: float | None = None) -> ObstacleState:
        c = self.config
        candidates = [d for d in detections if self._in_path(d, width, height)]
        if not candidates:
            self._track_box = None
            self._growth = 0.0
            return ObstacleState(braking=now < self._brake_until)
        # the nearest: lowest box bottom on screen; prefer the one we were tracking
        nearest = max(candidates, key=lambda d: d.box[3])
        if self._track_box is not None:
            same = max(candidates, key=lambda d: pair_iou(d.box, self._track_box))
            if pair_iou(same.box, self._track_box) >= c.track_iou:
                nearest = same
        box = tuple(float(v) for v in nearest.box)
        h = box[3] - box[1]
        if (self._track_box is not None and self._track_time is not None
                and pair_iou(box, self._track_box) >= c.track_iou and now > self._track_time and h > 0):
            h_prev = self._track_box[3] - self._track_box[1]
            dt = now - self._track_time
            rate = (math.log(h) - math.log(h_prev)) / dt if h_prev > 0 else 0.0
            self._growth += ema_alpha(dt, c.growth_tau_s) * (rate - self._growth)
        else:
            self._growth, self._track_start = 0.0, now
        self._track_box, self._track_time = box, now
        ttc = 1.0 / self._growth if self._growth > 1e-6 else math.inf
        too_near, oncoming, distance, closing = False, False, math.inf, 0.0
        if speed_mps is not None and c.range_brake:
            distance = c.range_m(box[3], width, height)
            if math.isfinite(distance):
                closing = max(0.0, distance * self._growth)
                oncoming = (now - self._track_start >= c.oncoming_min_track_s
                            and closing > max(0.0, speed_mps) + c.oncoming_margin_mps)
                too_near = not oncoming and distance < c.stopping_range_m(speed_mps, speed_mps - closing)
        if (ttc < c.ttc_threshold(speed_mps) and not oncoming) or too_near:
            self._brake_until = now + c.brake_hold_s
        elif (self.obstacle.braking and speed_mps is not None and speed_mps < c.stop_hold_mps
              and h >= c.stop_hold_min_height * height and self._growth >= c.release_growth):
            # stopping behind it (a broken-down vehicle, a queue): hold the standstill, or the truck
            # creeps on as the stopped box stops growing and drives into it
            self._brake_until = max(self._brake_until, now + 1e-3)
        return ObstacleState(box, nearest.label, ttc, now < self._brake_until, distance, closing)

    # ---- the step -----------------------------------------------------------
    def update(self, perception: Perception, now: float, frame_size: tuple[int, int],
               speed_mps: float | None = None) -> Action:
        """One frame: perception of a W x H frame at time ``now`` (s) -> Action."""
        c = self.config
        width, height = frame_size
        dt = 0.0 if self._last_time is None else now - self._last_time
        self._last_time = now
        steer = self._steer(perception.direction_probs, dt)
        self.obstacle = self._obstacle(perception.detections, now, width, height, speed_mps)
        if self.obstacle.braking:
            return Action(steer=steer, throttle=0.0, brake=1.0)
        if speed_mps is not None:
            error = c.target_speed_mps - speed_mps
            throttle = min(1.0, max(0.0, c.speed_kp * error))
            over = -error - c.speed_deadband_mps
            brake = min(1.0, max(0.0, c.brake_kp * over)) if over > 0 else 0.0
        else:
            throttle, brake = c.cruise_throttle, 0.0
        throttle *= 1.0 - c.turn_slowdown * abs(steer)
        return Action(steer=steer, throttle=throttle, brake=brake)

    def keys_for(self, action: Action, now: float) -> KeysHeld:
        """Binary keys for this tick by PWM (call once per tick)."""
        left = self._pwm["left"].update(max(0.0, -action.steer), now)
        right = self._pwm["right"].update(max(0.0, action.steer), now)
        brake = self._pwm["brake"].update(action.brake, now)
        throttle = self._pwm["throttle"].update(0.0 if action.brake > 0 else action.throttle, now)
        return KeysHeld(left=left and not right, right=right and not left, throttle=throttle and not brake,
                        brake=brake)

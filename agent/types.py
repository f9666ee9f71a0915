"""Typed values that cross the agent's seams.

Conventions: images are HxWx3 uint8 RGB (converted once, where frames enter);
times are seconds from ``time.monotonic()``; steering is in [-1, 1] with
negative = left.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

#: Driving keys, in the order of the simulator's MultiBinary(4) action.
DRIVING_KEYS: tuple[str, ...] = ("left", "right", "throttle", "brake")


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    image: HxWx3 uint8 RGB, C-contiguous.
    timestamp: seconds, ``time.monotonic()`` at capture.
    index: 0-based frame counter of its source.
    """

    image: np.ndarray
    timestamp: float
    index: int


@dataclass(frozen=True)
class Action:
    """What the controller wants: steer in [-1, 1] (negative = left),
    throttle and brake in [0, 1]."""

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0


@dataclass(frozen=True)
class KeysHeld:
    """Which driving keys are down this tick (the binary form of an Action)."""

    left: bool = False
    right: bool = False
    throttle: bool = False
    brake: bool = False

    def as_array(self) -> np.ndarray:
        """uint8 array (4,) in DRIVING_KEYS order, the sim's MultiBinary action."""
        return np.array([self.left, self.right, self.throttle, self.brake], dtype=np.int8)

    @classmethod
    def from_array(cls, keys) -> "KeysHeld":
        left, right, throttle, brake = (bool(k) for k in keys)
        return cls(left, right, throttle, brake)


@dataclass
class HudStats:
    """What the live loop knows each tick besides the perception, and the HUD prints:
    loop FPS (frames/s, smoothed), the latest milliseconds per stage ({stage: ms}), whether
    the agent is engaged, a state line, the truck's speed (m/s, None = unknown) and the step."""

    fps: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    engaged: bool = True
    status: str = ""
    speed_mps: float | None = None
    step: int = 0


class StopReason(enum.Enum):
    """Why a drive (``agent.runtime.loop.run_loop``) ended; the value is what reports print."""

    STEPS = "steps"
    """the step budget (``max_steps``) is used up"""
    SECONDS = "seconds"
    """the wall-time budget (``max_seconds``) is used up"""
    USER = "user"
    """Ctrl+C"""
    SIGNAL = "signal"
    """SIGTERM / SIGHUP"""
    ESTOP = "estop"
    """the e-stop hotkey"""
    HUD_CLOSED = "hud_closed"
    """the person closed the HUD window"""
    REQUESTED = "requested"
    """the caller's ``stop_when`` asked (its words are in ``LoopStats.stop_detail``)"""
    COLLISION = "collision"
    """the simulator's episode ended in a collision"""
    ROUTE_DONE = "route_done"
    """the simulator's route is driven to its end"""
    TRUNCATED = "truncated"
    """the simulator's episode hit its step limit"""
    CAPTURE_LOST = "capture_lost"
    """the captured window is gone"""

"""What the game (or the simulator) said about one recorded frame: speed, continuous controls, pause.

A window recording with the SCS Telemetry plugin's block at hand (``truckpilot record --window``)
and every simulator recording (ground truth) keep one ``FrameTelemetry`` per frame in the frame's
``extra["telemetry"]``; a paused frame also carries ``extra["paused"] = True`` so that training
leaves it out (``is_paused``) without reading the rest.

Conventions are the project's, not the plugin's: steering + = right (the plugin counts
counterclockwise, + = left; the producer flips it), all in [-1, 1]; pedals in [0, 1]; m/s.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: ``extra`` key of the FrameTelemetry dict, and of the paused flag
TELEMETRY_KEY = "telemetry"
PAUSED_KEY = "paused"
#: ``extra`` key of a simulator frame's continuous steering label: the scripted expert's intended steer
#: (``sim.expert.Expert.intended_steer``, the env's ``info["intended_steer"]``) for the world of that
#: frame, [-1, 1] of full lock, + = right; the frame's direction label is this value with a 0.05 deadband
EXPERT_STEER_KEY = "expert_steer"

#: where the values came from
SOURCES = ("scs", "sim")


@dataclass(frozen=True)
class FrameTelemetry:
    """One frame's telemetry.

    speed_m_s: the truck's speed (m/s, negative reversing).
    steer: the driver's steering input, [-1, 1], + = right (keys give -1 / 0 / 1; a wheel or pad
        anything between): the continuous steering label.
    wheel: the steering the truck applies (its wheels, after the game's own smoothing), [-1, 1],
        + = right.
    throttle, brake: the driver's pedal inputs, [0, 1].
    paused: the game was paused (its picture frozen, nobody driving): not training data.
    source: "scs" (the game's SCS Telemetry plugin) or "sim" (the simulator's ground truth).
    """

    speed_m_s: float
    steer: float
    wheel: float
    throttle: float
    brake: float
    paused: bool
    source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"FrameTelemetry.source {self.source!r}: one of {SOURCES}")
        for name in ("speed_m_s", "steer", "wheel", "throttle", "brake"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"FrameTelemetry.{name}={getattr(self, name)!r} is not finite")

    def to_extra(self) -> dict:
        """The frame's ``extra`` entries: {"telemetry": {...}} (+ {"paused": True} when paused)."""
        entries: dict = {TELEMETRY_KEY: asdict(self)}
        if self.paused:
            entries[PAUSED_KEY] = True
        return entries

    @classmethod
    def from_extra(cls, extra: dict | None) -> "FrameTelemetry | None":
        """The frame's telemetry, or None when it has none."""
        values = (extra or {}).get(TELEMETRY_KEY)
        return None if values is None else cls(**values)


def is_paused(extra: dict | None) -> bool:
    """Whether the frame was recorded while the game was paused (leave it out of training)."""
    return bool((extra or {}).get(PAUSED_KEY, False))


def steer_label(extra: dict | None) -> float | None:
    """The frame's continuous steering label, [-1, 1] of full lock, + = right, or None when it has none.

    In order: ``extra["expert_steer"]`` (simulator recordings since the steer head: the expert's
    intended steer, continuous even though the expert drives by pulsing keys); else the game's
    telemetry steer (``FrameTelemetry.steer``, source "scs": the driver's input, continuous from a
    wheel or pad; from a keyboard the SDK's input jumps straight to -1 / +1, a coarse label); else
    None. A simulator frame's telemetry steer is the keys it pressed (-1 / 0 / +1 pulses, not the
    steer anyone meant), so it is never a label: older simulator recordings simply have none.
    """
    extra = extra or {}
    value = extra.get(EXPERT_STEER_KEY)
    if value is None:
        told = extra.get(TELEMETRY_KEY)
        if told is not None and told.get("source") == "scs":
            value = told.get("steer")
    if value is None or not math.isfinite(float(value)):
        return None
    return max(-1.0, min(1.0, float(value)))

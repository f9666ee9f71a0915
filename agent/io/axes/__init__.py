"""Analog outputs: drive with continuous steering and pedals instead of key taps.

``Axes`` is what one tick sends; an ``AxisOutput`` sends it. The one backend
today is ``agent.io.axes.scs_controls.ScsControlsOutput`` (ETS2LA's SCS SDK
input plugin), imported from there so that nothing here maps memory at import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Axes", "AxisOutput", "NEUTRAL"]


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


@dataclass(frozen=True)
class Axes:
    """One tick of analog driving input.

    ``steer``: [-1, 1] of full lock, + = right (negative = left, as ``agent.types.Action``
    and the SCS input plugin's ``steering``; the SCS *telemetry* counts the other
    way). ``throttle``, ``brake``: [0, 1] pedal travel. Values must be finite and in
    range: the plugin turns NaN into full left lock and may pass values beyond 1, so
    a bad value raises here instead (``Axes.clipped`` clips a controller's output).
    """

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0

    def __post_init__(self) -> None:
        for name, value, lo in (("steer", self.steer, -1.0), ("throttle", self.throttle, 0.0),
                                ("brake", self.brake, 0.0)):
            if not math.isfinite(value) or not lo <= value <= 1.0:
                raise ValueError(f"Axes.{name}={value!r}: must be finite and in [{lo:g}, 1]")

    @classmethod
    def clipped(cls, steer: float, throttle: float, brake: float) -> "Axes":
        """Axes with each finite value clipped into its range (NaN or inf still raise)."""
        for name, value in (("steer", steer), ("throttle", throttle), ("brake", brake)):
            if not math.isfinite(value):
                raise ValueError(f"Axes.clipped: {name}={value!r} is not finite")
        return cls(_clip(float(steer), -1.0, 1.0), _clip(float(throttle), 0.0, 1.0), _clip(float(brake), 0.0, 1.0))


#: centred wheel, pedals released
NEUTRAL = Axes()


@runtime_checkable
class AxisOutput(Protocol):
    """Somewhere analog input goes: ``send`` holds ``axes`` until the next send;
    ``neutral`` sends ``NEUTRAL``; ``close`` goes neutral and lets go."""

    def send(self, axes: Axes) -> None: ...

    def neutral(self) -> None: ...

    def close(self) -> None: ...

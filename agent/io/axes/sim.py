"""Analog axes for the in-process simulator: only holds them.

The driving loop's ``SimSource`` steps a continuous TruckSim-v0 env with ``action()``, the
(steer, throttle, brake) float32 array of its Box action space, as ``SimKeys`` holds keys for
the key env. ``truckpilot sim --scs-controls`` is the same for the sim window, through the SCS
SDK input plugin's block.
"""
from __future__ import annotations

import numpy as np

from agent.io.axes import NEUTRAL, Axes


class SimAxes:
    """An ``AxisOutput`` that holds the axes for the in-process simulator; ``last``: the axes held."""

    def __init__(self) -> None:
        self.last = NEUTRAL

    def send(self, axes: Axes) -> None:
        self.last = axes

    def neutral(self) -> None:
        self.last = NEUTRAL

    def close(self) -> None:
        self.last = NEUTRAL

    def action(self) -> np.ndarray:
        """The env's continuous action: float32 (3,) = (steer + = right, throttle, brake)."""
        return np.array([self.last.steer, self.last.throttle, self.last.brake], dtype=np.float32)

"""Random steering disturbances for recording recovery data (DART-style noise).

An expert that never leaves the lane centre records no frames of a truck that
has drifted, so a model trained on them has never seen how to steer back. While
recording, ``SteeringPerturbation`` now and then overrides the autopilot's
steering keys for a moment; the direction label stays the expert's intended
steer (``info["direction"]``), which during and after a disturbance says how
to get back. Deterministic for a given seed.
"""
from __future__ import annotations

import numpy as np


class SteeringPerturbation:
    """Override the steering keys of a (left, right, throttle, brake) action now and then.

    rate_per_s: expected disturbances started per simulated second (0 = never).
    dt: seconds per step. seed: for the disturbance times, sides and lengths.
    min_s, max_s: how long one disturbance holds its steering key, seconds.
    """

    def __init__(self, rate_per_s: float, dt: float, seed: int = 0, min_s: float = 0.25, max_s: float = 0.9) -> None:
        if rate_per_s < 0:
            raise ValueError(f"perturbation rate {rate_per_s} per second must be >= 0")
        if not 0 < min_s <= max_s:
            raise ValueError(f"perturbation length must satisfy 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.probability = min(1.0, rate_per_s * dt)
        self.min_steps = max(1, int(round(min_s / dt)))
        self.max_steps = max(self.min_steps, int(round(max_s / dt)))
        self._rng = np.random.default_rng(seed)
        self._steps_left = 0
        self._side = 0

    def reset(self) -> None:
        """End any disturbance in progress (e.g. at a new episode)."""
        self._steps_left = 0

    def apply(self, keys: np.ndarray) -> tuple[np.ndarray, bool]:
        """keys: int8 (4,) (left, right, throttle, brake) -> (keys to send, whether they were overridden)."""
        if self._steps_left == 0 and self.probability > 0 and self._rng.random() < self.probability:
            self._steps_left = int(self._rng.integers(self.min_steps, self.max_steps + 1))
            self._side = int(self._rng.integers(0, 2))
        if self._steps_left == 0:
            return keys, False
        self._steps_left -= 1
        out = np.array(keys, dtype=np.int8, copy=True)
        out[0], out[1] = self._side == 0, self._side == 1
        return out, True

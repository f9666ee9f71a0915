"""Fixed-rate pacing: sleep to the next period boundary, count the ticks missed.

Used by capture (``open_capture(fps=...)``) and usable by the driving loop.
Times are ``time.monotonic()`` seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class PacingStats:
    """ticks: waits done; dropped: whole periods skipped because the caller was late."""

    ticks: int
    dropped: int


class RateLimiter:
    """Paces a loop at ``fps`` ticks per second.

    ``wait()`` sleeps until the next tick's deadline and returns that time.
    When the caller arrives more than one period late, the missed ticks are
    counted as dropped and the schedule restarts from now (no catch-up burst).
    ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, fps: float, clock=time.monotonic, sleep=time.sleep) -> None:
        if not fps or fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.period_s = 1.0 / fps
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None
        self.ticks = 0
        self.dropped = 0

    def wait(self) -> float:
        now = self._clock()
        if self._next is None:
            self._next = now
        late = now - self._next
        if late > self.period_s:
            missed = int(late // self.period_s)
            self.dropped += missed
            self._next += missed * self.period_s
        elif late < 0:
            self._sleep(-late)
            now = self._clock()
        tick = self._next
        self._next += self.period_s
        self.ticks += 1
        return max(now, tick)

    def stats(self) -> PacingStats:
        return PacingStats(self.ticks, self.dropped)

    def reset(self) -> None:
        self._next = None
        self.ticks = self.dropped = 0

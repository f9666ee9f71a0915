"""The controller's clock for captured frames: when each new game frame appeared, not when it was grabbed.

A game draws frames on its own clock; the agent grabs the window at its own rate and finds
each new frame up to one grab period after it appeared. Timing frames by their grab
(``Frame.timestamp``) adds that phase to every frame: between two decisions the controller
then counts 1/15 s +- up to 1/30 s when the game moved 1/15 s (measured on the sim window,
agent at 30 Hz: p95 error 26-33 ms of a 67 ms frame, ``python -m agent.apps.realtime_probe``),
and its smoothing and key PWM integrate that noise: a PWM that owes down-time by the wall
clock holds the key for a different number of game frames than it meant to.

``FrameClock`` estimates the appearance time instead. A new frame appeared after the last
grab that still showed the old picture and before the grab that shows it: the bracket
(previous grab, this grab]. The estimate is the previous frame's estimate plus the game's
frame period, kept inside the bracket; the period is a slow average of the intervals between
new frames (each divided by the frames it spans, so a missed frame does not stretch it). With
a steady game the estimate locks onto the game's frame clock; with an unsteady one it is never
further off than the bracket, i.e. never worse than the grab time. Times in seconds.
"""
from __future__ import annotations


class FrameClock:
    """``observe(t_grab, new)`` per grab -> the time the frame in that grab appeared (s).

    t_grab: when the grab ended (``time.monotonic()``); new: the picture differs from the
    previous grab's. A repeated picture keeps the previous estimate.

    A phase-locked loop on the game's frames: each new frame is predicted one period (or the
    whole periods since) after the last estimate; the prediction moves ``phase_gain`` of the
    way to the middle of the frame's bracket (previous grab, this grab] and is kept inside
    it; the period moves ``period_gain`` of that error. The loop starts from the median of the
    first ``warmup`` intervals between new frames (until then the grab time is the estimate),
    and starts over after a gap longer than ``max_gap_periods`` periods (a stall, a pause).
    """

    def __init__(self, phase_gain: float = 0.15, period_gain: float = 0.005, warmup: int = 5,
                 max_gap_periods: float = 4.0) -> None:
        if not (0 < phase_gain <= 1 and 0 <= period_gain < phase_gain and warmup >= 1):
            raise ValueError("need 0 < phase_gain <= 1, 0 <= period_gain < phase_gain, warmup >= 1")
        self.phase_gain, self.period_gain = phase_gain, period_gain
        self.warmup, self.max_gap_periods = warmup, max_gap_periods
        self.reset()

    def reset(self) -> None:
        self._estimate: float | None = None  # the last new frame's appearance, s
        self._last_grab: float | None = None  # the last grab (new or not), s
        self._last_new_grab: float | None = None  # the last grab that found a new frame, s
        self._intervals: list[float] = []  # warm-up: intervals between new frames, s
        self.period_s: float | None = None  # the game's frame period, s (None until warmed up)

    def observe(self, t_grab: float, new: bool) -> float:
        previous_grab = self._last_grab
        self._last_grab = t_grab
        if self._estimate is not None and not new:
            return self._estimate
        interval = None if self._last_new_grab is None else t_grab - self._last_new_grab
        self._last_new_grab = t_grab
        if interval is None or self.period_s is None or interval > self.max_gap_periods * self.period_s:
            if interval is not None and self.period_s is None:
                self._intervals.append(interval)
                if len(self._intervals) >= self.warmup:
                    self.period_s = sorted(self._intervals)[len(self._intervals) // 2]
            elif interval is not None:  # a stall: warm up again
                self.period_s, self._intervals = None, []
            self._estimate = t_grab
            return t_grab
        lo = max(previous_grab if previous_grab is not None else t_grab, self._estimate)
        middle = (lo + t_grab) / 2
        frames = max(1, round((middle - self._estimate) / self.period_s))
        predicted = self._estimate + frames * self.period_s
        error = middle - predicted
        self._estimate = min(max(predicted + self.phase_gain * error, lo), t_grab)
        self.period_s += self.period_gain * error / frames
        return self._estimate

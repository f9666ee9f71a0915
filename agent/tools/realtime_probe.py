"""Where the real-time drive loses time: join the agent's ticks with the sim window's steps.

The sim window (``truckpilot sim --step-log PATH``, ``sim.steplog``) logs per step when it
read its keys, which keys, when it showed the frame and the frame's fingerprint. The agent's
``TickLog`` (an ``on_tick`` for ``run_loop``) logs per tick when it captured, the captured
frame's fingerprint, whether it was a repeat, and when the keys were sent. Both use
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process), so ``join`` tells,
for every frame the sim showed:

* frame age: ms from the frame being shown to its capture, and to its keys being sent
  (p50 / p95): what the agent acted on, how old;
* key landing: the step whose key read first follows the send, relative to the step
  in-process would use (the frame's step + 1): 0 = as in-process, +1, +2 = steps late;
  keys overwritten before any step read them are counted;
* dropped frames (shown, never acted on) and duplicated ones (acted on twice);
* PWM phase: the controller's clock step between decisions (wall seconds between captures)
  against the sim time between the frames decided on, and the steps each key pulse lasted
  in the sim against the pulse the agent asked for;
* keys mismatch: steps whose keys differ from the keys decided on the previous frame (what
  the in-process loop would have driven the step with).

``BusyCore`` holds one core with a pinned busy loop (the busy-machine case).
The runner is ``python -m agent.apps.realtime_probe`` (it drives the sim window).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from agent.io.timing import percentiles
from sim.steplog import StepRecord, frame_print, keys_text


@dataclass(frozen=True)
class AgentTick:
    """One tick of the agent loop.

    t_capture: monotonic s when the frame was grabbed; grab_ms: how long the grab took;
    t_sent: monotonic s right after the keys were sent (``on_tick`` runs right after the send);
    print: ``sim.steplog.frame_print`` of the captured frame; repeated: the loop found no new
    frame (re-sent the keys); keys: "LRTB" letters of the keys held after the tick;
    clock_s: the controller's clock for the tick (s).
    """

    t_capture: float
    grab_ms: float
    t_sent: float
    print: int
    repeated: bool
    keys: str
    clock_s: float


class TickLog:
    """An ``on_tick`` for ``run_loop`` / ``drive_window`` that records AgentTicks."""

    def __init__(self) -> None:
        self.ticks: list[AgentTick] = []

    def __call__(self, step, observation, perception, action, result) -> None:
        t_sent = time.monotonic()
        frame = observation.frame
        health = observation.health
        held = result.held
        self.ticks.append(AgentTick(frame.timestamp, float(getattr(health, "grab_ms", 0.0) or 0.0), t_sent,
                                    frame_print(frame.image), bool(observation.repeated),
                                    keys_text(held.left, held.right, held.throttle, held.brake),
                                    float(observation.clock_s)))


@dataclass(frozen=True)
class Dist:
    """p50 / p95 / max of a sample (unit in the field name of its owner), n samples."""

    n: int
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values) -> "Dist":
        a = np.asarray(list(values), dtype=np.float64)
        if a.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"))
        p50, p95 = percentiles(a)
        return cls(int(a.size), round(p50, 2), round(p95, 2), round(float(a.max()), 2))


@dataclass(frozen=True)
class RealtimeReport:
    """The joined figures of one live drive (see the module doc).

    steps: sim steps in the window studied; sim_period_ms: wall ms between the sim's key reads;
    matched / unmatched: agent decisions whose frame was / was not found among the sim's frames;
    capture_age_ms: frame shown -> captured; decision_age_ms: frame shown -> keys sent;
    landing: {steps late: decisions} (0 = the step in-process uses); overwritten: decisions
    whose keys were replaced before any step read them; dropped / duplicated: frames acted on
    0 / 2+ times; decision_gap_steps: {sim steps between consecutive decided frames: count};
    clock_error_ms: |controller clock step - sim time step| between consecutive decisions;
    grab_clock_error_ms: the same for the grab times (what the controller's clock was before FrameClock);
    shown_clock_error_ms: |controller clock step - step between the frames' wall show times|;
    pulse_stretch: {sim steps a steering pulse lasted - steps the agent asked for: count};
    keys_mismatch: share of steps whose keys differ from those decided on the previous frame.
    """

    steps: int
    sim_period_ms: Dist
    decisions: int
    matched: int
    unmatched: int
    capture_age_ms: Dist
    decision_age_ms: Dist
    landing: dict[int, int]
    overwritten: int
    dropped: int
    duplicated: int
    decision_gap_steps: dict[int, int]
    clock_error_ms: Dist
    grab_clock_error_ms: Dist
    shown_clock_error_ms: Dist
    pulse_stretch: dict[int, int]
    keys_mismatch: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def d(x: Dist) -> str:
            return f"p50 {x.p50:.1f} p95 {x.p95:.1f} max {x.max:.1f} (n={x.n})"

        late = sum(v for k, v in self.landing.items() if k > 0)
        total = max(1, sum(self.landing.values()))
        return "\n".join([
            f"sim steps {self.steps}, period ms {d(self.sim_period_ms)}",
            f"decisions {self.decisions}: matched to a sim frame {self.matched}, unmatched {self.unmatched}",
            f"frame shown -> captured ms      {d(self.capture_age_ms)}",
            f"frame shown -> keys sent ms     {d(self.decision_age_ms)}",
            f"key landing (steps late: n)     {dict(sorted(self.landing.items()))}  "
            f"late {late}/{total} = {late / total:.1%}; overwritten unseen {self.overwritten}",
            f"frames dropped {self.dropped}, duplicated {self.duplicated}; "
            f"gap between decided frames (steps: n) {dict(sorted(self.decision_gap_steps.items()))}",
            f"controller clock step error ms  {d(self.clock_error_ms)}  (vs sim time)",
            f"  grab-time clock would be      {d(self.grab_clock_error_ms)}",
            f"  controller vs wall show times {d(self.shown_clock_error_ms)}",
            f"steer pulse stretch (steps: n)  {dict(sorted(self.pulse_stretch.items()))}",
            f"steps driven with keys other than the previous frame's decision: {self.keys_mismatch:.1%}",
        ] + [f"note: {n}" for n in self.notes])


def join(steps: list[StepRecord], ticks: list[AgentTick], dt: float) -> RealtimeReport:
    """Join a sim step log with the agent's ticks (see RealtimeReport); ``dt``: the sim step, s.

    Only steps the agent drove are studied: from the first step after the agent's first
    decision to the last step read before its last tick.
    """
    notes: list[str] = []
    decided = [t for t in ticks if not t.repeated]
    driven = [s for s in steps if s.t_keys is not None]
    if not decided or not driven:
        raise ValueError(f"nothing to join: {len(decided)} decisions, {len(driven)} driven steps")
    t0, t1 = decided[0].t_sent, ticks[-1].t_sent
    window = [s for s in driven if t0 < s.t_keys <= t1]
    by_print: dict[int, list[StepRecord]] = {}
    for s in steps:
        by_print.setdefault(s.print, []).append(s)
    key_reads = np.array([s.t_keys for s in driven])
    step_no = np.array([s.step for s in driven])

    def step_of(tick: AgentTick) -> StepRecord | None:
        """The sim frame this tick captured: same fingerprint, shown before the grab ended."""
        cands = [s for s in by_print.get(tick.print, ()) if s.t_shown <= tick.t_capture + 0.002]
        return max(cands, key=lambda s: s.t_shown) if cands else None

    matched: list[tuple[AgentTick, StepRecord]] = []
    unmatched = 0
    for t in decided:
        s = step_of(t)
        if s is None:
            unmatched += 1
        else:
            matched.append((t, s))
    if unmatched:
        notes.append(f"{unmatched} decisions on frames the sim did not log (window not yet drawn, or scaled)")
    landing: Counter = Counter()
    landed_at: list[int] = []
    for t, s in matched:
        i = int(np.searchsorted(key_reads, t.t_sent, side="right"))
        if i >= len(key_reads):
            landed_at.append(-1)
            continue
        landing[int(step_no[i]) - (s.step + 1)] += 1
        landed_at.append(int(step_no[i]))
    overwritten = sum(1 for a, b in zip(landed_at, landed_at[1:]) if a == b and a >= 0)
    acted = Counter(s.step for _, s in matched)
    lo, hi = (matched[0][1].step, matched[-1][1].step) if matched else (0, -1)
    shown = [s.step for s in steps if s.t_keys is not None and lo <= s.step <= hi]
    dropped = sum(1 for n in shown if acted[n] == 0)
    duplicated = sum(1 for n in shown if acted[n] > 1)
    gaps: Counter = Counter()
    clock_err, grab_err, shown_err = [], [], []
    for (ta, sa), (tb, sb) in zip(matched, matched[1:]):
        gap = sb.step - sa.step
        gaps[gap] += 1
        if gap > 0:
            clock_err.append(abs((tb.clock_s - ta.clock_s) - gap * dt) * 1e3)
            grab_err.append(abs((tb.t_capture - ta.t_capture) - gap * dt) * 1e3)
            shown_err.append(abs((tb.clock_s - ta.clock_s) - (sb.t_shown - sa.t_shown)) * 1e3)
    # the keys in-process would drive step n + 1 with: the decision on frame n
    decision_for = {}
    for t, s in matched:
        decision_for.setdefault(s.step, t.keys)
    mismatch = [s.keys[:2] != decision_for[s.step - 1][:2] for s in window if (s.step - 1) in decision_for]
    # steering pulses: runs of a steering key in the decisions (asked) and in the sim's steps (got)
    stretch: Counter = Counter()
    asked = _runs([decision_for.get(n, "----")[:2] for n in range(lo, hi + 1)])
    got = _runs([s.keys[:2] for s in window])
    for (ka, na), (kg, ng) in zip(asked, got):
        if ka == kg and ka != "--":
            stretch[ng - na] += 1
    if len(asked) != len(got):
        notes.append(f"steering pulses asked {len(asked)} vs seen by the sim {len(got)} (lost or merged pulses)")
    periods = np.diff(key_reads[(key_reads > t0) & (key_reads <= t1)]) * 1e3
    return RealtimeReport(
        steps=len(window), sim_period_ms=Dist.of(periods), decisions=len(decided), matched=len(matched),
        unmatched=unmatched,
        capture_age_ms=Dist.of((t.t_capture - s.t_shown) * 1e3 for t, s in matched),
        decision_age_ms=Dist.of((t.t_sent - s.t_shown) * 1e3 for t, s in matched),
        landing=dict(landing), overwritten=overwritten, dropped=dropped, duplicated=duplicated,
        decision_gap_steps=dict(gaps), clock_error_ms=Dist.of(clock_err),
        grab_clock_error_ms=Dist.of(grab_err), shown_clock_error_ms=Dist.of(shown_err), pulse_stretch=dict(stretch),
        keys_mismatch=round(float(np.mean(mismatch)) if mismatch else float("nan"), 4), notes=notes)


def _runs(seq: list[str]) -> list[tuple[str, int]]:
    """Run-length encoding: [(value, length), ...]."""
    out: list[tuple[str, int]] = []
    for v in seq:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


class BusyCore:
    """A busy loop (``python -c "while True: pass"``) pinned to one core with ``taskset``
    while the context is open (the busy-machine case); stopped by its pid on exit."""

    def __init__(self, core: int = 0) -> None:
        self.core = core
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "BusyCore":
        cmd = [sys.executable, "-c", "while True: pass"]
        if _has_taskset():
            cmd = ["taskset", "-c", str(self.core), *cmd]
        self.proc = subprocess.Popen(cmd)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None and hasattr(os, "sched_getaffinity")

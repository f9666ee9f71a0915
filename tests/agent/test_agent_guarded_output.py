"""The loop's reaction to a disengagement is chosen by its DisengageReason, never by its
words: an e-stop ends the drive, a stale capture backs off 1, 2, 4 s, a loop stall resumes
after 0.2 s, a takeover waits for the person's hands off the keys. The details below are
deliberately misleading text, so any decision keyed on the wording would fail."""
from __future__ import annotations

import time

import numpy as np
import pytest

from agent.io.guard import GuardConfig, SafetyGuard
from agent.io.guard_protocol import DisengageReason, Disengagement, ReleaseReason
from agent.io.keys import SimKeys
from agent.runtime.controller import Controller
from agent.runtime.loop import GuardedKeyOutput, Observation, run_loop
from agent.types import Frame, KeysHeld, StopReason
from perception.types import DIRECTIONS, Perception

STEP_S = 0.01
DRIVE = KeysHeld(throttle=True)


class Clock:
    """A hand-moved clock, seconds."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Person:
    """A keyboard reader: the driving keys a person holds (GuardedKeyOutput reads ``driving_keys``)."""

    def __init__(self) -> None:
        self.keys = KeysHeld()
        self.pressed: set[str] = set()

    def driving_keys(self) -> KeysHeld:
        return self.keys

    def down(self, names) -> set[str]:
        return self.pressed & set(names)

    def close(self) -> None:
        pass


class ScriptedGuard:
    """Stands in for SafetyGuard: drives while engaged; the next ``apply`` disengages with ``trip``."""

    def __init__(self) -> None:
        self.config = GuardConfig(period_s=0.05)
        self.backend = SimKeys()
        self.keyboard = Person()
        self.focus_check = None
        self.engaged = False
        self.disengagement: Disengagement | None = Disengagement(DisengageReason.NOT_ENGAGED)
        self.trip: Disengagement | None = None
        self.engage_calls = 0

    def engage(self, frame_fresh: bool) -> bool:
        self.engage_calls += 1
        self.engaged, self.disengagement = True, None
        return True

    def apply(self, keys: KeysHeld, capture_health=None, axes=None) -> KeysHeld:  # no analog output here
        if self.engaged and self.trip is not None:
            self.engaged, self.disengagement, self.trip = False, self.trip, None
        self.backend.apply(keys if self.engaged else KeysHeld())
        return self.backend.held()

    def heartbeat(self, keys_held: KeysHeld) -> None:
        pass


def tick(out: GuardedKeyOutput, clock: Clock, repeated: bool = False):
    clock.now += STEP_S
    frame = Frame(np.zeros((4, 4, 3), np.uint8), clock.now, 0)
    return out.send(DRIVE, Observation(frame, clock.now, repeated=repeated))


def engaged_output(**kwargs):
    clock, guard = Clock(), ScriptedGuard()
    out = GuardedKeyOutput(guard, clock=clock, **kwargs)
    first = tick(out, clock)
    assert first.engaged and first.event == "engaged" and first.held == DRIVE
    return out, guard, clock


def disengage(out, guard, clock, why: Disengagement, repeated: bool = False):
    guard.trip = why
    result = tick(out, clock, repeated)
    assert not result.engaged and result.held == KeysHeld()
    assert result.event == f"disengaged: {why}"  # the line for people, built from the enum
    return result


def seconds_until_reengaged(out, clock, limit_s: float = 40.0, repeated: bool = False) -> float | None:
    start = clock.now
    while clock.now - start < limit_s:
        result = tick(out, clock, repeated)
        if result.event == "engaged":
            assert result.engaged and result.held == DRIVE
            return clock.now - start
        assert not result.engaged and result.held == KeysHeld() and result.stop is None
    return None


def test_estop_ends_the_drive_whatever_its_words_say():
    out, guard, clock = engaged_output()
    result = disengage(out, guard, clock, Disengagement(DisengageReason.ESTOP, "takeover: a person pressed Right"))
    assert result.stop is StopReason.ESTOP and not result.takeover
    calls = guard.engage_calls
    again = tick(out, clock)
    assert again.stop is StopReason.ESTOP and not again.engaged and guard.engage_calls == calls  # no re-engage


@pytest.mark.parametrize("why", [
    Disengagement(DisengageReason.TAKEOVER, "e-stop (End)"),
    Disengagement(DisengageReason.CAPTURE_STALE, "e-stop (Pause)"),
    Disengagement(DisengageReason.GUARD_RELEASED, "e-stop", release=ReleaseReason.EOF),
])
def test_only_the_estop_reason_stops(why):
    out, guard, clock = engaged_output()
    assert disengage(out, guard, clock, why).stop is None
    assert tick(out, clock).stop is None


def test_takeover_is_the_persons_until_their_hands_are_off_then_reengages_after_1s():
    out, guard, clock = engaged_output()
    guard.keyboard.keys = KeysHeld(right=True)
    result = disengage(out, guard, clock, Disengagement(DisengageReason.TAKEOVER, "capture stale"))
    assert result.takeover and result.person_keys == KeysHeld(right=True)
    for _ in range(300):  # 3 s of the person driving: recorded as takeover, no re-engage
        r = tick(out, clock)
        assert r.takeover and not r.engaged and r.event is None
    guard.keyboard.keys = KeysHeld()
    waited = seconds_until_reengaged(out, clock)
    assert 1.0 <= waited <= 1.0 + 2 * STEP_S, waited


def test_the_same_words_without_the_takeover_reason_are_no_takeover():
    out, guard, clock = engaged_output()
    guard.keyboard.keys = KeysHeld(right=True)
    result = disengage(out, guard, clock, Disengagement(DisengageReason.FOCUS_LOST, "takeover: a person pressed"))
    assert not result.takeover and not tick(out, clock).takeover


def test_stale_capture_backs_off_1_2_4_s_while_the_picture_stays_frozen():
    out, guard, clock = engaged_output()
    stale = Disengagement(DisengageReason.CAPTURE_STALE, "guard process released the keys (stall)")
    waits = []
    for _ in range(3):
        disengage(out, guard, clock, stale, repeated=True)
        waits.append(seconds_until_reengaged(out, clock, repeated=True))
    for waited, expected in zip(waits, (1.0, 2.0, 4.0)):
        assert expected <= waited <= expected + 2 * STEP_S, waits
    tick(out, clock, repeated=False)  # the picture moves while driving: the back-off starts over
    disengage(out, guard, clock, stale)
    waited = seconds_until_reengaged(out, clock)
    assert 1.0 <= waited <= 1.0 + 2 * STEP_S, waited


@pytest.mark.parametrize("release, expected_s", [
    (ReleaseReason.STALL, 0.2), (ReleaseReason.STALL_LOCKED, 0.2), (ReleaseReason.EOF, 1.0),
    (ReleaseReason.SIGTERM, 1.0),
])
def test_a_loop_stall_resumes_after_0_2_s_other_releases_after_1_s(release, expected_s):
    out, guard, clock = engaged_output()
    disengage(out, guard, clock, Disengagement(DisengageReason.GUARD_RELEASED, "capture stale", release=release))
    waited = seconds_until_reengaged(out, clock)
    assert expected_s <= waited <= expected_s + 2 * STEP_S, waited


def test_stall_words_without_a_stall_release_wait_the_full_second():
    out, guard, clock = engaged_output()
    disengage(out, guard, clock, Disengagement(DisengageReason.FOCUS_LOST, "guard process released the keys (stall"))
    waited = seconds_until_reengaged(out, clock)
    assert 1.0 <= waited <= 1.0 + 2 * STEP_S, waited


def test_no_reengage_stays_off():
    out, guard, clock = engaged_output(reengage=False)
    disengage(out, guard, clock, Disengagement(DisengageReason.GUARD_RELEASED, release=ReleaseReason.STALL))
    assert seconds_until_reengaged(out, clock, limit_s=5.0) is None


# ----------------------------------------------------------------------------- through run_loop


class StillSource:
    """Fresh, identical frames stamped with ``time.monotonic()``."""

    def __init__(self) -> None:
        self.index = 0

    def grab(self) -> Observation:
        now = time.monotonic()
        self.index += 1
        return Observation(Frame(np.full((24, 32, 3), 80, np.uint8), now, self.index), now)

    def close(self) -> None:
        pass


def straight(image: np.ndarray) -> Perception:
    return Perception("straight", {d: (0.9 if d == "straight" else 0.05) for d in DIRECTIONS}, (), {})


def test_run_loop_ends_on_a_typed_estop_from_the_scripted_guard():
    guard = ScriptedGuard()

    def on_tick(i, observation, perception, action, result):
        if i == 4:
            guard.trip = Disengagement(DisengageReason.ESTOP, "not the usual words")

    stats = run_loop(StillSource(), straight, Controller(), GuardedKeyOutput(guard), max_steps=50, on_tick=on_tick)
    assert stats.stopped_by is StopReason.ESTOP and stats.steps == 6 and stats.engaged_steps == 5
    assert stats.events == ("engaged", "disengaged: e-stop (not the usual words)")
    assert guard.backend.held() == KeysHeld()
    assert "stopped by estop;" in stats.summary() and stats.to_dict()["stopped_by"] == "estop"


def test_run_loop_with_a_real_safety_guard_records_a_takeover_then_stops_on_the_estop_key():
    """SafetyGuard's own checks (keyboard: a stand-in reader) produce the typed reasons the loop acts on."""
    person = Person()
    guard = SafetyGuard(SimKeys(), 0.05, keyboard=person)
    results = []

    def on_tick(i, observation, perception, action, result):
        results.append(result)
        if i == 3:
            person.pressed, person.keys = {"Right"}, KeysHeld(right=True)
        if i == 8:  # the person lets go of Right and presses End: the next engage finds the e-stop
            person.pressed, person.keys = {"End"}, KeysHeld()

    try:
        stats = run_loop(StillSource(), straight, Controller(), GuardedKeyOutput(guard, reengage_after_s=0.0),
                         max_steps=50, on_tick=on_tick)
    finally:
        guard.close()
    assert stats.stopped_by is StopReason.ESTOP and stats.steps == 11, stats
    assert results[4].takeover and results[4].person_keys == KeysHeld(right=True) and not results[4].engaged
    assert stats.takeover_steps == 5 and stats.engaged_steps == 4
    assert guard.disengagement.reason is DisengageReason.ESTOP
    assert stats.events == ("engaged", "disengaged: takeover: a person pressed Right")
    assert guard.backend.held() == KeysHeld()

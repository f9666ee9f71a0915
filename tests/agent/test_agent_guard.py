"""The safety guard on a real Xvfb: kill -9 / SIGTERM / SIGINT / SIGSTOP of a guarded
child, the guard process's own release when its pipe closes, e-stop, takeover,
stale capture. Keys are read back from the X server keymap (query_keymap)."""
from __future__ import annotations

import signal
import time

import pytest

from agent.io.capture import CaptureHealth
from agent.io.guard import GuardConfig, SafetyGuard, frame_is_fresh
from agent.io.guard_protocol import STALL_RELEASES, DisengageReason, ReleaseReason
from agent.tools.guard_bench import kill_trial, process_gone, stall_trial, summarize
from agent.io.keys import KeyMap, SimKeys
from agent.io.keys.x11 import X11KeymapReader, X11Keys, read_held_keys
from agent.types import KeysHeld

pytestmark = pytest.mark.x11

PERIOD = 0.05


@pytest.fixture()
def reader(xvfb_display):
    with X11KeymapReader() as r:
        yield r


def test_kill9_of_a_guarded_agent_leaves_no_key_down(reader):
    results = [kill_trial(reader, PERIOD) for _ in range(5)]
    summary = summarize(results)
    assert summary["keys_left_down"] == 0, results
    assert summary["guard_processes_left"] == 0, results
    assert read_held_keys() == KeysHeld()


def test_kill9_without_the_guard_leaves_the_key_stuck(reader):
    """Control: the X server does not release XTest keys of a killed client, so the test
    above measures the guard, not the server."""
    try:
        result = kill_trial(reader, PERIOD, use_guard=False, timeout_s=0.5)
        assert result.key_left_down and result.latency_ms is None
    finally:
        with X11Keys() as cleanup:
            cleanup.force_release_all()
    assert read_held_keys() == KeysHeld()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_leave_no_key_down(reader, sig):
    result = kill_trial(reader, PERIOD, sig=sig)
    assert not result.key_left_down and result.latency_ms is not None and result.guard_exited


def test_sigstop_releases_within_three_periods_and_disengages_on_resume(reader):
    result = stall_trial(reader, PERIOD)
    assert result.latency_ms is not None, "the guard never released the key of a stopped agent"
    # released after > 3 periods of heartbeat silence; the stop lands up to one period after
    # the last heartbeat, so from SIGSTOP it is <= 3 periods, plus scheduling slack on 2 shared cores
    assert result.latency_ms <= 1e3 * (3 * PERIOD + PERIOD), result
    assert result.note.startswith("DISENGAGED guard process released the keys (stall)"), result
    assert not result.key_left_down and result.guard_exited


def test_guard_process_releases_when_its_pipe_closes_even_if_the_holder_lives(reader):
    """The guard process's EOF path on its own: the connection that pressed the key stays
    open, so only the guard process can release it."""
    backend = X11Keys()
    guard = SafetyGuard(backend, PERIOD, config=GuardConfig(stall_periods=1000))
    try:
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(left=True))
        assert reader.down(["Left"]) == {"Left"}
        guard._proc.stdin.close()  # what the OS does when the driving process dies
        start = time.monotonic()
        while "Left" in reader.down(["Left"]) and time.monotonic() - start < 2:
            time.sleep(0.002)
        assert reader.down(["Left"]) == set(), "guard process did not release on EOF"
        assert process_gone(guard.guard_pid)
    finally:
        guard._closed = False
        guard._proc.stdin = open("/dev/null", "wb")  # close() writes "Q"; the pipe is gone
        guard.close()
        backend.close()


def test_held_key_stays_down_without_a_guard_while_the_holder_lives(reader):
    """Control for the test above: nothing else releases a key of a live, silent holder."""
    with X11Keys() as backend:
        backend.press("left")
        time.sleep(4 * PERIOD)  # the behaviour under test: a silent holder for longer than a guard would wait
        assert reader.down(["Left"]) == {"Left"}
    assert reader.down(["Left"]) == set()


def test_estop_hotkey_disengages_and_blocks_engage(reader):
    with X11Keys() as backend, SafetyGuard(backend, PERIOD) as guard, X11Keys(KeyMap(left="End")) as person:
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(left=True, throttle=True)) == KeysHeld(left=True, throttle=True)
        person.press("left")  # the person presses End
        held = guard.apply(KeysHeld(left=True, throttle=True))
        assert held == KeysHeld() and not guard.engaged
        assert guard.disengagement.reason is DisengageReason.ESTOP and guard.disengage_reason == "e-stop (End)"
        assert reader.down(["Left", "Up"]) == set()
        assert not guard.engage(frame_fresh=True)  # End still held
        person.release("left")
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(right=True)) == KeysHeld(right=True)
    assert read_held_keys() == KeysHeld()


@pytest.mark.parametrize("person_keymap", [KeyMap.arrows(), KeyMap.wasd()])
def test_person_pressing_a_driving_key_takes_over(reader, person_keymap):
    with X11Keys() as backend, SafetyGuard(backend, PERIOD) as guard, X11Keys(person_keymap) as person:
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(left=True))
        guard.apply(KeysHeld(left=True))  # the agent's own key is not a takeover
        assert guard.engaged
        person.press("brake")
        assert guard.apply(KeysHeld(left=True)) == KeysHeld()
        assert guard.disengagement.reason is DisengageReason.TAKEOVER
        assert guard.disengage_reason.startswith("takeover: a person pressed")  # the line people read
        assert "Left" not in reader.down(["Left"])
        assert not guard.engage(frame_fresh=True) and guard.disengagement.reason is DisengageReason.TAKEOVER
        person.release("brake")
        assert guard.engage(frame_fresh=True)
    assert read_held_keys() == KeysHeld()


def test_engage_needs_fresh_frames_and_stale_capture_disengages():
    with SafetyGuard(SimKeys(), PERIOD) as guard:  # sim: no process, no keyboard reader
        assert guard.guard_pid is None
        assert not guard.engage(frame_fresh=False) and guard.disengage_reason == "no fresh frames"
        assert guard.apply(KeysHeld(throttle=True)) == KeysHeld()  # not engaged: nothing held
        assert guard.engage(frame_fresh=True)
        healthy = CaptureHealth(frames=3)
        assert guard.apply(KeysHeld(throttle=True), healthy) == KeysHeld(throttle=True)
        black = CaptureHealth(frames=9, black=True, mean_level=0.5)
        assert guard.apply(KeysHeld(throttle=True), black) == KeysHeld()
        assert guard.disengagement.reason is DisengageReason.CAPTURE_STALE
        assert guard.disengage_reason == "capture stale: black (mean level 0.5)"


def test_frozen_capture_is_stale_only_while_keys_are_held():
    limit = GuardConfig().frozen_while_driving_frames
    with SafetyGuard(SimKeys(), PERIOD) as guard:
        static_scene = CaptureHealth(frames=99, identical_frames=limit + 10, frozen=True)
        # standing still in a static scene: engaging and holding nothing is fine
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(), static_scene) == KeysHeld() and guard.engaged
        # pressing throttle must change the picture within the limit
        assert guard.apply(KeysHeld(throttle=True), CaptureHealth(frames=99, identical_frames=1)) \
            == KeysHeld(throttle=True)
        still_frozen = CaptureHealth(frames=99, identical_frames=limit, frozen=True)
        assert guard.apply(KeysHeld(throttle=True), still_frozen) == KeysHeld()
        assert guard.disengage_reason == f"capture stale: frozen ({limit} identical frames) while keys are held"


def test_close_releases_and_stops_the_guard_process(reader):
    backend = X11Keys()
    guard = SafetyGuard(backend, PERIOD)
    guard.engage(frame_fresh=True)
    guard.apply(KeysHeld(right=True, brake=True))
    assert reader.down(["Right", "Down"]) == {"Right", "Down"}
    pid = guard.guard_pid
    guard.close()
    assert reader.down(["Right", "Down"]) == set()
    assert process_gone(pid)
    backend.close()


def test_frame_is_fresh():
    assert frame_is_fresh(10.0, 10.1, period_s=0.05)
    assert not frame_is_fresh(10.0, 10.2, period_s=0.05)
    assert not frame_is_fresh(10.3, 10.0, period_s=0.05)  # from the future: clock mix-up


def test_exception_inside_the_guard_block_releases_keys(reader):
    backend = X11Keys()
    with pytest.raises(RuntimeError, match="perception blew up"):
        with SafetyGuard(backend, PERIOD) as guard:
            guard.engage(frame_fresh=True)
            guard.apply(KeysHeld(left=True, throttle=True))
            assert reader.down(["Left", "Up"]) == {"Left", "Up"}
            raise RuntimeError("perception blew up")
    assert reader.down(["Left", "Up"]) == set()
    backend.close()


def test_focus_moving_to_another_window_disengages(window_app, reader):
    from agent.io.window import FocusCheck, find_window, focus_window

    window_app(title="TP game", x=0, y=0)
    window_app(title="TP editor", x=400, y=0)
    game, editor = find_window("TP game").window_id, find_window("TP editor").window_id
    focus_window(editor)
    focus = FocusCheck(game)
    try:
        with X11Keys() as backend, SafetyGuard(backend, PERIOD, focus_check=focus) as guard:
            assert not guard.engage(frame_fresh=True) and "focus" in guard.disengage_reason
            focus_window(game)
            assert focus() and guard.engage(frame_fresh=True)
            assert guard.apply(KeysHeld(throttle=True)) == KeysHeld(throttle=True)
            focus_window(editor)  # the user switches to another window
            assert guard.apply(KeysHeld(throttle=True)) == KeysHeld()
            assert guard.disengage_reason == "the game window lost the keyboard focus"
            assert reader.down(["Up"]) == set()
    finally:
        focus.close()


# --- hosted mode: the guard process owns the key backend (what it does for uinput, where no
# --- other process can release a device's keys); exercised here with X11 keys on Xvfb.
def test_hosted_keys_kill9_and_sigstop_release(reader):
    kill = kill_trial(reader, PERIOD, hosted=True)
    assert not kill.key_left_down and kill.latency_ms is not None and kill.guard_exited, kill
    stall = stall_trial(reader, PERIOD, hosted=True)
    assert stall.latency_ms is not None and stall.latency_ms <= 1e3 * 4 * PERIOD, stall
    assert stall.note.startswith("DISENGAGED guard process released the keys"), stall
    assert not stall.key_left_down and stall.guard_exited


def test_hosted_keys_apply_synchronously_and_release_on_close(reader):
    backend = X11Keys()
    guard = SafetyGuard(backend, PERIOD, config=GuardConfig(host_keys=True))
    try:
        assert guard.hosted and guard.backend.kind == "hosted" and guard.backend.inner_kind == "x11"
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(left=True, throttle=True)) == KeysHeld(left=True, throttle=True)
        assert reader.down(["Left", "Up"]) == {"Left", "Up"}  # down when apply returns
        assert guard.apply(KeysHeld(right=True)) == KeysHeld(right=True)
        assert reader.down(["Left", "Up", "Right"]) == {"Right"}
        time.sleep(6 * PERIOD)  # the loop stalls in-process
        assert reader.down(["Right"]) == set()
        assert guard.apply(KeysHeld(right=True)) == KeysHeld() and not guard.engaged
        assert guard.disengagement.reason is DisengageReason.GUARD_RELEASED
        assert guard.disengagement.release in STALL_RELEASES  # STALL_LOCKED if the ack came first
        assert reader.down(["Right"]) == set()
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(brake=True)) == KeysHeld(brake=True)
        assert reader.down(["Down"]) == {"Down"}
    finally:
        pid = guard.guard_pid
        guard.close()
    assert reader.down(["Left", "Right", "Up", "Down"]) == set()
    assert process_gone(pid)


def test_hosted_guard_process_refuses_presses_after_a_stall_until_unlocked(reader):
    """The protocol itself: after a stall release, key presses are refused ("locked") until Unlock."""
    import json
    import subprocess
    import sys

    from agent.io.guard_protocol import TO_PARENT, Ack, Quit, Ready, Released, SetKeys, Unlock, decode, encode

    spec = {"kind": "x11", "display": None, "keymap": dict(KeyMap.arrows().items())}
    proc = subprocess.Popen([sys.executable, "-m", "agent.io.guard", "--hosted", "--spec", json.dumps(spec),
                             "--period", str(PERIOD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    left = KeysHeld(left=True)
    try:
        def receive():
            return decode(proc.stdout.readline(), TO_PARENT)

        assert receive() == Ready()

        def send(message):
            proc.stdin.write(encode(message))
            proc.stdin.flush()
            if not isinstance(message, SetKeys):
                return None
            while True:  # skip stall notes if this (loaded) machine paused us for 3 periods
                answer = receive()
                if isinstance(answer, Ack):
                    return answer

        assert send(SetKeys(left, 1)) == Ack(1, locked=False) and reader.down(["Left"]) == {"Left"}
        released = receive()  # no heartbeat for 3 periods
        assert isinstance(released, Released) and released.reason is ReleaseReason.STALL
        assert reader.down(["Left"]) == set()
        assert send(SetKeys(left, 2)) == Ack(2, locked=True) and reader.down(["Left"]) == set()
        send(Unlock())
        assert send(SetKeys(left, 3)) == Ack(3, locked=False) and reader.down(["Left"]) == {"Left"}
        send(Quit())
        released = receive()
        assert isinstance(released, Released) and released.reason is ReleaseReason.QUIT
        assert proc.wait(timeout=5) == 0
        assert reader.down(["Left"]) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

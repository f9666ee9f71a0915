"""The driving loop: budgets, stop reasons, per-stage timing, determinism in the sim, keys
released on every exit, and the guarded real-game path on a real X server (takeover
recorded as training data, re-engagement, e-stop)."""
from __future__ import annotations

import time

import gymnasium
import numpy as np
import pytest
import torch
from drive_kit import TinyDirectionNet, sim_window, tiny_card

import sim  # noqa: F401  (registers TruckSim-v0)
from agent.runtime.controller import Controller
from agent.io.keys import SimKeys
from agent.runtime.loop import SimKeyOutput, SimSource, run_loop
from agent.types import KeysHeld, StopReason
from perception.perceiver import Perceiver
from perception.types import DIRECTIONS, Perception


@pytest.fixture(scope="module")
def random_tiny_perceiver():
    """A real Perceiver around an untrained tiny CNN (the loop's mechanics, not its driving)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Perceiver(TinyDirectionNet(), None, direction_card=tiny_card(), device="cpu")


def scripted(direction: str, calls: list | None = None):
    """A stand-in for the model that always sees ``direction`` (probability 0.9); ``calls`` gets
    time.monotonic() at each call."""
    probs = {d: (0.9 if d == direction else 0.05) for d in DIRECTIONS}

    def perceive(image: np.ndarray) -> Perception:
        if calls is not None:
            calls.append(time.monotonic())
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        return Perception(direction, probs, (), {"total": 0.0})

    return perceive


def sim_parts(seed=0, route_m=5000.0, **options):
    env = gymnasium.make("TruckSim-v0", width=160, height=120, route_length_m=route_m, **options)
    keys = SimKeys()
    return SimSource(env, keys, seed=seed), SimKeyOutput(keys), keys


def test_loop_runs_n_steps_with_stage_timings_and_releases_keys(random_tiny_perceiver):
    source, out, keys = sim_parts(seed=1)
    held_during, odometer = [], []  # odometer: (sim clock s, speed m/s, distance m) of each tick's frame
    stats = run_loop(source, random_tiny_perceiver, Controller(), out, max_steps=40,
                     on_tick=lambda i, obs, p, a, r: (held_during.append(r.held), odometer.append(
                         (obs.clock_s, obs.speed_mps, float(obs.info["distance"])))))
    source.close()
    assert stats.steps == 40 and stats.stopped_by is StopReason.STEPS and stats.engaged_steps == 40
    for stage in ("capture", "perceive", "perceive.preprocess", "perceive.direction", "perceive.total", "control",
                  "keys", "tick", "frame_to_key"):
        assert stats.stages[stage].count == 40, stage
        assert 0 <= stats.stages[stage].p50_ms <= stats.stages[stage].p95_ms <= stats.stages[stage].max_ms
    # the frame-to-key latency spans perception and control of the same frame
    assert stats.stages["frame_to_key"].p50_ms >= stats.stages["perceive"].p50_ms
    assert any(k.throttle for k in held_during), "speed holding never pressed the throttle"
    # the distance is the sim's odometer at the last frame the loop saw, and it is what the speeds the
    # sim reported add up to over the sim clock (trapezoids; the truck moved: it sped up from rest)
    assert stats.distance_m == odometer[-1][2]
    travelled = sum(0.5 * (v0 + v1) * (t1 - t0) for (t0, v0, _), (t1, v1, _) in zip(odometer, odometer[1:]))
    assert odometer[-1][1] > odometer[0][1], odometer
    assert stats.distance_m - odometer[0][2] == pytest.approx(travelled, rel=0.01), (stats.distance_m, travelled)
    assert keys.held() == KeysHeld(), "keys still held after the loop"
    assert "p50" in stats.summary() and "frame_to_key" in stats.summary()
    assert stats.to_dict()["stages"]["capture"]["count"] == 40


def test_sim_drive_is_deterministic_at_any_loop_speed(random_tiny_perceiver):
    runs = []
    for fps in (None, 200.0):  # unpaced, then paced: the sim clock makes them identical
        source, out, _ = sim_parts(seed=5)
        trace = []
        stats = run_loop(source, random_tiny_perceiver, Controller(), out, max_steps=30, fps=fps,
                         on_tick=lambda i, obs, p, a, r: trace.append((tuple(r.held.as_array()), obs.clock_s,
                                                                      round(p.direction_probs["left"], 6))))
        source.close()
        runs.append((trace, stats.distance_m))
    assert runs[0] == runs[1]


def test_loop_stop_reasons():
    source, out, _ = sim_parts()
    stats = run_loop(source, scripted("straight"), Controller(), out, max_seconds=0.3, fps=50)
    # at most 0.3 s x 50 fps + 1 steps (the pacer never runs faster); at least one however loaded the machine
    assert stats.stopped_by is StopReason.SECONDS and 1 <= stats.steps <= 16 and stats.wall_s >= 0.3
    source.close()

    source, out, _ = sim_parts()
    calls = []
    stats = run_loop(source, scripted("straight"), Controller(), out, max_steps=100,
                     stop_when=lambda: "told to" if len(calls) >= 7 else None,
                     on_tick=lambda *a: calls.append(1))
    assert stats.stopped_by is StopReason.REQUESTED and stats.stop_detail == "told to" and stats.steps == 7
    source.close()

    # a short route: the episode ends (done, or a crash of a truck that never steers) before the budget
    source, out, keys = sim_parts(route_m=60.0, traffic_density=0.0)
    stats = run_loop(source, scripted("straight"), Controller(), out, max_steps=2000)
    assert stats.stopped_by in (StopReason.ROUTE_DONE, StopReason.COLLISION) and stats.steps < 2000, stats.stopped_by
    assert stats.distance_m >= 50 and keys.held() == KeysHeld()
    source.close()

    with pytest.raises(ValueError, match="max_steps"):
        run_loop(source, scripted("straight"), Controller(), out, max_steps=0)


def test_keys_are_released_on_interrupt_and_on_error():
    def boom(exc):
        def on_tick(i, obs, perception, action, result):
            if i == 8:
                assert result.held.throttle or result.held.left, "expected keys held mid-drive"
                raise exc
        return on_tick

    source, out, keys = sim_parts()
    stats = run_loop(source, scripted("left"), Controller(), out, max_steps=50, on_tick=boom(KeyboardInterrupt()))
    assert stats.stopped_by is StopReason.USER and stats.steps == 9 and keys.held() == KeysHeld()
    source.close()

    source, out, keys = sim_parts()
    with pytest.raises(RuntimeError, match="perception failed"):
        run_loop(source, scripted("left"), Controller(), out, max_steps=50,
                 on_tick=boom(RuntimeError("perception failed")))
    assert keys.held() == KeysHeld()
    source.close()


# ----------------------------------------------------------------------------- real X server


TITLE = "TruckPilot loop test window"


@pytest.mark.x11
def test_takeover_is_recorded_then_the_agent_reengages_and_estop_ends_the_drive(xvfb_display, tmp_path):
    """The sim in its own window; the agent drives it through the SafetyGuard (X11 XTest).
    A person (another XTest connection, like a second keyboard) presses Right: the guard
    disengages, the recorder stores those frames as a takeover with the person's keys; the
    person lets go and the agent re-engages; then End (the e-stop) ends the drive."""
    from agent.apps.drive import drive_window
    from agent.io.keys.x11 import X11Keys, read_held_keys
    from training.sessions import Session

    person = X11Keys()
    phases = {}
    estop = None
    perceived = []  # time.monotonic() of each perceive call (drive_window's warm-up call first)
    # per tick that perceived a new frame (and so recorded it), in order: the frame's capture index,
    # its capture timestamp, when the model was called on it, when the tick's keys had been sent
    decided, seen = [], [0]

    def on_tick(i, obs, perception, action, result):
        nonlocal estop
        now = time.monotonic()
        if len(perceived) > seen[0]:
            decided.append((obs.frame.index, obs.frame.timestamp, perceived[-1], now))
            seen[0] = len(perceived)
        if i == 10:
            person.press("right")  # a person grabs the wheel
            phases["pressed"] = i
        if i == 25:
            person.release("right")
            phases["released"] = i
        if result.event == "engaged" and "released" in phases and "reengaged" not in phases:
            phases["reengaged"] = i
        if "reengaged" in phases and i >= phases["reengaged"] + 5 and estop is None:
            from Xlib import XK, X
            from Xlib.ext import xtest

            estop = person.display.keysym_to_keycode(XK.string_to_keysym("End"))
            xtest.fake_input(person.display, X.KeyPress, estop)
            person.display.sync()

    with sim_window(TITLE, "--size", "320x240", "--seed", "2", "--fps", "30", "--seconds", "60",
                    "--weather", "rain"):
        try:
            stats = drive_window(scripted("straight", perceived), window_title=TITLE, fps=30, keys="x11", steps=300,
                                 record=str(tmp_path / "drive"), reengage=True, on_tick=on_tick)
            held_after = read_held_keys()
        finally:
            if estop is not None:
                from Xlib import X
                from Xlib.ext import xtest

                xtest.fake_input(person.display, X.KeyRelease, estop)
                person.display.sync()
            person.close()
    events = list(stats.events)
    assert stats.stopped_by is StopReason.ESTOP, (stats.stopped_by, events)
    assert any(e.startswith("disengaged: takeover") and "Right" in e for e in events), events
    assert events.count("engaged") >= 2 and "reengaged" in phases, events
    assert held_after == KeysHeld()
    records = Session.open(tmp_path / "drive").records()
    # One record per new game frame: ticks that found no new frame only re-sent the keys.
    assert len(records) == stats.steps - stats.repeated_steps, (len(records), stats)
    takeover = [r for r in records if r.extra.get("takeover")]
    assert takeover and len(takeover) <= stats.takeover_steps  # takeover ticks include repeated ones
    assert all(r.keys[1] and not r.keys[0] for r in takeover)  # the person's Right, not the agent's keys
    assert all(r.direction == "right" and r.direction_source == "keys" for r in takeover)
    driven = [r for r in records if r.extra.get("engaged")]
    assert driven and all(r.direction == "straight" and r.direction_source == "model" for r in driven)
    assert all(r.extra["model_probs"]["straight"] == pytest.approx(0.9) for r in records)
    # frame-to-key latency: from the frame's capture to its keys sent, so (in ms, recorded to 0.01)
    # no shorter than capture -> the model's call on it and no longer than capture -> the tick's end
    assert [r.extra["capture_index"] for r in records] == [index for index, *_ in decided]
    for r, (index, captured, perceived_at, ticked) in zip(records, decided):
        low, high = (perceived_at - captured) * 1e3 - 0.01, (ticked - captured) * 1e3 + 0.01
        assert low <= r.extra["latency_ms"] <= high, (index, low, r.extra["latency_ms"], high)


@pytest.mark.x11
def test_stale_capture_disengages_and_reengagement_backs_off(window_app):
    """A window whose picture never changes although keys are held (a frozen game): after 1 s of
    identical frames the guard disengages and releases the keys; the agent tries again after 1 s,
    then after 2 s (backing off while the picture stays frozen)."""
    from agent.apps.drive import drive_window
    from agent.io.keys.x11 import read_held_keys

    app = window_app("TruckPilot frozen game", 100, 50, 320, 240)
    ticks = []
    stats = drive_window(scripted("left"), window_title=app.title, fps=30, keys="x11", seconds=5.5,
                         on_tick=lambda i, obs, p, a, r: ticks.append((time.monotonic(), r.engaged, r.held, r.event)))
    events = [(i, t, e) for i, (t, _, _, e) in enumerate(ticks) if e]
    names = [e for _, _, e in events]
    assert names[0] == "engaged" and names[1].startswith("disengaged: capture stale: frozen"), names
    assert names[2] == "engaged" and names[3].startswith("disengaged: capture stale: frozen"), names
    tick = [i for i, _, _ in events]
    t = [when for _, when, _ in events]
    # stale after fps (30) identical frames while holding keys: ~1 s at full speed, counted in ticks
    # so that a loaded machine running the loop slower than 30 fps does not change the answer
    assert 28 <= tick[1] - tick[0] <= 33, tick
    # the retry waits are timers: never shorter than 1 s, then 2 s; the upper bound only
    # catches a retry that never comes (the shared machine may be slow)
    assert 0.9 <= t[2] - t[1] <= 3.0, t
    if len(t) > 4:
        assert t[4] - t[3] >= 1.8, t
    assert all(held == KeysHeld() for _, engaged, held, _ in ticks if not engaged)
    assert stats.repeated_steps > 0.9 * stats.steps  # nothing new to look at
    assert read_held_keys() == KeysHeld()

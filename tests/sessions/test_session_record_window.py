"""The real-game path end to end on a real X server: the simulator's own window stands in for the game,
``truckpilot record --window`` captures it with mss and records the keys a test presses with XTest."""
from __future__ import annotations

import subprocess
import sys
import time
from itertools import groupby

import json

import numpy as np
import pytest

from agent.recording.recorder import WINDOWS_VK, WindowsKeyReader, direction_from_keys
from training.sessions import Session
from agent.types import KeysHeld
from tests.waiting import wait_until

pytestmark = pytest.mark.x11


def _recorded_keys(session_dir) -> list[tuple[int, ...]]:
    """The keys of every frame the running recorder has written so far (whole lines of frames.jsonl)."""
    try:
        text = (session_dir / "frames.jsonl").read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the last piece is empty or a line still being written
    return [tuple(json.loads(line.rsplit("\t", 1)[0])["keys"]) for line in lines if line]


def _frames_with(session_dir, keys: tuple[int, ...], at_least: int):
    """Condition: at least ``at_least`` recorded frames hold exactly ``keys`` (left, right, throttle, brake)."""
    return lambda: sum(k == keys for k in _recorded_keys(session_dir)) >= at_least


def _wait_for_window(title: str, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    from agent.io.window import WindowNotFound, find_window

    def window_id():
        try:
            return find_window(title).window_id
        except WindowNotFound:
            return None

    return wait_until(window_id, timeout, f"a window titled {title!r}", interval=0.1, alive=proc)


def test_record_window_captures_frames_and_xtest_keys(xvfb_display, tmp_path):
    from agent.io.keys.x11 import X11Keys
    from agent.io.window import focus_window

    game = subprocess.Popen([sys.executable, "-m", "agent", "sim", "--title", "TruckSim", "--seconds", "25",
                             "--size", "320x240", "--seed", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = tmp_path / "game"
    recorder = None
    try:
        focus_window(_wait_for_window("TruckSim", game))
        recorder = subprocess.Popen([sys.executable, "-m", "agent", "record", "--out", str(out), "--window", "TruckSim",
                                     "--fps", "10", "--seconds", "6", "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # a person driving: nothing, left, right, then straight on; each key change waits until the
        # recorder has written frames that hold it (not a guessed time), so a loaded machine cannot
        # make a phase too short; the recording's end (--seconds) closes the last phase
        wait_until(_frames_with(out, (0, 0, 0, 0), 4), 30, "4 recorded frames with no key held", alive=recorder)
        with X11Keys() as keys:
            keys.apply(KeysHeld(left=True, throttle=True))
            wait_until(_frames_with(out, (1, 0, 1, 0), 6), 10, "6 recorded frames holding left", alive=recorder)
            keys.apply(KeysHeld(right=True, throttle=True))
            wait_until(_frames_with(out, (0, 1, 1, 0), 6), 10, "6 recorded frames holding right", alive=recorder)
            keys.apply(KeysHeld(throttle=True))
            wait_until(_frames_with(out, (0, 0, 1, 0), 3), 10, "3 recorded frames straight on", alive=recorder)
        stdout, stderr = recorder.communicate(timeout=60)
        assert recorder.returncode == 0, stderr[-2000:]
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
        game.terminate()
        game.wait(timeout=10)

    session = Session.open(out)
    m = session.manifest
    assert m.source["kind"] == "window" and m.source["title"] == "TruckSim"
    assert (m.width, m.height, m.fps, m.image_format) == (320, 240, 10.0, "jpg")
    records = session.records()
    assert 19 <= len(records) <= 65, len(records)  # 10 fps for ~6 s; at least the 19 frames waited for above
    for r in records:
        held = KeysHeld.from_array(r.keys)
        assert r.direction == direction_from_keys(held) and r.direction_source == "keys"
    runs = [d for d, _ in groupby(r.direction for r in records)]
    assert runs[:4] == ["straight", "left", "right", "straight"], runs
    assert sum(r.direction == "left" for r in records) >= 6 and sum(r.direction == "right" for r in records) >= 6
    first, last = session.load_image(records[0]), session.load_image(records[-1])
    assert first.shape == (240, 320, 3) and first.mean() > 20, "captured a black frame, not the game"
    assert abs(first.astype(int) - last.astype(int)).mean() > 1, "the game window did not change while driving"


def test_windows_key_reader_maps_arrows_and_wasd():
    """GetAsyncKeyState cannot exist on Linux: a fake stands in for user32 (high bit = key down)."""
    down = {WINDOWS_VK["left"][0], WINDOWS_VK["throttle"][1]}  # Left arrow and W
    reader = WindowsKeyReader(get_async_key_state=lambda vk: 0x8000 if vk in down else 0)
    assert reader.driving_keys() == KeysHeld(left=True, throttle=True)
    assert direction_from_keys(KeysHeld(left=True, right=True)) == "straight"
    assert direction_from_keys(KeysHeld(right=True)) == "right"


def test_person_drives_the_sim_window_and_their_keys_are_recorded(xvfb_display, tmp_path):
    """`truckpilot record` without --autopilot: a window a person drives; XTest plays the person."""
    from agent.io.keys.x11 import X11Keys
    from agent.io.window import focus_window

    out = tmp_path / "person"
    recorder = subprocess.Popen([sys.executable, "-m", "agent", "record", "--out", str(out), "--seconds", "3.5",
                                 "--fps", "15", "--scale", "1", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        focus_window(_wait_for_window("TruckPilot recording: person", recorder))
        with X11Keys() as keys:  # wait for frames recorded with the keys, not a guessed time
            wait_until(lambda: len(_recorded_keys(out)) >= 3, 30, "3 recorded frames", alive=recorder)
            keys.apply(KeysHeld(throttle=True, left=True))
            wait_until(_frames_with(out, (1, 0, 1, 0), 8), 10, "8 recorded frames holding left+throttle",
                       alive=recorder)
            keys.apply(KeysHeld())
        stdout, stderr = recorder.communicate(timeout=60)
        assert recorder.returncode == 0, stderr[-2000:]
    finally:
        if recorder.poll() is None:
            recorder.kill()
    session = Session.open(out)
    assert session.manifest.source["driver"] == "human" and session.manifest.fps == 15
    records = session.records()
    held = [r for r in records if r.keys == (True, False, True, False)]
    assert len(held) >= 8, [r.keys for r in records]  # waited for above
    assert all(r.direction_source == "sim" and r.action == (-1.0, 1.0, 0.0) for r in held)
    speeds = [r.extra["speed"] for r in records]
    assert max(speeds) > speeds[0], "holding the throttle did not move the truck"


def test_record_window_waits_while_the_window_is_hidden(xvfb_display, tmp_path, caplog):
    """A third-party window (xlogo, x11-apps: a still picture) is recorded through the one driving tick;
    it is unmapped for 2 s mid-recording: nothing is stored while it is hidden, the capture logs
    the HIDDEN and SHOWN events, and recording goes on until its time budget. The still picture's
    frames are marked ``identical_frames``."""
    import logging
    import shutil
    import threading

    from agent.io.capture import LOG_EVENT_ATTR, CaptureEvent
    from agent.io.keys.x11 import X11KeymapReader
    from agent.recording.recorder import record_window

    if shutil.which("xlogo") is None:
        pytest.fail("xlogo is not installed: apt-get install x11-apps (./run.sh does this as root)")
    logo = subprocess.Popen(["xlogo", "-title", "LogoGame", "-geometry", "320x240+50+40"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timers = []
    try:
        try:
            wid = _wait_for_window("LogoGame", logo)
        except pytest.fail.Exception as exc:  # say why xlogo did not start (its own words)
            logo.kill()
            pytest.fail(f"{exc}; xlogo said: {logo.communicate(timeout=10)[1].decode(errors='replace')!r}")
        hidden_for = {}

        def unmap():
            hidden_for["at"] = time.monotonic()
            subprocess.run(["xdotool", "windowunmap", str(wid)], check=True, timeout=10)

        def remap():
            subprocess.run(["xdotool", "windowmap", str(wid)], check=True, timeout=10)
            hidden_for["until"] = time.monotonic()

        timers = [threading.Timer(1.5, unmap), threading.Timer(3.5, remap)]
        caplog.set_level(logging.INFO, logger="agent.io.capture")
        out = tmp_path / "logo"
        for t in timers:
            t.start()
        result = record_window(out, window_title="LogoGame", fps=10, seconds=6.0, progress=False,
                               key_reader=X11KeymapReader())
    finally:
        for t in timers:
            t.cancel()
            t.join()
        logo.terminate()
        logo.wait(timeout=10)

    assert result.stopped_by == "time", result
    events = [getattr(r, LOG_EVENT_ATTR) for r in caplog.records if hasattr(r, LOG_EVENT_ATTR)]
    assert CaptureEvent.HIDDEN in events and CaptureEvent.SHOWN in events, events
    assert events.index(CaptureEvent.HIDDEN) < events.index(CaptureEvent.SHOWN)
    records = Session.open(out).records()
    times = [r.extra["capture_time"] for r in records]
    gaps = np.diff(times)
    longest = int(np.argmax(gaps))
    # the window was hidden for ~2 s: the longest gap between stored frames covers most of it, and
    # frames were stored before and after it
    hidden_s = hidden_for["until"] - hidden_for["at"]
    assert gaps[longest] >= hidden_s - 0.5, (gaps[longest], hidden_s)
    assert longest >= 3 and len(times) - longest - 1 >= 3, (longest, len(times))
    assert result.frames == len(records)
    # xlogo's picture does not change: after the first frame (and the first after it was shown
    # again) every frame repeats the previous one
    marked = [r.extra.get("identical_frames", 0) > 0 for r in records]
    assert sum(marked) >= len(records) - 3, marked

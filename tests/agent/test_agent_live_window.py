"""What a live game window does to ``truckpilot drive --window`` (agent.apps.drive.drive_window),
on a real Xvfb, against a program this project did not write (xclock, from the distribution's
x11-apps) and against the simulator's own window (``truckpilot sim``).

One drive per window runs a script of live events; after each one the test checks:
* the one log line, found by its typed attribute (``capture_event`` = CaptureEvent,
  ``disengage_reason`` = DisengageReason), never by its words;
* the X server's keymap (read back like tests/agent/test_agent_keys_x11.py): no driving key down
  within the stated number of loop periods;
* recovery: the capture follows a moved / resized window, and the agent engages again once the
  window is back, focused, drawing.

The agent's perceiver is a real Perceiver (an untrained tiny CNN: what it says does not matter
here) and the real Controller with cruise_throttle 1.0, so the throttle key is held whenever
the agent drives: a key that the guard failed to release would show on the keymap.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import pytest

from agent.io.capture import LOG_EVENT_ATTR, CaptureEvent
from agent.io.guard import LOG_REASON_ATTR
from agent.io.guard_protocol import DisengageReason
from agent.io.keys.x11 import X11KeymapReader
from agent.io.window import WindowNotFound, find_window
from agent.types import KeysHeld

pytestmark = pytest.mark.x11

FPS = 10.0
"""loop rate of the test drives: xclock -update 1 draws once a second, so at 10 ticks/s a
steady clock never shows the guard's 15 identical frames (its frozen-while-driving limit)"""
RELEASE_TICKS = 2
OTHER_AT = (1500, 900)
"""where the other program's 200x200 window sits: clear of the game window wherever the script moves
it (a clock overlapping the captured region changes its pixels every second, and the frozen-capture
step then waited for the second hand to leave the overlap: 59 ticks instead of 17 on one CI run)"""
"""a hidden, resized or unfocused window has every key up within this many loop ticks"""


@pytest.fixture()
def big_display(monkeypatch):
    """A private Xvfb 1940x1200 (room for a 1920x1080 window and its border); DISPLAY set, real SDL video."""
    from agent.io.xvfb import private_xvfb

    with private_xvfb(size=(1940, 1200)) as display:
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
        yield display


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)


def wait_for(title: str, proc: subprocess.Popen, timeout: float = 90.0, log=None):
    """The window's WindowInfo once it is viewable; ``log``: the program's output file, shown on failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return find_window(title)
        except WindowNotFound:
            if proc.poll() is not None or time.monotonic() > deadline:
                said = ""
                if log is not None:
                    log.seek(0)
                    said = log.read().decode(errors="replace")[-2000:]
                tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True).stdout
                raise RuntimeError(f"window {title!r} never appeared on {os.environ.get('DISPLAY')} "
                                   f"(exit code {proc.poll()}): {said}\nxwininfo: {tree[-1500:]}")
            time.sleep(0.1)


def start_sim(title: str, *args: str) -> tuple[subprocess.Popen, object]:
    """``truckpilot sim --title TITLE ARGS`` in a subprocess, its output in a temporary file."""
    log = tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}  # a real X window
    log.write(f"DISPLAY={env.get('DISPLAY')}\n".encode())
    log.flush()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", "--title", title, *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, log


class ThirdPartyWindow:
    """An Xt program of the distribution (x11-apps): xclock (redrawn once a second) or xlogo (the
    X logo in solid black on white, scaled to the window)."""

    def __init__(self, title: str, width: int, height: int, x: int = 100, y: int = 80,
                 program: tuple[str, ...] = ("xclock", "-update", "1")) -> None:
        if shutil.which(program[0]) is None:
            pytest.fail(f"{program[0]} is not installed: apt-get install x11-apps (./run.sh does this as root)")
        # its output is kept so that a failure to start says why (one CI run saw xlogo exit with status 1
        # on a fresh Xvfb, with its error message discarded)
        self.log = tempfile.TemporaryFile()
        self.log.write(f"DISPLAY={os.environ.get('DISPLAY')} {' '.join(program)}\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([*program, "-title", title, "-geometry", f"{width}x{height}+{x}+{y}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.info = wait_for(title, self.proc, log=self.log)

    def close(self) -> None:
        close_process(self.proc)
        self.log.close()


class SimWindow:
    """``truckpilot sim`` in a subprocess (its own pygame window; keys from the X server)."""

    def __init__(self, title: str, width: int, height: int) -> None:
        self.proc, self.log = start_sim(title, "--size", f"{width}x{height}", "--traffic", "0", "--seed", "1",
                                        "--time-of-day", "day", "--weather", "clear", "--seconds", "120")
        self.info = wait_for(title, self.proc, log=self.log)

    def close(self) -> None:
        close_process(self.proc)


def close_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tiny_perceiver():
    import torch

    from perception.perceiver import Perceiver
    from drive_kit import TinyDirectionNet, tiny_card

    torch.manual_seed(0)
    return Perceiver(TinyDirectionNet(), None, direction_card=tiny_card(), device="cpu")


@dataclass
class Step:
    """One live event of the script.

    act: does it (xdotool, a signal ...); expect: the typed attribute of the log line it must
    cause, as (record attribute, enum value); release_within: loop ticks by which every key is
    up (None: the keys may stay down, e.g. a moved window); restore: undoes it, run once the
    checks passed; then the agent must engage again before the next step.
    """

    name: str
    act: Callable[[], None]
    expect: tuple[str, object]
    release_within: int | None
    restore: Callable[[], None] | None = None
    check: Callable[[object], None] | None = None  # called with the observation after the event
    done: dict = field(default_factory=dict)


class Script:
    """Runs the steps from drive_window's on_tick / stop_when and records what it saw."""

    def __init__(self, steps: list[Step], caplog) -> None:
        self.steps = steps
        self.caplog = caplog
        self.keymap = X11KeymapReader()
        self.index = 0
        self.phase = "warmup"  # warmup -> acted -> restored -> (next step's warmup)
        self.tick = 0
        self.acted_tick = 0
        self.engaged_ticks_in_a_row = 0
        self.failures: list[str] = []
        self.finished = False

    def logged(self, attr: str, value) -> bool:
        return any(getattr(r, attr, None) is value for r in self.caplog.records[self.log_mark:])

    def on_tick(self, step, observation, perception, action, result) -> None:
        self.tick += 1
        held = self.keymap.driving_keys()
        if self.index >= len(self.steps):
            self.finished = True
            return
        s = self.steps[self.index]
        if self.phase in ("warmup", "restored"):
            self.engaged_ticks_in_a_row = self.engaged_ticks_in_a_row + 1 if result.engaged else 0
            if self.phase == "restored" and self.engaged_ticks_in_a_row >= 3:
                s.done["reengaged_after_ticks"] = self.tick - s.done["restored_tick"]
                self.index += 1
                self.phase = "warmup"
                self.engaged_ticks_in_a_row = 0
                return
            if self.phase == "warmup" and self.engaged_ticks_in_a_row >= 5 and held.throttle:
                self.log_mark = len(self.caplog.records)
                s.act()
                self.acted_tick = self.tick
                self.phase = "acted"
            return
        # acted: wait for the log line and (if asked) all keys up
        since = self.tick - self.acted_tick
        if "keys_up_after_ticks" not in s.done and held == KeysHeld():
            s.done["keys_up_after_ticks"] = since
        seen = self.logged(*s.expect)
        if seen and "logged_after_ticks" not in s.done:
            s.done["logged_after_ticks"] = since
            if s.check is not None:
                s.check(observation)
        ready = seen and (s.release_within is None or "keys_up_after_ticks" in s.done)
        if ready and since >= 3:
            if s.restore is not None:
                s.restore()
            s.done["restored_tick"] = self.tick
            self.phase = "restored"
        elif since > 60:
            self.failures.append(f"{s.name}: after {since} ticks: logged={seen}, keys {held}")
            self.finished = True

    def stop_when(self):
        return "script done" if self.finished else None


def run_script(title: str, steps: list[Step], caplog, seconds: float = 90.0):
    from agent.apps.drive import drive_window
    from agent.runtime.controller import ControllerConfig

    caplog.set_level(logging.INFO)
    script = Script(steps, caplog)
    script.log_mark = 0
    try:
        stats = drive_window(tiny_perceiver(), window_title=title, fps=FPS, seconds=seconds,
                             controller_config=ControllerConfig(cruise_throttle=1.0),
                             on_tick=script.on_tick, stop_when=script.stop_when)
        assert X11KeymapReader().driving_keys() == KeysHeld()  # nothing left down at the end
    finally:
        script.keymap.close()
    assert not script.failures, script.failures
    assert script.index == len(steps), f"stopped at step {script.index} ({stats.stopped_by}): " \
                                       f"{[s.done for s in steps]}"
    for s in steps:
        if s.release_within is not None:
            assert s.done["keys_up_after_ticks"] <= s.release_within, (s.name, s.done)
    return stats


def live_steps(window_id: int, pid: int, other_id: int, width: int, height: int) -> list[Step]:
    wid = str(window_id)

    def moved(observation):  # the capture follows: its region is where the window is now
        from agent.io.window import window_locator

        locator = window_locator()
        try:
            now = locator.geometry(window_id)
        finally:
            locator.close()
        assert observation.health.geometry == now and (now.x, now.y) != (100, 80), now

    def resized(observation):
        assert observation.frame.image.shape[:2] == (height // 2, width // 2)

    def minimise():  # what an EWMH window manager does for a window it keeps mapped
        from Xlib import Xatom, display

        d = display.Display()
        w = d.create_resource_object("window", window_id)
        w.change_property(d.intern_atom("_NET_WM_STATE"), Xatom.ATOM, 32, [d.intern_atom("_NET_WM_STATE_HIDDEN")])
        d.sync()
        d.close()

    def unminimise():
        from Xlib import display

        d = display.Display()
        d.create_resource_object("window", window_id).delete_property(d.intern_atom("_NET_WM_STATE"))
        d.sync()
        d.close()

    frozen_limit = max(15, int(round(FPS)))  # drive_window's GuardConfig.frozen_while_driving_frames
    return [
        Step("move", lambda: xdotool("windowmove", wid, "300", "200"), (LOG_EVENT_ATTR, CaptureEvent.MOVED),
             None, check=moved),
        Step("resize", lambda: xdotool("windowsize", wid, str(width // 2), str(height // 2)),
             (LOG_REASON_ATTR, DisengageReason.WINDOW_RESIZED), RELEASE_TICKS, check=resized,
             restore=lambda: xdotool("windowsize", wid, str(width), str(height))),
        Step("unmap", lambda: xdotool("windowunmap", "--sync", wid), (LOG_REASON_ATTR, DisengageReason.WINDOW_HIDDEN),
             RELEASE_TICKS, restore=lambda: (xdotool("windowmap", "--sync", wid), xdotool("windowfocus", wid))),
        Step("minimise", minimise, (LOG_REASON_ATTR, DisengageReason.WINDOW_HIDDEN), RELEASE_TICKS,
             restore=unminimise),
        Step("focus elsewhere", lambda: xdotool("windowfocus", str(other_id)),
             (LOG_REASON_ATTR, DisengageReason.FOCUS_LOST), RELEASE_TICKS,
             restore=lambda: xdotool("windowfocus", wid)),
        Step("frozen (SIGSTOP)", lambda: os.kill(pid, signal.SIGSTOP),
             (LOG_REASON_ATTR, DisengageReason.CAPTURE_STALE), frozen_limit + RELEASE_TICKS,
             restore=lambda: os.kill(pid, signal.SIGCONT)),
    ]


def test_live_events_on_a_third_party_window(big_display, caplog):
    game = ThirdPartyWindow("TP xclock game", 640, 360)
    other = ThirdPartyWindow("TP other app", 200, 200, x=OTHER_AT[0], y=OTHER_AT[1])
    try:
        steps = live_steps(game.info.window_id, game.proc.pid, other.info.window_id, 640, 360)
        stats = run_script("TP xclock game", steps, caplog)
    finally:
        game.close()
        other.close()
    hidden = [r for r in caplog.records if getattr(r, LOG_EVENT_ATTR, None) is CaptureEvent.HIDDEN]
    shown = [r for r in caplog.records if getattr(r, LOG_EVENT_ATTR, None) is CaptureEvent.SHOWN]
    assert len(hidden) == 2 and len(shown) == 2  # one line each per hiding, not one per tick
    assert stats.engaged_steps > 0


def test_live_events_on_the_sim_window(big_display, caplog):
    game = SimWindow("TP sim game", 640, 480)
    other = ThirdPartyWindow("TP other app", 200, 200, x=OTHER_AT[0], y=OTHER_AT[1])
    try:
        steps = live_steps(game.info.window_id, game.proc.pid, other.info.window_id, 640, 480)
        run_script("TP sim game", steps, caplog)
    finally:
        game.close()
        other.close()


SIZES = [(800, 600), (1280, 720), (1920, 1080)]
INPUT = (144, 192)  # (h, w): a 4:3 model input, as the project's default


def _dark_box(image, region=None):
    """xyxy bounding box of the dark pixels (all channels < 128, mid-grey: an area-averaged edge
    pixel is dark when most of it was) of ``image``, inside ``region`` (x, y, w, h) when given."""
    mask = (image < 128).all(axis=2)
    if region is not None:
        x, y, w, h = region
        keep = np.zeros_like(mask)
        keep[y:y + h, x:x + w] = True
        mask &= keep
    ys, xs = np.nonzero(mask)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)


def _check_letterboxed(image, window_wh):
    """The frame is the window's size, and its model input is letterboxed: one scale factor, black
    bars outside the content; returns the Letterbox."""
    from perception.preprocess import Letterbox, resize_frame

    width, height = window_wh
    assert image.shape == (height, width, 3)
    box = Letterbox.fit(image.shape[:2], INPUT)
    x, y, w, h = box.content
    assert abs(w / width - h / height) * max(width, height) <= 1.0  # not stretched
    out = resize_frame(image, INPUT)
    bars = np.ones(INPUT, bool)
    bars[y:y + h, x:x + w] = False
    assert not out[bars].any()
    if width * 3 == height * 4:
        assert box.fills
    else:
        assert (x, y, w, h) == (0, 18, 192, 108)  # 16:9 in 4:3: bars above and below
    return box, out


@pytest.mark.parametrize("window_wh", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_window_sizes_map_to_the_model_input_without_stretching_third_party(big_display, window_wh):
    """xlogo at 800x600, 1280x720, 1920x1080: the frame is the window, its model input is
    letterboxed, and the logo's bounding box (a box we measure in the window) found in the model
    input maps back to window pixels within one model-input pixel."""
    from agent.io.capture import open_capture

    width, height = window_wh
    app = ThirdPartyWindow("TP xlogo size", width, height, x=0, y=0, program=("xlogo",))
    try:
        with open_capture("TP xlogo size") as cap:
            image = cap.grab().image
    finally:
        app.close()
    box, out = _check_letterboxed(image, window_wh)
    in_window = _dark_box(image)
    in_input = _dark_box(out, box.content)
    assert np.abs(in_input - box.boxes_to_input(in_window)).max() <= 1.0  # input px
    back = box.boxes_to_frame(in_input)
    one_input_px = width / box.content[2]
    assert np.abs(back - in_window).max() <= one_input_px, (back, in_window)
    # a stretched resize would put the logo's box elsewhere by far more than that
    stretched = in_input * np.array([width / INPUT[1], height / INPUT[0]] * 2)
    if not box.fills:
        assert np.abs(stretched - in_window).max() > 4 * one_input_px


@pytest.mark.parametrize("window_wh", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_window_sizes_map_to_the_model_input_without_stretching_sim(big_display, window_wh):
    """The sim window at the three sizes (drawn at half size, scaled 2x): the frame is the window and
    its model input letterboxed, with the picture's content (not bars) where the Letterbox says."""
    from agent.io.capture import open_capture

    width, height = window_wh
    proc, log = start_sim("TP sim size", "--size", f"{width // 2}x{height // 2}", "--scale", "2", "--traffic", "0",
                          "--seed", "1", "--seconds", "60")
    try:
        wait_for("TP sim size", proc, log=log)
        with open_capture("TP sim size") as cap:
            image = cap.grab().image
            deadline = time.monotonic() + 30
            while cap.health().black and time.monotonic() < deadline:  # the first picture is on its way
                time.sleep(0.2)
                image = cap.grab().image
    finally:
        close_process(proc)
    box, out = _check_letterboxed(image, window_wh)
    x, y, w, h = box.content
    content = out[y:y + h, x:x + w].astype(int)
    assert content.mean() > 20  # the road scene, not bars
    reference = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(content - reference).mean() < 3.0  # the whole window, scaled by one factor


@pytest.fixture()
def window_manager(big_display):
    """openbox (a distribution window manager: EWMH minimise / activate, reparenting frames) on the
    test's Xvfb, ready once it has set _NET_SUPPORTING_WM_CHECK on the root window."""
    from Xlib import X, display

    if shutil.which("openbox") is None:
        pytest.fail("openbox is not installed: apt-get install openbox (./run.sh does this as root)")
    proc = subprocess.Popen(["openbox", "--sm-disable"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = display.Display()
    try:
        check = d.intern_atom("_NET_SUPPORTING_WM_CHECK")
        deadline = time.monotonic() + 30
        while d.screen().root.get_full_property(check, X.AnyPropertyType) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"openbox did not start (exit code {proc.poll()})")
            time.sleep(0.1)
    finally:
        d.close()
    yield proc
    close_process(proc)


def test_minimise_and_activate_under_a_window_manager(window_manager, caplog):
    """Under openbox: ``xdotool windowminimize`` (the WM iconifies and unmaps the window, and parks
    it off the screen on the way) pauses the drive with every key up, ``windowactivate`` brings it
    back and the agent engages again; activating another program's window (xlogo) takes the focus
    away (keys up), activating the game gives it back. The game is the sim window: under a WM the
    game must take keyboard focus and keep drawing (xclock and xlogo ask for no focus, and a static
    picture is the frozen-capture case, covered above)."""
    game = SimWindow("TP sim wm game", 640, 480)
    other = ThirdPartyWindow("TP other app", 200, 200, x=OTHER_AT[0], y=OTHER_AT[1], program=("xlogo",))
    try:
        wid, other_id = str(game.info.window_id), str(other.info.window_id)
        xdotool("windowactivate", "--sync", wid)
        steps = [
            Step("minimise (WM)", lambda: xdotool("windowminimize", "--sync", wid),
                 (LOG_REASON_ATTR, DisengageReason.WINDOW_HIDDEN), RELEASE_TICKS,
                 restore=lambda: xdotool("windowactivate", "--sync", wid)),
            Step("activate another window", lambda: xdotool("windowactivate", "--sync", other_id),
                 (LOG_REASON_ATTR, DisengageReason.FOCUS_LOST), RELEASE_TICKS,
                 restore=lambda: xdotool("windowactivate", "--sync", wid)),
        ]
        run_script("TP sim wm game", steps, caplog)
    finally:
        game.close()
        other.close()
    assert any(getattr(r, LOG_EVENT_ATTR, None) is CaptureEvent.HIDDEN for r in caplog.records)
    assert any(getattr(r, LOG_EVENT_ATTR, None) is CaptureEvent.SHOWN for r in caplog.records)

"""X11Keys through XTest on a real Xvfb: read back from the server keymap and
from pygame in the focused window's own process."""
from __future__ import annotations

import os

import pytest

from agent.io.keys import KeyMap, SimKeys, probe_key_backend
from agent.io.keys.x11 import X11KeymapReader, X11Keys, read_held_keys
from agent.types import KeysHeld
from agent.io.window import find_window, focus_window

pytestmark = pytest.mark.x11


def test_keys_reach_the_server_keymap_and_the_window(window_app):
    app = window_app(title="TP keys")
    focus_window(find_window("TP keys").window_id)
    with X11Keys() as keys:
        keys.apply(KeysHeld(left=True, throttle=True))
        assert read_held_keys() == KeysHeld(left=True, throttle=True)
        assert keys.held() == KeysHeld(left=True, throttle=True)
        keys.apply(KeysHeld(right=True))  # releases left+up, presses right
        assert read_held_keys() == KeysHeld(right=True)
        keys.press("brake")
        keys.release("brake")
    assert read_held_keys() == KeysHeld()  # close() released everything
    events = app.read_events(expect=8)
    assert events == ["KEYDOWN left", "KEYDOWN up", "KEYUP left", "KEYUP up",
                      "KEYDOWN right", "KEYDOWN down", "KEYUP down", "KEYUP right"]


def test_wasd_keymap_and_reader_sees_either_map(window_app):
    app = window_app(title="TP wasd")
    focus_window(find_window("TP wasd").window_id)
    with X11Keys(KeyMap.wasd()) as keys, X11KeymapReader() as reader:
        keys.apply(KeysHeld(throttle=True, right=True))
        assert reader.driving_keys() == KeysHeld(throttle=True, right=True)
        assert reader.driving_keys(keymaps=(KeyMap.arrows(),)) == KeysHeld()  # not arrows
        assert reader.down(["w", "d", "Up"]) == {"w", "d"}
    assert read_held_keys() == KeysHeld()
    assert app.read_events(expect=4)[:2] == ["KEYDOWN d", "KEYDOWN w"]


def test_probe_prefers_x11_with_a_display_and_honours_prefer(xvfb_display):
    backend, reason = probe_key_backend()
    try:
        assert backend.kind == "x11" and xvfb_display in reason
    finally:
        backend.close()
    backend, reason = probe_key_backend(prefer="sim")
    assert isinstance(backend, SimKeys) and "requested" in reason


def test_probe_without_display_or_uinput_says_why(monkeypatch):
    from agent.io.keys import KeyBackendUnavailable
    from agent.io.keys.uinput import uinput_problem

    monkeypatch.delenv("DISPLAY", raising=False)
    if uinput_problem() is None:
        pytest.skip("/dev/uinput is usable here, so probing would (rightly) succeed")
    with pytest.raises(KeyBackendUnavailable, match="DISPLAY is not set"):
        probe_key_backend()


def test_ctrl_c_inside_an_xlib_call_does_not_hang_the_release(xvfb_display):
    """python-xlib takes its locks without try/finally: before the fix, a KeyboardInterrupt
    inside a call left the connection locked and the release at exit waited for ever
    (3 runs of 3 hung). Now the cut-short connection is abandoned for a fresh one."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("interrupt_keys.py")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, str(script), "2"], capture_output=True, text=True, timeout=60,
                          cwd=repo, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    interrupts = int(done.stdout.split()[-1])
    assert interrupts >= 20, done.stdout  # enough of them landed inside the calls
    assert read_held_keys() == KeysHeld()  # nothing pressed by a cut-short call was left down

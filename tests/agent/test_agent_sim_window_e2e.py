"""End to end on a real X server with the simulator's own window (`truckpilot sim`):
find it by title, capture it (RGB, geometry, frames change while it drives), drive it
with X11 XTest throttle presses, and read the keys back from the sim's own summary."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from agent.io.capture import open_capture
from agent.io.keys.x11 import X11Keys, read_held_keys
from agent.types import KeysHeld
from agent.io.window import WindowNotFound, find_window, focus_window

pytestmark = pytest.mark.x11


def test_capture_and_drive_the_sim_window(xvfb_display):
    title = "TP sim e2e"
    sim = subprocess.Popen([sys.executable, "-m", "agent", "sim", "--title", title, "--size", "320x240",
                            "--traffic", "0", "--seconds", "8", "--seed", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                info = find_window(title)
                break
            except WindowNotFound:
                if sim.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sim window {title!r} never appeared (exit code {sim.poll()})")
                time.sleep(0.1)
        assert (info.geometry.width, info.geometry.height) == (320, 240)
        focus_window(info.window_id)
        with open_capture(title, fps=15) as cap, X11Keys() as keys:
            before = cap.grab().image
            keys.press("throttle")
            assert read_held_keys() == KeysHeld(throttle=True)
            frames = [cap.grab().image for _ in range(30)]  # ~2 s of driving at 15 fps
            keys.release_all()
            health = cap.health()
        assert before.shape == (240, 320, 3)
        assert not health.black and health.identical_frames < 5
        assert np.abs(frames[-1].astype(int) - before.astype(int)).mean() > 1.0  # the road moved
        assert read_held_keys() == KeysHeld()
        out, _ = sim.communicate(timeout=30)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    summary = next(line for line in out.splitlines() if line.startswith("sim summary:"))
    fields = dict(item.split("=", 1) for item in summary.split()[2:] if "=" in item)
    assert int(fields["keys_down_steps"]) >= 15, summary  # the sim's pygame saw our Up key
    assert float(fields["distance_m"]) > 1.0, summary

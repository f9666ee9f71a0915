"""``truckpilot sim``: contact sheet, and a real window driven by XTest keys under Xvfb."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim.cli import main
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def test_contact_sheet_grid(tmp_path):
    import pygame

    out = tmp_path / "sheet.png"
    assert main(["--contact-sheet", str(out), "--sheet-seeds", "2", "--sheet-steps", "12", "--size", "96x72"]) == 0
    img = pygame.surfarray.array3d(pygame.image.load(str(out))).transpose(1, 0, 2)
    assert img.shape == (9 * 72, 2 * 96, 3)  # 3 times of day x 3 weathers, 2 seeds
    # every tile is a picture, not a blank
    tiles = img.reshape(9, 72, 2, 96, 3)
    assert all(tiles[r, :, c].std() > 5 for r in range(9) for c in range(2))
    # night tiles are darker than day tiles
    assert tiles[6:9].mean() < tiles[0:3].mean()


def test_contact_sheet_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="png"):
        main(["--contact-sheet", str(tmp_path / "sheet.txt")])


def _find_window(dpy, title: str):
    """The X window whose _NET_WM_NAME (SDL's UTF-8 title) or WM_NAME is ``title``, or None."""
    net_wm_name = dpy.intern_atom("_NET_WM_NAME")
    stack = [dpy.screen().root]
    while stack:
        win = stack.pop()
        try:
            prop = win.get_full_property(net_wm_name, 0)
            name = prop.value if prop is not None else win.get_wm_name()
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            if name == title:
                return win
            stack.extend(win.query_tree().children)
        except Exception:  # a window that vanished while we looked
            continue
    return None


def _hold_key_with_xtest(display: str, title: str, keysym_name: str, seconds: float) -> None:
    """Focus the window titled ``title`` and hold a key for ``seconds`` with XTest."""
    from Xlib import X, XK, display as xdisplay
    from Xlib.ext import xtest

    dpy = xdisplay.Display(display)
    try:
        win = wait_until(lambda: _find_window(dpy, title), 20, f"a window titled {title!r}", interval=0.1)
        # focus needs a mapped window: wait until it is viewable instead of sleeping a guessed time
        wait_until(lambda: win.get_attributes().map_state == X.IsViewable, 10, f"{title!r} to be viewable")
        win.set_input_focus(X.RevertToParent, X.CurrentTime)
        dpy.sync()
        code = dpy.keysym_to_keycode(XK.string_to_keysym(keysym_name))
        xtest.fake_input(dpy, X.KeyPress, code)
        dpy.sync()
        time.sleep(seconds)  # the behaviour under test: a key held this long drives the truck
        xtest.fake_input(dpy, X.KeyRelease, code)
        dpy.sync()
    finally:
        dpy.close()


def _run_sim(display: str, title: str, seconds: float, extra: list[str], key: str | None) -> str:
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(REPO))
    env.pop("SDL_VIDEODRIVER", None)
    proc = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "sim", "--title", title, "--size", "160x120",
                             "--seconds", str(seconds), *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if key:
            _hold_key_with_xtest(display, title, key, 2.0)
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


def _summary(out: str) -> dict[str, float]:
    m = re.search(r"sim summary: (.*)", out)
    assert m, out
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.]+)", m.group(1))}


@pytest.mark.x11
def test_window_driven_by_xtest_keys(xvfb_display):
    out = _run_sim(xvfb_display, "SimUnderTest", 6.0, ["--time-of-day", "day", "--weather", "clear"], key="Up")
    s = _summary(out)
    assert s["keys_down_steps"] > 5  # the injected key reached pygame.key.get_pressed()
    assert s["distance_m"] > 1.0 and s["steps"] > 20  # from a standstill: it moved only because of the key


@pytest.mark.x11
def test_autopilot_window(xvfb_display):
    out = _run_sim(xvfb_display, "SimAutopilot", 3.0, ["--autopilot"], key=None)
    s = _summary(out)
    assert s["keys_down_steps"] == 0 and s["distance_m"] > 0.5
    assert np.isfinite(s["speed_m_s"])

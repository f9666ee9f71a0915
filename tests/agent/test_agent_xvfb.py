"""agent.io.xvfb: the one Xvfb launcher (the tests' xvfb_display fixture uses it too)."""
from __future__ import annotations

import pytest
from Xlib import display as xdisplay
from Xlib.error import DisplayError

from agent.io.xvfb import private_xvfb, xvfb


def test_private_xvfb_serves_a_screen_of_the_size_asked_then_stops():
    with private_xvfb(size=(320, 200)) as name:
        assert name.startswith(":") and name[1:].isdigit()
        conn = xdisplay.Display(name)
        screen = conn.screen()
        assert (screen.width_in_pixels, screen.height_in_pixels) == (320, 200)
        conn.close()
    with pytest.raises(DisplayError):
        xdisplay.Display(name).close()


def test_two_private_servers_get_different_displays():
    with private_xvfb() as first, private_xvfb() as second:
        assert first != second


def test_xvfb_uses_a_given_display_without_starting_a_server():
    with xvfb(":12345") as name:
        assert name == ":12345"


def test_missing_xvfb_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="apt-get install xvfb"):
        with private_xvfb():
            pass


def test_an_xlib_program_started_the_moment_the_server_is_yielded_opens_it():
    """A CI run saw xclock / xlogo, started at once on a fresh private Xvfb, fail with "Can't open
    display" while other clients reached it a moment later: the launcher now yields only after an X
    handshake. A distribution program (xdpyinfo, x11-utils) started at once on 5 fresh servers opens
    each one."""
    import shutil
    import subprocess

    if shutil.which("xdpyinfo") is None:
        pytest.fail("xdpyinfo is not installed: apt-get install x11-utils (./run.sh does this as root)")
    for _ in range(5):
        with private_xvfb(size=(320, 200)) as name:
            out = subprocess.run(["xdpyinfo", "-display", name], capture_output=True, text=True, timeout=20)
            assert out.returncode == 0 and "320x200 pixels" in out.stdout, out.stderr

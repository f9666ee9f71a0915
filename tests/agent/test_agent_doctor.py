"""truckpilot doctor on a real Xvfb with a real window, and without a display."""
from __future__ import annotations

import subprocess
import sys

import pytest

from agent.apps.doctor import FAIL, OK, check_capture, check_display, check_key_test, main

pytestmark = pytest.mark.x11


def test_doctor_cli_passes_with_window_and_key_test(window_app, capsys):
    window_app(title="TP doctor")
    code = main(["--window", "TP doctor", "--key-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[OK  ] display: X11 display" in out
    # the test window is static, so two grabs are identical: a WARN (a paused game looks the same)
    assert "[WARN] capture: window 'TP doctor' 320x240 at 100,50" in out and "identical" in out
    assert "[OK  ] keys: XTest press and release of Up seen on the X server" in out
    assert "[OK  ] key backend: x11" in out
    assert "gpu:" in out and "weights:" in out and "uinput:" in out
    # each analog output backend gets a line, OK or WARN (optional: never a FAIL)
    for name in ("scs-controls", "uinput-gamepad", "vgamepad"):
        assert f"] axes {name}: " in out and f"[FAIL] axes {name}" not in out


def test_black_window_fails_and_missing_window_fails(window_app):
    window_app(title="TP dark", black=True)
    black = check_capture("TP dark")
    assert black.status == FAIL and "black" in black.message and black.fix
    missing = check_capture("no such window")
    assert missing.status == FAIL and "no viewable X window" in missing.message


def test_key_test_reads_back(window_app):
    window_app(title="TP doctor keys")
    assert check_key_test("TP doctor keys").status == OK


def test_wayland_without_xwayland_and_no_display_fail():
    result = check_display({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"})
    assert result.status == FAIL and "XWayland" in result.message
    assert check_display({}).status == FAIL


def test_doctor_exit_code_is_nonzero_without_display():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    proc = subprocess.run([sys.executable, "-m", "agent", "doctor"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] display: DISPLAY is not set" in proc.stdout


def test_find_capture_offset_on_a_textured_image():
    import numpy as np

    from agent.apps.doctor import find_capture_offset

    rng = np.random.default_rng(0)
    screen = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    window = screen[40:140, 60:200].copy()
    assert find_capture_offset(window, screen, (60, 40)) == (0, 0)
    assert find_capture_offset(window, screen, (50, 45)) == (10, -5)  # really 10 right, 5 up
    flat = np.full((100, 140, 3), 90, np.uint8)
    assert find_capture_offset(flat, screen, (60, 40)) is None

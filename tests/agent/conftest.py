"""Fixtures for the agent's X11 tests: a real pygame window on the test's Xvfb."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


class WindowApp:
    """A running tests/agent/window_app.py process; ``lines`` collects its key events."""

    def __init__(self, title: str, x: int, y: int, w: int, h: int, black: bool = False) -> None:
        self.title, self.x, self.y, self.w, self.h = title, x, y, w, h
        cmd = [sys.executable, str(HERE / "window_app.py"), title, str(x), str(y), str(w), str(h)]
        if black:
            cmd.append("--black")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.close()
            raise RuntimeError(f"window_app did not start: {line!r}")
        self.lines: list[str] = []
        self._buffer = b""

    def read_events(self, expect: int, timeout: float = 5.0) -> list[str]:
        """Wait until at least ``expect`` key-event lines arrived; return them all."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while len(self.lines) < expect and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._buffer += chunk
                *done, self._buffer = self._buffer.split(b"\n")
                self.lines += [ln.decode().strip() for ln in done if ln.strip()]
        return list(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def window_app(xvfb_display):
    """Factory: window_app(title, x, y, w, h, black=False) -> WindowApp; all closed after the test."""
    apps: list[WindowApp] = []

    def start(title="TruckPilot test window", x=100, y=50, w=320, h=240, black=False) -> WindowApp:
        app = WindowApp(title, x, y, w, h, black)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()



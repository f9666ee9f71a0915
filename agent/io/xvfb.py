"""A private Xvfb X server, for tests, benchmarks and tools that need a display when there is none.

One launcher: ``private_xvfb`` starts ``Xvfb -displayfd``, so the server picks a free display
number itself and reports it on a pipe (parallel runs cannot race for the same number), waits
until a client completes the X handshake with it, and stops it on exit. ``xvfb`` uses a given
display instead when there is one.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

#: how long Xvfb may take to report its display number, s
START_TIMEOUT_S = 10.0


@contextmanager
def private_xvfb(size: tuple[int, int] = (640, 480), timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Start a private Xvfb with one ``size`` = (W, H) 24-bit screen; yield its name (":N").

    The server listens on its local socket only (-nolisten tcp), accepts any local client (-ac)
    and does not reset when its last client disconnects (-noreset): by default an X server
    regenerates then, and a client connecting during the reset is refused ("Can't open display",
    "Connection reset by peer"; CI runs saw xclock and xlogo fail so, right after a short-lived
    client such as a window lookup had closed). It is yielded once a client has completed the X
    handshake with it. It is terminated (killed if it lingers 5 s) on exit. Raises
    RuntimeError naming the fix when Xvfb is missing, or when it exits, reports no display or
    accepts no client within ``timeout_s``.
    """
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed: apt-get install xvfb (or pass a display)")
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp",
             "-ac", "-noreset"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    try:
        deadline = time.monotonic() + timeout_s
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            number = _read_display_number(pipe, proc, timeout_s)
        _wait_until_open(f":{number}", proc, deadline)
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def xvfb(display: str | None, size: tuple[int, int] = (640, 480)) -> Iterator[str]:
    """Yield ``display`` if given; else a :func:`private_xvfb` of ``size`` = (W, H), stopped on exit."""
    if display:
        yield display
        return
    with private_xvfb(size) as name:
        yield name


def _wait_until_open(display: str, proc: subprocess.Popen, deadline: float) -> None:
    """Return once an X client completes the handshake with ``display`` (python-xlib); RuntimeError
    when the server exits first or the deadline (time.monotonic()) passes."""
    from Xlib import display as xdisplay
    from Xlib.error import DisplayError

    while True:
        try:
            xdisplay.Display(display).close()
            return
        except (DisplayError, ConnectionError, OSError) as exc:
            if proc.poll() is not None:
                raise RuntimeError(f"Xvfb {display} exited with status {proc.returncode} before accepting a client")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb {display} accepted no client before the deadline: {exc}") from exc
            time.sleep(0.05)


def _read_display_number(pipe, proc: subprocess.Popen, timeout_s: float) -> int:
    """The display number Xvfb writes on its -displayfd pipe (digits and a newline)."""
    text = b""
    deadline = time.monotonic() + timeout_s
    while not text.endswith(b"\n"):
        if proc.poll() is not None:
            raise RuntimeError(f"Xvfb exited with status {proc.returncode} before reporting a display number")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Xvfb reported no display number within {timeout_s:g} s")
        if select.select([pipe], [], [], 0.1)[0]:
            chunk = pipe.read(16)
            if not chunk:  # the server closed the pipe: it is exiting, poll() will say so
                time.sleep(0.05)
            text += chunk
    return int(text)

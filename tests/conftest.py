"""Shared fixtures: headless pygame, a real Xvfb display, CUDA marker handling."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

# pygame draws to memory in tests; a test that needs a real window asks for `xvfb_display`.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def _free_display_number() -> int:
    for number in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number between :90 and :199")


@pytest.fixture()
def xvfb_display(monkeypatch):
    """Start a real Xvfb server (1280x800x24) for one test; yields its DISPLAY string.

    Sets DISPLAY for the test and for child processes, and removes
    SDL_VIDEODRIVER=dummy so pygame opens a real X window on it.
    """
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: apt-get install xvfb xdotool (./run.sh does this as root)")
    # -displayfd: the server picks a free display number itself and writes it to the pipe,
    # so parallel test runs (several engineers, xdist) cannot race for the same number
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-ac"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    number_text = b""
    deadline = time.monotonic() + 10
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        import select

        while not number_text.endswith(b"\n"):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("Xvfb did not start (no display number on -displayfd)")
            if select.select([pipe], [], [], 0.1)[0]:
                chunk = pipe.read(16)
                if not chunk:
                    continue
                number_text += chunk
    display = f":{int(number_text)}"
    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    try:
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)

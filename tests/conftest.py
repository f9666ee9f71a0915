"""Shared fixtures: headless pygame, a real Xvfb display, CUDA marker handling."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# pygame draws to memory in tests; a test that needs a real window asks for `xvfb_display`.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@pytest.fixture()
def one_torch_thread():
    """Tests share 2 cores with everything else: one torch intra-op thread for the test, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_tmp_path(tmp_path_factory, request) -> Iterator[Path]:
    """A folder for the files one test module's tests share (checkpoints, recorded sessions), removed
    when the module is done. The suite writes several GB of ResNet34 checkpoints: pytest removes a
    passing test's `tmp_path` at once (tmp_path_retention_policy = "failed" in pyproject.toml), but
    keeps `tmp_path_factory` folders to the end of the run, which filled CI's disk."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def xvfb_display(monkeypatch):
    """Start a real Xvfb server (1280x800x24) for one test (agent.io.xvfb.private_xvfb, which
    lets the server pick a free display number, so parallel runs cannot collide); yields its
    DISPLAY string.

    Sets DISPLAY for the test and for child processes, and removes
    SDL_VIDEODRIVER=dummy so pygame opens a real X window on it.
    """
    from agent.io.xvfb import private_xvfb

    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: apt-get install xvfb xdotool (./run.sh does this as root)")
    with private_xvfb(size=(1280, 800)) as display:
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
        yield display


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

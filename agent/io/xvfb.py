"""A private Xvfb X server for benchmarks and tools that need a display when there is none."""
from __future__ import annotations

import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def xvfb(display: str | None, size: tuple[int, int] = (640, 480)):
    """Use ``display`` if given; else start a private Xvfb (``size`` = W, H, 24-bit) and yield its name.

    The server is stopped on exit. Raises RuntimeError naming the fix when Xvfb is missing.
    """
    if display:
        yield display
        return
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed: apt-get install xvfb (or pass --display)")
    number = next(n for n in range(150, 250) if not Path(f"/tmp/.X{n}-lock").exists()
                  and not Path(f"/tmp/.X11-unix/X{n}").exists())
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.05)
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)

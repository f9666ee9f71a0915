"""Fixtures of the session-store tests."""
from __future__ import annotations

import subprocess

import pytest


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A real 2 MiB tmpfs mounted under tmp_path, for disk-full tests; skipped (with the reason)
    only if mounting is refused (needs root / CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full test (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)

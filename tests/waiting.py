"""Waiting on a condition in tests, instead of sleeping a guessed time.

``wait_until(condition, timeout, what)`` polls ``condition()`` until it returns something truthy and
returns that value; past ``timeout`` seconds it fails the test naming ``what`` was awaited (and the
last value seen). ``alive`` (a subprocess.Popen) stops the wait early when the process it depends on
has exited, with its exit code in the message. A sleep that *is* the behaviour under test (stall a
loop to trip a guard, hold a key for a duration) stays a sleep, with a comment saying so.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02,
               alive=None) -> T:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"waiting for {what}: the process it depends on exited with code {alive.returncode}",
                        pytrace=False)
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g} s for {what}; last seen: {last!r}", pytrace=False)
        time.sleep(interval)

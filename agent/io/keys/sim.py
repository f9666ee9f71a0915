"""In-process keys for the built-in simulator: only holds the state.

The driving loop passes ``backend.held().as_array()`` to the sim env's
``step`` (a MultiBinary(4) action in DRIVING_KEYS order).
"""
from __future__ import annotations

from agent.io.keys.base import KeyBackend


class SimKeys(KeyBackend):
    """Holds key state for the simulator; sends nothing anywhere."""

    kind = "sim"

    def _send(self, key: str, down: bool) -> None:
        pass

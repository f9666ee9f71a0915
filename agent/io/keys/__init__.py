"""Key backends behind one interface: sim, X11 (XTest), Linux uinput, Windows SendInput.

``probe_key_backend`` picks the best one for this machine and says why;
backends are imported lazily so nothing here touches X, /dev/uinput or
user32 at import time.
"""
from __future__ import annotations

import logging
import os
import sys

from agent.io.keys.base import KeyBackend, KeyMap, keys_down, keys_held_from
from agent.io.keys.sim import SimKeys

log = logging.getLogger(__name__)

BACKEND_KINDS: tuple[str, ...] = ("sim", "x11", "uinput", "windows")

__all__ = ["KeyBackend", "KeyMap", "SimKeys", "BACKEND_KINDS", "KeyBackendUnavailable",
           "make_backend", "probe_key_backend", "keys_down", "keys_held_from"]


class KeyBackendUnavailable(RuntimeError):
    """No key backend can work here; the message lists why each one cannot."""


def make_backend(kind: str, keymap: KeyMap | None = None, display_name: str | None = None) -> KeyBackend:
    """Build the backend ``kind`` (one of BACKEND_KINDS); raises if it cannot work here."""
    if kind == "sim":
        return SimKeys(keymap)
    if kind == "x11":
        from agent.io.keys.x11 import X11Keys

        return X11Keys(keymap, display_name=display_name)
    if kind == "uinput":
        from agent.io.keys.uinput import UinputKeys

        return UinputKeys(keymap)
    if kind == "windows":
        if sys.platform != "win32":
            raise KeyBackendUnavailable("the windows backend needs Windows (user32 SendInput)")
        from agent.io.keys.windows import WindowsSendInputKeys

        return WindowsSendInputKeys(keymap)
    raise ValueError(f"unknown key backend {kind!r}: choose one of {BACKEND_KINDS}")


def probe_key_backend(prefer: str | None = None, keymap: KeyMap | None = None,
                      display_name: str | None = None) -> tuple[KeyBackend, str]:
    """The best key backend available here and a human-readable reason.

    prefer: a kind from BACKEND_KINDS to try first (an error if it fails, so a
    user who asked for uinput is not silently given X11). Without it: Windows
    -> SendInput; Linux -> X11 XTest when an X display (or XWayland) is reachable
    (keys go to the focused X window, and the server keymap can be read back
    for the guard's takeover detection), else uinput (works under Wayland).
    Never falls back to "sim" for a real game: raises KeyBackendUnavailable.
    """
    if prefer is not None:
        backend = make_backend(prefer, keymap, display_name)
        return backend, f"{prefer}: requested"
    if sys.platform == "win32":
        return make_backend("windows", keymap), "windows: SendInput with scan codes (DirectInput games)"
    reasons = []
    display = display_name or os.environ.get("DISPLAY")
    if display:
        try:
            backend = make_backend("x11", keymap, display)
            why = f"x11: XTest on display {display}"
            if os.environ.get("WAYLAND_DISPLAY"):
                why += " (XWayland: reaches X clients only)"
            return backend, why
        except Exception as exc:  # noqa: BLE001 - reported below
            reasons.append(f"x11: {exc}")
    else:
        reasons.append("x11: DISPLAY is not set")
    try:
        return make_backend("uinput", keymap), "uinput: kernel virtual keyboard (/dev/uinput)"
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"uinput: {exc}")
    raise KeyBackendUnavailable("no key backend works here:\n  " + "\n  ".join(reasons))

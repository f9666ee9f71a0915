"""Linux uinput keys: a virtual keyboard made by the kernel (python-evdev UInput).

Works under X11, XWayland and Wayland alike, since the events come from a
kernel input device. When the process that owns the device dies (even by
kill -9) the kernel destroys the device and every key it held is released.
Needs write access to /dev/uinput (root, or a udev rule / the ``input`` group).
"""
from __future__ import annotations

import os

from agent.io.keys.base import KeyBackend, KeyMap
from agent.types import DRIVING_KEYS

UINPUT_PATH = "/dev/uinput"

#: X keysym names of non-letter keys -> evdev KEY_* names
_SPECIAL = {"Left": "KEY_LEFT", "Right": "KEY_RIGHT", "Up": "KEY_UP", "Down": "KEY_DOWN",
            "space": "KEY_SPACE", "End": "KEY_END", "Pause": "KEY_PAUSE"}


class UinputUnavailable(RuntimeError):
    """/dev/uinput is missing or not writable, or python-evdev is not installed."""


def uinput_problem(path: str = UINPUT_PATH) -> str | None:
    """Why uinput cannot be used here, with the fix; None when it can."""
    if not os.path.exists(path):
        return f"{path} does not exist: load the module (sudo modprobe uinput)"
    if not os.access(path, os.W_OK):
        return (f"{path} is not writable by this user: add a udev rule "
                f"(KERNEL==\"uinput\", GROUP=\"input\", MODE=\"0660\") and join the input group")
    try:
        import evdev  # noqa: F401
    except ImportError:
        return "python-evdev is not installed: pip install evdev"
    return None


def evdev_code(keysym_name: str) -> int:
    """evdev key code for an X keysym name ("Left", "w", ...); ValueError when unknown."""
    from evdev import ecodes

    name = _SPECIAL.get(keysym_name)
    if name is None and len(keysym_name) == 1 and keysym_name.isalnum():
        name = f"KEY_{keysym_name.upper()}"
    if name is None or not hasattr(ecodes, name):
        raise ValueError(f"no evdev key code for key {keysym_name!r}")
    return getattr(ecodes, name)


class UinputKeys(KeyBackend):
    """Driving keys through a uinput virtual keyboard named ``device_name``."""

    kind = "uinput"

    def __init__(self, keymap: KeyMap | None = None, device_name: str = "truckpilot-keys") -> None:
        super().__init__(keymap)
        problem = uinput_problem()
        if problem:
            raise UinputUnavailable(problem)
        from evdev import UInput, ecodes

        self._ecodes = ecodes
        self._codes = {key: evdev_code(self.keymap.physical(key)) for key in DRIVING_KEYS}
        self.device_name = device_name
        self.device = UInput({ecodes.EV_KEY: sorted(set(self._codes.values()))}, name=device_name)

    def recipe(self) -> dict:
        """The guard process hosts the device (see agent.io.guard): it can then release
        the keys when the loop stalls, and the kernel releases them if it dies."""
        return {"kind": "uinput", "keymap": dict(self.keymap.items()), "device_name": self.device_name}

    def _send(self, key: str, down: bool) -> None:
        self.device.write(self._ecodes.EV_KEY, self._codes[key], 1 if down else 0)

    def _flush(self) -> None:
        self.device.syn()

    def _close_resources(self) -> None:
        self.device.close()

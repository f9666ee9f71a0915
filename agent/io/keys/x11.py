"""X11 keys: XTest fake key events through python-xlib, and the server keymap.

``X11Keys`` presses keys as if from a keyboard attached to the X server (the
XTest virtual keyboard), so the focused window receives real KeyPress /
KeyRelease events; ``read_held_keys`` reads which driving keys are down on the
server (``query_keymap``), whoever pressed them (a person or XTest).

Measured on Xvfb (xorg-server): a key pressed through XTest stays down after
the pressing client dies, even by kill -9, as long as the server keeps running
(it only forgets key state when it resets after its last client leaves). That
is what the separate guard process (agent.io.guard) is for.
"""
from __future__ import annotations

import logging
import os

from agent.io.keys.base import KeyBackend, KeyMap, keys_held_from
from agent.types import DRIVING_KEYS, KeysHeld

log = logging.getLogger(__name__)


class X11Unavailable(RuntimeError):
    """No X display, or it lacks the XTest extension."""


def open_display(display_name: str | None = None):
    """Connect to the X server ``display_name`` (default $DISPLAY); a clear error otherwise."""
    from Xlib import display as xdisplay
    from Xlib.error import DisplayError

    name = display_name or os.environ.get("DISPLAY")
    if not name:
        raise X11Unavailable(
            "DISPLAY is not set: run under an X session (or XWayland), or start Xvfb and export DISPLAY"
        )
    try:
        return xdisplay.Display(name)
    except (DisplayError, OSError) as exc:
        raise X11Unavailable(f"cannot connect to X display {name!r}: {exc}") from exc


def abandon_display(display) -> None:
    """Close the socket of a python-xlib connection whose state is unknown (a call on it was
    cut short), without the protocol-level close, which takes the locks that may be held."""
    try:
        display.display.socket.close()
    except (AttributeError, OSError):
        pass


def keycode_for(display, keysym_name: str) -> int:
    """Keycode for an X keysym name ("Left", "w", "End"...); ValueError if unknown or unmapped."""
    from Xlib import XK

    keysym = XK.string_to_keysym(keysym_name)
    if keysym == 0:
        raise ValueError(f"unknown X keysym name {keysym_name!r} (see Xlib.XK, e.g. 'Left', 'Up', 'w')")
    keycode = display.keysym_to_keycode(keysym)
    if keycode == 0:
        raise ValueError(f"X keysym {keysym_name!r} has no keycode in this server's keyboard map")
    return keycode


def keymap_is_down(keymap_bytes, keycode: int) -> bool:
    """Whether ``keycode`` is down in a 32-byte ``query_keymap`` bit vector."""
    return bool((keymap_bytes[keycode // 8] >> (keycode % 8)) & 1)


class _SurvivesInterruptedCalls:
    """One python-xlib connection (``self.display`` to ``self.display_name``) that outlives a
    call cut short.

    Anything that cuts a call short (a Ctrl+C's KeyboardInterrupt raised inside python-xlib)
    abandons the connection: python-xlib takes its locks without try/finally, so the next call
    on it, such as the release at exit, would wait for ever (3 runs of 3 hung before this;
    tests/agent/test_agent_keys_x11.py). The next call opens a fresh connection to the same
    display first. For keys (KeyBackend records a press before sending it): a release cut
    short is sent again by ``release_all``; a press cut short may not reach the server until
    the keys next change, which after a Ctrl+C is the release on the way out.
    """

    display_name: str | None
    display: object
    _connection_broken: bool = False

    def _on_connection(self, call):
        """``call(display)`` on the live connection; its result."""
        if self._connection_broken:
            fresh = open_display(self.display_name)  # before closing the old one, so the server
            abandon_display(self.display)  # never sees its last client leave (and resets)
            self.display, self._connection_broken = fresh, False
        try:
            return call(self.display)
        except BaseException:
            self._connection_broken = True
            raise

    def _close_display(self) -> None:
        if self._connection_broken:
            abandon_display(self.display)
        else:
            self.display.close()


class X11KeymapReader(_SurvivesInterruptedCalls):
    """Reads which keys are down on the X server (its own connection; close it)."""

    def __init__(self, display_name: str | None = None) -> None:
        self.display_name = display_name or os.environ.get("DISPLAY")
        self.display = open_display(self.display_name)
        self._codes: dict[str, int] = {}

    def keycode(self, keysym_name: str) -> int:
        if keysym_name not in self._codes:
            self._codes[keysym_name] = self._on_connection(lambda display: keycode_for(display, keysym_name))
        return self._codes[keysym_name]

    def down(self, keysym_names) -> set[str]:
        """The names among ``keysym_names`` whose keys are down right now."""
        bits = self._on_connection(lambda display: display.query_keymap())
        return {name for name in keysym_names if keymap_is_down(bits, self.keycode(name))}

    def driving_keys(self, keymaps=(KeyMap.arrows(), KeyMap.wasd())) -> KeysHeld:
        """Driving keys down under any of ``keymaps`` (default: arrows or WASD)."""
        names = {phys for km in keymaps for _, phys in km.items()}
        down = self.down(names)
        return keys_held_from(
            key for km in keymaps for key, phys in km.items() if phys in down
        )

    def close(self) -> None:
        self._close_display()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_held_keys(display_name: str | None = None, keymaps=None) -> KeysHeld:
    """Driving keys held on the X server now (arrows or WASD by default).

    Used by the recorder to record what a person holds. Opens and closes its
    own connection; for polling at a frame rate keep an ``X11KeymapReader``.
    """
    with X11KeymapReader(display_name) as reader:
        return reader.driving_keys(keymaps or (KeyMap.arrows(), KeyMap.wasd()))


class X11Keys(_SurvivesInterruptedCalls, KeyBackend):
    """Driving keys through XTest on an X display (default $DISPLAY).

    The events go to whichever window has the keyboard focus, as from a real
    keyboard; focus the game window first (agent.io.window.focus_window).
    """

    kind = "x11"

    def __init__(self, keymap: KeyMap | None = None, display_name: str | None = None) -> None:
        super().__init__(keymap)
        self.display_name = display_name or os.environ.get("DISPLAY")
        self.display = open_display(self.display_name)
        if not self.display.has_extension("XTEST"):
            self.display.close()
            raise X11Unavailable(f"X display {self.display_name!r} has no XTEST extension")
        self._codes = {key: keycode_for(self.display, self.keymap.physical(key)) for key in DRIVING_KEYS}

    def _send(self, key: str, down: bool) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        kind = X.KeyPress if down else X.KeyRelease
        self._on_connection(lambda display: xtest.fake_input(display, kind, self._codes[key]))

    def _flush(self) -> None:
        self._on_connection(lambda display: display.sync())

    def recipe(self) -> dict:
        return {"kind": "x11", "display": self.display_name, "keymap": dict(self.keymap.items())}

    def guard_spec(self) -> dict:
        return self.recipe()

    def _close_resources(self) -> None:
        self._close_display()

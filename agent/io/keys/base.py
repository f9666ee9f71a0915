"""The key-backend interface and the driving-key -> physical-key map.

A backend turns the four driving keys of ``agent.types.DRIVING_KEYS``
("left", "right", "throttle", "brake") into real key events. Which physical key
each driving key means is a ``KeyMap`` (arrows by default, WASD as the
alternative); each backend translates the map's key names (X11 keysym names:
"Left", "Up", "w", ...) into its own codes.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass

from agent.types import DRIVING_KEYS, KeysHeld

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyMap:
    """Physical key name (X11 keysym name, e.g. "Left", "w") per driving key."""

    left: str = "Left"
    right: str = "Right"
    throttle: str = "Up"
    brake: str = "Down"

    @classmethod
    def arrows(cls) -> "KeyMap":
        return cls()

    @classmethod
    def wasd(cls) -> "KeyMap":
        return cls(left="a", right="d", throttle="w", brake="s")

    @classmethod
    def named(cls, name: str) -> "KeyMap":
        """"arrows" or "wasd"; anything else is a ValueError naming the choices."""
        choices = {"arrows": cls.arrows, "wasd": cls.wasd}
        if name not in choices:
            raise ValueError(f"unknown key map {name!r}: choose one of {sorted(choices)}")
        return choices[name]()

    def physical(self, key: str) -> str:
        """Physical key name for a driving key; ValueError for an unknown driving key."""
        check_driving_key(key)
        return getattr(self, key)

    def items(self) -> tuple[tuple[str, str], ...]:
        """(driving key, physical key name) in DRIVING_KEYS order."""
        return tuple((key, getattr(self, key)) for key in DRIVING_KEYS)


def check_driving_key(key: str) -> str:
    if key not in DRIVING_KEYS:
        raise ValueError(f"unknown driving key {key!r}: expected one of {DRIVING_KEYS}")
    return key


def keys_down(keys: KeysHeld) -> tuple[str, ...]:
    """The driving keys that are down in ``keys``, in DRIVING_KEYS order."""
    return tuple(key for key in DRIVING_KEYS if getattr(keys, key))


def keys_held_from(names) -> KeysHeld:
    """KeysHeld with exactly the driving keys in ``names`` down."""
    down = {check_driving_key(name) for name in names}
    return KeysHeld(**{key: key in down for key in DRIVING_KEYS})


class KeyBackend(abc.ABC):
    """Presses and releases the driving keys; remembers what it holds.

    Subclasses implement ``_send(key, down)`` for one driving key. The base
    class keeps the held set, so ``apply`` only sends the difference and
    ``release_all`` releases exactly what this backend pressed. Every backend
    is a context manager whose exit releases every key.
    """

    #: short name used by probe_key_backend and the guard process ("sim", "x11", ...)
    kind: str = "abstract"

    def __init__(self, keymap: KeyMap | None = None) -> None:
        self.keymap = keymap or KeyMap()
        self._held: set[str] = set()
        self._closed = False

    @abc.abstractmethod
    def _send(self, key: str, down: bool) -> None:
        """Send one key event for driving key ``key`` (already validated)."""

    def _flush(self) -> None:
        """Make the sent events take effect (e.g. X11 sync); default: nothing."""

    def press(self, key: str) -> None:
        check_driving_key(key)
        self._ensure_open()
        if key not in self._held:
            self._held.add(key)  # before sending: if the send is cut short, release_all still sends its release
            self._send(key, True)
            self._flush()

    def release(self, key: str) -> None:
        check_driving_key(key)
        self._ensure_open()
        if key in self._held:
            self._send(key, False)
            self._held.discard(key)
            self._flush()

    def apply(self, keys: KeysHeld) -> None:
        """Make exactly the keys in ``keys`` held: releases first, then presses."""
        self._ensure_open()
        want = set(keys_down(keys))
        changed = False
        for key in DRIVING_KEYS:
            if key in self._held and key not in want:
                self._send(key, False)
                self._held.discard(key)
                changed = True
        for key in DRIVING_KEYS:
            if key in want and key not in self._held:
                self._held.add(key)  # before sending (see press)
                changed = True
                self._send(key, True)
        if changed:
            self._flush()

    def release_all(self) -> None:
        """Release every driving key this backend holds (no-op once closed)."""
        if self._closed:
            return
        if self._held:
            for key in DRIVING_KEYS:
                if key in self._held:
                    try:
                        self._send(key, False)
                    except Exception:  # keep releasing the others
                        log.exception("failed to release %s", key)
            self._held.clear()
            self._flush()

    def force_release(self, keys: KeysHeld) -> None:
        """Send a release for each key down in ``keys``, held by this backend or not
        (the guard process releasing keys another connection pressed). Harmless
        for keys that are up."""
        if self._closed:
            return
        for key in keys_down(keys):
            try:
                self._send(key, False)
            except Exception:
                log.exception("failed to release %s", key)
            self._held.discard(key)
        self._flush()

    def force_release_all(self) -> None:
        """Send a release for every driving key, held or not (when the held state
        may be wrong). Beware: on X11 this also cancels a key a person holds."""
        self.force_release(KeysHeld(True, True, True, True))

    def held(self) -> KeysHeld:
        """What this backend believes it holds."""
        return keys_held_from(self._held)

    def recipe(self) -> dict | None:
        """JSON-able recipe to build an equivalent backend in another process
        (agent.io.guard's guard process), or None when that makes no sense (sim)."""
        return None

    def guard_spec(self) -> dict | None:
        """Recipe of a twin backend that can release *this* one's keys from the
        guard process, or None when it cannot (uinput: keys belong to the
        device's owner, so the guard process hosts the device instead) or need
        not (in-process sim)."""
        return None

    def close(self) -> None:
        """Release every key, then free the backend's resources. Idempotent."""
        if self._closed:
            return
        try:
            self.release_all()
        finally:
            self._closed = True
            self._close_resources()

    def _close_resources(self) -> None:
        """Free OS resources; default: nothing."""

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keymap={self.keymap}, held={sorted(self._held)})"

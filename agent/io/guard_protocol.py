"""The safety guard's typed vocabulary: why keys were released or the agent disengaged,
and the messages on the pipe between ``SafetyGuard`` and its guard process.

Reasons are enums; code switches on them, never on the wording of a log line. The
human-readable line (``str(disengagement)``) is built from the enum and its detail, for
logs and reports only.

Pipe encoding (version ``PROTOCOL_VERSION``): one JSON object per line (UTF-8, ``\\n``
terminated) with ``"v"`` (the version), ``"type"`` (a ``MessageType`` value) and the
message's fields; key states are ``{"left": bool, "right": bool, "throttle": bool,
"brake": bool}``, reasons are ``ReleaseReason`` values. ``decode`` turns a line back into
its dataclass and raises ``ProtocolError`` for anything else: bad JSON, another version,
an unknown type or reason, a missing, extra or mistyped field, or a message that does not
travel in that direction.

    parent -> guard  Heartbeat(keys)          alive; the keys that may be down
                     SetKeys(keys, seq)       hosted: apply this key state (also a heartbeat)
                     SetAxes(steer, throttle, brake, seq)
                                              hosted axes: hold these analog axes (also a heartbeat)
                     Unlock()                 hosted: accept presses again after a stall release
                     Quit()                   release and exit
    guard -> parent  Ready()                  the guard process runs
                     Released(reason, took_ms) it released the keys
                     Ack(seq, locked)         hosted: key state / axes ``seq`` applied (locked:
                                              refused, every key up and the axes neutral, until Unlock)
"""
from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Union

from agent.types import DRIVING_KEYS, KeysHeld

#: Version of the pipe encoding; both ends must speak the same one (2: SetAxes).
PROTOCOL_VERSION: int = 2


class ProtocolError(ValueError):
    """A pipe line that is not a valid message of this protocol version (or travels the wrong way)."""


class ReleaseReason(enum.Enum):
    """Why the guard process released the agent's keys."""

    STALL = "stall"
    """no heartbeat for ``stall_periods`` periods: the driving loop hangs or is stopped"""
    STALL_LOCKED = "stall-locked"
    """hosted: a key press refused because of an earlier stall release (until Unlock); the
    parent reports it from an ``Ack`` with ``locked``, the guard process never sends it"""
    EOF = "eof"
    """the pipe closed: the driving process exited or was killed"""
    QUIT = "quit"
    """the parent asked it to quit (``SafetyGuard.close``)"""
    SIGTERM = "sigterm"
    """the guard process was sent SIGTERM"""
    PROTOCOL_ERROR = "protocol-error"
    """the parent sent a line that is not a message of this protocol; the guard process exits"""


#: Releases caused by a stalled driving loop (a hiccup: the loop may resume soon).
STALL_RELEASES: frozenset[ReleaseReason] = frozenset({ReleaseReason.STALL, ReleaseReason.STALL_LOCKED})


class DisengageReason(enum.Enum):
    """Why the SafetyGuard is not driving (disengaged, or refused to engage)."""

    NOT_ENGAGED = "not_engaged"
    NO_FRESH_FRAMES = "no_fresh_frames"
    CAPTURE_STALE = "capture_stale"
    """the capture is unhealthy, or frozen while keys are held (detail: the problems)"""
    ESTOP = "estop"
    """an e-stop hotkey is down (detail: the keys); ends a drive"""
    TAKEOVER = "takeover"
    """a person holds a driving key the agent did not press (detail: the keys)"""
    FOCUS_LOST = "focus_lost"
    """the game window does not have the keyboard focus (the keys' focus lease lapsed)"""
    WINDOW_HIDDEN = "window_hidden"
    """the game window is unmapped or minimised (the capture waits for it to come back)"""
    WINDOW_RESIZED = "window_resized"
    """the game window changed size (the capture follows; the controller starts afresh; detail: sizes)"""
    GUARD_RELEASED = "guard_released"
    """the guard process released the keys (``Disengagement.release`` says why)"""
    GUARD_DIED = "guard_died"
    GUARD_UNRESPONSIVE = "guard_unresponsive"
    """hosted: the guard process did not acknowledge a key state in time"""
    GUARD_PROTOCOL_ERROR = "guard_protocol_error"
    """the guard process sent a line that is not a message of this protocol (detail: what)"""


_TEXT: dict[DisengageReason, Callable[["Disengagement"], str]] = {
    DisengageReason.NOT_ENGAGED: lambda d: "not engaged yet",
    DisengageReason.NO_FRESH_FRAMES: lambda d: "no fresh frames",
    DisengageReason.CAPTURE_STALE: lambda d: f"capture stale: {d.detail or 'no frames'}",
    DisengageReason.ESTOP: lambda d: f"e-stop ({d.detail})",
    DisengageReason.TAKEOVER: lambda d: f"takeover: a person pressed {d.detail}",
    DisengageReason.FOCUS_LOST: lambda d: "the game window lost the keyboard focus",
    DisengageReason.WINDOW_HIDDEN: lambda d: "the game window is hidden (unmapped or minimised)",
    DisengageReason.WINDOW_RESIZED: lambda d: f"the game window was resized{' to ' + d.detail if d.detail else ''}",
    DisengageReason.GUARD_RELEASED: lambda d: f"guard process released the keys ({d.release.value})",
    DisengageReason.GUARD_DIED: lambda d: "guard process died",
    DisengageReason.GUARD_UNRESPONSIVE: lambda d: "guard process did not answer",
    DisengageReason.GUARD_PROTOCOL_ERROR: lambda d: f"guard process broke the pipe protocol: {d.detail}",
}


@dataclass(frozen=True)
class Disengagement:
    """Why the guard stopped driving.

    reason: what decides the reaction (stop the drive, back off, wait for the person).
    detail: for people only (the keys, the capture's problems); nothing reads it back.
    release: with ``GUARD_RELEASED``, why the guard process released the keys; else None.
    """

    reason: DisengageReason
    detail: str = ""
    release: ReleaseReason | None = None

    def __post_init__(self) -> None:
        if (self.reason is DisengageReason.GUARD_RELEASED) != (self.release is not None):
            raise ValueError(f"{self.reason}: release must be given exactly with GUARD_RELEASED, "
                             f"got {self.release}")

    def __str__(self) -> str:
        return _TEXT[self.reason](self)


# ----------------------------------------------------------------------------- pipe messages


class MessageType(enum.Enum):
    """The ``"type"`` field of a pipe line."""

    HEARTBEAT = "heartbeat"
    SET_KEYS = "set_keys"
    SET_AXES = "set_axes"
    UNLOCK = "unlock"
    QUIT = "quit"
    READY = "ready"
    RELEASED = "released"
    ACK = "ack"


@dataclass(frozen=True)
class Heartbeat:
    """Parent -> guard: alive; ``keys`` may be down (released on a stall or EOF)."""

    TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    keys: KeysHeld


@dataclass(frozen=True)
class SetKeys:
    """Parent -> hosting guard: apply ``keys``; answered by ``Ack(seq)``. Also a heartbeat."""

    TYPE: ClassVar[MessageType] = MessageType.SET_KEYS
    keys: KeysHeld
    seq: int


@dataclass(frozen=True)
class SetAxes:
    """Parent -> guard hosting the analog output: hold these axes (steer [-1, 1] + = right, pedals
    [0, 1]); answered by ``Ack(seq)``. Also a heartbeat."""

    TYPE: ClassVar[MessageType] = MessageType.SET_AXES
    steer: float
    throttle: float
    brake: float
    seq: int


@dataclass(frozen=True)
class Unlock:
    """Parent -> hosting guard: accept key presses again after a stall release."""

    TYPE: ClassVar[MessageType] = MessageType.UNLOCK


@dataclass(frozen=True)
class Quit:
    """Parent -> guard: release the keys and exit."""

    TYPE: ClassVar[MessageType] = MessageType.QUIT


@dataclass(frozen=True)
class Ready:
    """Guard -> parent: started and watching."""

    TYPE: ClassVar[MessageType] = MessageType.READY


@dataclass(frozen=True)
class Released:
    """Guard -> parent: released the keys for ``reason``; the release took ``took_ms`` milliseconds."""

    TYPE: ClassVar[MessageType] = MessageType.RELEASED
    reason: ReleaseReason
    took_ms: float


@dataclass(frozen=True)
class Ack:
    """Guard -> parent: key state ``seq`` applied; ``locked``: presses refused (every key up) until Unlock."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    seq: int
    locked: bool = False


ToGuard = Union[Heartbeat, SetKeys, SetAxes, Unlock, Quit]
ToParent = Union[Ready, Released, Ack]
Message = Union[ToGuard, ToParent]

TO_GUARD: tuple[type, ...] = (Heartbeat, SetKeys, SetAxes, Unlock, Quit)
TO_PARENT: tuple[type, ...] = (Ready, Released, Ack)
_BY_TYPE: dict[MessageType, type] = {cls.TYPE: cls for cls in TO_GUARD + TO_PARENT}


def _keys_out(keys: KeysHeld) -> dict[str, bool]:
    return {name: bool(getattr(keys, name)) for name in DRIVING_KEYS}


def _keys_in(value) -> KeysHeld:
    if not isinstance(value, dict) or set(value) != set(DRIVING_KEYS) \
            or not all(isinstance(v, bool) for v in value.values()):
        raise ProtocolError(f"keys must be an object of {len(DRIVING_KEYS)} booleans {list(DRIVING_KEYS)}, "
                            f"got {value!r}")
    return KeysHeld(**value)


def _seq_in(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"seq must be an integer >= 0, got {value!r}")
    return value


def _bool_in(value) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"expected a boolean, got {value!r}")
    return value


def _ms_in(value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ProtocolError(f"took_ms must be a finite number >= 0, got {value!r}")
    return float(value)


def _axis_in(lo: float) -> Callable:
    def parse(value) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or not lo <= value <= 1.0:
            raise ProtocolError(f"an axis must be a finite number in [{lo:g}, 1], got {value!r}")
        return float(value)
    return parse


def _reason_in(value) -> ReleaseReason:
    try:
        return ReleaseReason(value)
    except ValueError:
        raise ProtocolError(f"unknown release reason {value!r} (known: "
                            f"{', '.join(r.value for r in ReleaseReason)})") from None


#: Per message class: its fields as (name, to JSON, from JSON).
_FIELDS: dict[type, tuple[tuple[str, Callable, Callable], ...]] = {
    Heartbeat: (("keys", _keys_out, _keys_in),),
    SetKeys: (("keys", _keys_out, _keys_in), ("seq", int, _seq_in)),
    SetAxes: (("steer", float, _axis_in(-1.0)), ("throttle", float, _axis_in(0.0)), ("brake", float, _axis_in(0.0)),
              ("seq", int, _seq_in)),
    Unlock: (),
    Quit: (),
    Ready: (),
    Released: (("reason", lambda r: r.value, _reason_in), ("took_ms", lambda ms: round(float(ms), 3), _ms_in)),
    Ack: (("seq", int, _seq_in), ("locked", bool, _bool_in)),
}


def encode(message: Message) -> bytes:
    """One pipe line (UTF-8 JSON, newline-terminated) for ``message``."""
    fields = _FIELDS.get(type(message))
    if fields is None:
        raise TypeError(f"not a guard pipe message: {message!r}")
    body = {"v": PROTOCOL_VERSION, "type": message.TYPE.value}
    for name, out, _ in fields:
        body[name] = out(getattr(message, name))
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str, accept: tuple[type, ...] = TO_GUARD + TO_PARENT) -> Message:
    """The message on one pipe line; ``accept``: the message classes allowed here
    (``TO_GUARD`` in the guard process, ``TO_PARENT`` in SafetyGuard). Raises ProtocolError."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a JSON message: {text.strip()[:80]!r} ({exc.msg})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"not a JSON object: {text.strip()[:80]!r}")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {body.get('v')!r}, expected {PROTOCOL_VERSION}")
    try:
        kind = MessageType(body.get("type"))
    except ValueError:
        raise ProtocolError(f"unknown message type {body.get('type')!r} (known: "
                            f"{', '.join(t.value for t in MessageType)})") from None
    cls = _BY_TYPE[kind]
    if cls not in accept:
        raise ProtocolError(f"a {kind.value!r} message does not travel this way")
    fields = _FIELDS[cls]
    names = {name for name, _, _ in fields}
    extra, missing = set(body) - names - {"v", "type"}, names - set(body)
    if extra or missing:
        raise ProtocolError(f"{kind.value!r} message: missing fields {sorted(missing)}, unknown fields {sorted(extra)}")
    return cls(**{name: parse(body[name]) for name, _, parse in fields})

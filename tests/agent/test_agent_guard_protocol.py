"""The guard pipe's typed messages: every message round-trips through encode/decode, anything
else (another version, an unknown type or reason, a bad field, the wrong direction) is a
ProtocolError, and both ends act on a broken line instead of skipping it."""
from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys

import pytest

from agent.io.guard import SafetyGuard
from agent.io.guard_protocol import (
    PROTOCOL_VERSION,
    TO_GUARD,
    TO_PARENT,
    Ack,
    DisengageReason,
    Disengagement,
    Heartbeat,
    MessageType,
    ProtocolError,
    Quit,
    Ready,
    ReleaseReason,
    Released,
    SetAxes,
    SetKeys,
    Unlock,
    decode,
    encode,
)
from agent.io.keys import SimKeys
from agent.types import KeysHeld

ALL_KEYS = [KeysHeld(*bits) for bits in itertools.product((False, True), repeat=4)]
MESSAGES = (
    [Heartbeat(k) for k in ALL_KEYS]
    + [SetKeys(k, seq) for k in ALL_KEYS for seq in (0, 1, 2**40)]
    + [SetAxes(steer, throttle, brake, 3) for steer in (-1.0, 0.0, 0.25) for throttle in (0.0, 0.5)
       for brake in (0.0, 1.0)]
    + [Unlock(), Quit(), Ready()]
    + [Released(reason, ms) for reason in ReleaseReason for ms in (0.0, 1.5, 12.345)]
    + [Ack(seq, locked) for seq in (0, 7) for locked in (False, True)]
)


@pytest.mark.parametrize("message", MESSAGES, ids=repr)
def test_every_message_round_trips(message):
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    body = json.loads(line)
    assert body["v"] == PROTOCOL_VERSION and body["type"] == message.TYPE.value
    assert decode(line) == message
    assert decode(line.decode()) == message  # text lines too
    allowed = TO_GUARD if type(message) in TO_GUARD else TO_PARENT
    assert decode(line, allowed) == message


def test_every_type_and_reason_is_covered():
    assert {cls.TYPE for cls in TO_GUARD + TO_PARENT} == set(MessageType)
    assert {type(m) for m in MESSAGES} == set(TO_GUARD + TO_PARENT)
    assert {m.reason for m in MESSAGES if isinstance(m, Released)} == set(ReleaseReason)


def _line(**body) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, **body}).encode() + b"\n"


@pytest.mark.parametrize("line, error", [
    (b"H 1000\n", "not a JSON message"),  # the old text protocol
    (b"[1, 2]\n", "not a JSON object"),
    (json.dumps({"v": 99, "type": "quit"}).encode(), "protocol version 99"),
    (json.dumps({"type": "quit"}).encode(), "protocol version None"),
    (_line(type="dance"), "unknown message type 'dance'"),
    (_line(type="released", reason="bored", took_ms=1.0), "unknown release reason 'bored'"),
    (_line(type="released", took_ms=1.0), r"missing fields \['reason'\]"),
    (_line(type="quit", now=True), r"unknown fields \['now'\]"),
    (_line(type="heartbeat", keys="1000"), "keys must be"),
    (_line(type="heartbeat", keys={"left": 1, "right": 0, "throttle": 0, "brake": 0}), "keys must be"),
    (_line(type="heartbeat", keys={"left": True, "right": False, "throttle": False}), "keys must be"),
    (_line(type="ack", seq=-1, locked=False), "seq must be"),
    (_line(type="ack", seq=True, locked=False), "seq must be"),
    (_line(type="ack", seq=1, locked="yes"), "expected a boolean"),
    (_line(type="released", reason="stall", took_ms=float("nan")), "took_ms must be"),
    (_line(type="set_axes", steer=1.5, throttle=0.0, brake=0.0, seq=1), "an axis must be"),
    (_line(type="set_axes", steer=0.0, throttle=-0.1, brake=0.0, seq=1), "an axis must be"),
    (_line(type="set_axes", steer=0.0, throttle=0.0, brake=True, seq=1), "an axis must be"),
])
def test_a_line_out_of_protocol_is_a_clear_error(line, error):
    with pytest.raises(ProtocolError, match=error):
        decode(line)


@pytest.mark.parametrize("message, accept", [(Ack(1), TO_GUARD), (Released(ReleaseReason.STALL, 1.0), TO_GUARD),
                                             (Heartbeat(KeysHeld()), TO_PARENT), (Quit(), TO_PARENT)])
def test_a_message_going_the_wrong_way_is_an_error(message, accept):
    with pytest.raises(ProtocolError, match="does not travel this way"):
        decode(encode(message), accept)


def test_encode_refuses_what_is_not_a_message():
    with pytest.raises(TypeError):
        encode("H 1000")


def test_every_disengagement_has_a_line_for_people_and_release_goes_with_guard_released():
    for reason in DisengageReason:
        release = ReleaseReason.STALL if reason is DisengageReason.GUARD_RELEASED else None
        text = str(Disengagement(reason, "Left", release))
        assert text and "DisengageReason" not in text
    assert str(Disengagement(DisengageReason.ESTOP, "End")) == "e-stop (End)"
    assert str(Disengagement(DisengageReason.GUARD_RELEASED, release=ReleaseReason.STALL)) \
        == "guard process released the keys (stall)"
    with pytest.raises(ValueError):
        Disengagement(DisengageReason.GUARD_RELEASED)
    with pytest.raises(ValueError):
        Disengagement(DisengageReason.TAKEOVER, "Left", ReleaseReason.EOF)


def test_guard_process_releases_and_exits_on_a_line_out_of_protocol():
    """The guard process does not skip a line it cannot read: it releases the keys, says so, and exits 2."""
    proc = subprocess.Popen([sys.executable, "-m", "agent.io.guard", "--spec", json.dumps({"kind": "sim"}),
                             "--period", "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert decode(proc.stdout.readline(), TO_PARENT) == Ready()
        proc.stdin.write(encode(Heartbeat(KeysHeld(left=True))))
        proc.stdin.write(_line(type="heartbeat", keys={"left": True}))
        proc.stdin.flush()
        released = decode(proc.stdout.readline(), TO_PARENT)
        assert isinstance(released, Released) and released.reason is ReleaseReason.PROTOCOL_ERROR
        assert proc.wait(timeout=10) == 2
        assert b"keys must be" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_guard_process_that_is_not_hosting_refuses_key_states():
    proc = subprocess.Popen([sys.executable, "-m", "agent.io.guard", "--spec", json.dumps({"kind": "sim"}),
                             "--period", "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert decode(proc.stdout.readline(), TO_PARENT) == Ready()
        proc.stdin.write(encode(SetKeys(KeysHeld(left=True), 1)))
        proc.stdin.flush()
        released = decode(proc.stdout.readline(), TO_PARENT)
        assert isinstance(released, Released) and released.reason is ReleaseReason.PROTOCOL_ERROR
        assert proc.wait(timeout=10) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_safety_guard_disengages_on_news_it_cannot_read_and_on_a_release():
    """The parent's side: a line from the guard process out of protocol disengages with
    GUARD_PROTOCOL_ERROR (and blocks the next engage); a Released disengages with its reason."""
    with SafetyGuard(SimKeys(), 0.05) as guard:
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(throttle=True)) == KeysHeld(throttle=True)
        guard._pump_news(io.BytesIO(_line(type="released", reason="bored", took_ms=1.0)))
        assert guard.apply(KeysHeld(throttle=True)) == KeysHeld() and not guard.engaged
        assert guard.disengagement.reason is DisengageReason.GUARD_PROTOCOL_ERROR
        assert "unknown release reason 'bored'" in guard.disengagement.detail

        guard._pump_news(io.BytesIO(b"RELEASED stall 1.0\n"))
        assert not guard.engage(frame_fresh=True)
        assert guard.disengagement.reason is DisengageReason.GUARD_PROTOCOL_ERROR

        assert guard.engage(frame_fresh=True)  # that news is read: the next try may engage
        guard._pump_news(io.BytesIO(encode(Released(ReleaseReason.EOF, 0.5))))
        assert guard.apply(KeysHeld(left=True)) == KeysHeld()
        assert guard.disengagement == Disengagement(DisengageReason.GUARD_RELEASED, release=ReleaseReason.EOF)
        assert guard.events[-1] == "disengaged: guard process released the keys (eof)"

"""Backend-independent key logic (SimKeys), Windows SendInput packing (mocked),
uinput (only where /dev/uinput is usable)."""
from __future__ import annotations

import ctypes

import pytest

from agent.io.keys import KeyMap, SimKeys, make_backend
from agent.io.keys.uinput import uinput_problem
from agent.io.keys.windows import (INPUT, INPUT_KEYBOARD, KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP,
                                KEYEVENTF_SCANCODE, WindowsSendInputKeys, keyboard_input)
from agent.types import KeysHeld


class RecordingKeys(SimKeys):
    def __init__(self, keymap=None):
        super().__init__(keymap)
        self.sent = []

    def _send(self, key, down):
        self.sent.append((key, down))


def test_apply_sends_only_the_difference_and_release_all():
    keys = RecordingKeys()
    keys.apply(KeysHeld(left=True, throttle=True))
    keys.apply(KeysHeld(left=True, throttle=True))
    keys.apply(KeysHeld(right=True, throttle=True))
    assert keys.sent == [("left", True), ("throttle", True), ("left", False), ("right", True)]
    assert keys.held() == KeysHeld(right=True, throttle=True)
    assert list(keys.held().as_array()) == [0, 1, 1, 0]
    keys.release_all()
    assert keys.held() == KeysHeld() and keys.sent[-2:] == [("right", False), ("throttle", False)]
    keys.close()
    keys.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        keys.press("left")


def test_unknown_keys_and_keymaps_are_clear_errors():
    with pytest.raises(ValueError, match="unknown driving key 'jump'"):
        SimKeys().press("jump")
    with pytest.raises(ValueError, match="arrows"):
        KeyMap.named("dvorak")
    with pytest.raises(ValueError, match="unknown key backend"):
        make_backend("telepathy")


# --- Windows: SendInput cannot run on Linux, so it is MOCKED here: the test checks the
# --- scan codes, flags and the INPUT struct bytes that would be handed to user32.SendInput.
def test_windows_input_struct_layout_matches_win64():
    assert ctypes.sizeof(INPUT) == (40 if ctypes.sizeof(ctypes.c_void_p) == 8 else 28)
    assert INPUT.u.offset == (8 if ctypes.sizeof(ctypes.c_void_p) == 8 else 4)


def test_windows_scan_codes_and_flags_via_mocked_sendinput():
    calls = []

    def fake_send_input(count, events, size):  # stands in for user32.SendInput
        assert size == ctypes.sizeof(INPUT)
        for i in range(count):
            e = events[i]
            calls.append((e.type, e.ki.wVk, e.ki.wScan, e.ki.dwFlags))
        return count

    keys = WindowsSendInputKeys(send_input=fake_send_input)
    keys.apply(KeysHeld(left=True, throttle=True))
    keys.release_all()
    sc, ext, up = KEYEVENTF_SCANCODE, KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP
    assert calls == [
        (INPUT_KEYBOARD, 0, 0x4B, sc | ext),       # Left down (E0 4B)
        (INPUT_KEYBOARD, 0, 0x48, sc | ext),       # Up down (E0 48)
        (INPUT_KEYBOARD, 0, 0x4B, sc | ext | up),  # Left up
        (INPUT_KEYBOARD, 0, 0x48, sc | ext | up),  # Up up
    ]
    wasd = []
    keys = WindowsSendInputKeys(KeyMap.wasd(), send_input=lambda n, ev, size: wasd.append(
        (ev[0].ki.wScan, ev[0].ki.dwFlags)) or n)
    keys.press("throttle")
    keys.press("brake")
    assert wasd == [(0x11, sc), (0x1F, sc)]  # W, S: not extended


def test_windows_raw_bytes_of_a_key_up():
    event = keyboard_input("Down", down=False)
    raw = bytes(event)
    assert int.from_bytes(raw[0:4], "little") == INPUT_KEYBOARD
    off = INPUT.u.offset
    assert int.from_bytes(raw[off:off + 2], "little") == 0           # wVk
    assert int.from_bytes(raw[off + 2:off + 4], "little") == 0x50    # wScan
    assert int.from_bytes(raw[off + 4:off + 8], "little") == KEYEVENTF_SCANCODE | KEYEVENTF_EXTENDEDKEY | KEYEVENTF_KEYUP


def test_windows_sendinput_failure_is_reported():
    keys = WindowsSendInputKeys(send_input=lambda n, ev, size: 0)
    with pytest.raises(OSError, match="administrator"):
        keys.press("left")


@pytest.mark.skipif(uinput_problem() is not None, reason=f"uinput not usable here: {uinput_problem()}")
def test_uinput_keys_press_and_release():
    import evdev

    from agent.io.keys.uinput import UinputKeys

    with UinputKeys(device_name="truckpilot-test-keys") as keys:
        device = next(evdev.InputDevice(p) for p in evdev.list_devices()
                      if evdev.InputDevice(p).name == "truckpilot-test-keys")
        keys.press("left")
        assert evdev.ecodes.KEY_LEFT in device.active_keys()
        keys.release_all()
        assert device.active_keys() == []


def test_windows_keyboard_reader_with_a_fake_getasynckeystate_drives_the_guard():
    """GetAsyncKeyState is MOCKED (no Windows here): the guard's e-stop / takeover logic on
    top of Win32KeyboardReader, with SendInput also mocked."""
    from agent.io.guard import GuardConfig, SafetyGuard
    from agent.io.keys.windows import VIRTUAL_KEYS, Win32KeyboardReader

    down_vks: set[int] = set()
    reader = Win32KeyboardReader(lambda vk: 0x8000 if vk in down_vks else 0)

    def fake_send_input(count, events, size):  # keep the fake keyboard in step with our presses
        for i in range(count):
            vk = {0x4B: 0x25, 0x4D: 0x27, 0x48: 0x26, 0x50: 0x28}[events[i].ki.wScan]
            (down_vks.discard if events[i].ki.dwFlags & KEYEVENTF_KEYUP else down_vks.add)(vk)
        return count

    backend = WindowsSendInputKeys(send_input=fake_send_input)
    with SafetyGuard(backend, 0.05, config=GuardConfig(guard_process=False), keyboard=reader) as guard:
        assert reader.down(["Left", "End"]) == set()
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(left=True)) == KeysHeld(left=True)  # our own key: no takeover
        down_vks.add(VIRTUAL_KEYS["s"])  # a person presses S
        assert guard.apply(KeysHeld(left=True)) == KeysHeld() and guard.disengage_reason.startswith("takeover")
        assert VIRTUAL_KEYS["Left"] not in down_vks  # the agent's Left was released
        down_vks.clear()
        assert guard.engage(frame_fresh=True)
        down_vks.add(VIRTUAL_KEYS["End"])
        guard.apply(KeysHeld(throttle=True))
        assert guard.disengage_reason == "e-stop (End)"
    with pytest.raises(ValueError, match="no virtual-key code"):
        reader.down(["F13"])


class RecipeOnlyKeys(SimKeys):
    """Like uinput: can be rebuilt elsewhere (recipe) but not released from outside (no guard_spec)."""

    def recipe(self):
        return {"kind": "sim"}


def test_backends_without_outside_release_are_hosted_by_the_guard_process_automatically():
    from agent.io.guard import SafetyGuard

    with SafetyGuard(RecipeOnlyKeys(), 0.05) as guard:
        assert guard.hosted and guard.backend.inner_kind == "sim" and guard.guard_pid
        assert guard.engage(frame_fresh=True)
        assert guard.apply(KeysHeld(left=True)) == KeysHeld(left=True)
    with SafetyGuard(SimKeys(), 0.05) as guard:  # plain sim: in-process, no guard process
        assert not guard.hosted and guard.guard_pid is None


@pytest.mark.skipif(uinput_problem() is not None, reason=f"uinput not usable here: {uinput_problem()}")
def test_uinput_keys_are_hosted_and_released_on_stall():
    import time

    import evdev

    from agent.io.guard import SafetyGuard
    from agent.io.keys.uinput import UinputKeys

    guard = SafetyGuard(UinputKeys(device_name="truckpilot-hosted-test"), 0.05)
    try:
        assert guard.hosted
        device = next(evdev.InputDevice(p) for p in evdev.list_devices()
                      if evdev.InputDevice(p).name == "truckpilot-hosted-test")
        guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(left=True))
        assert evdev.ecodes.KEY_LEFT in device.active_keys()
        time.sleep(0.3)  # stall > 3 periods
        assert device.active_keys() == []
    finally:
        guard.close()

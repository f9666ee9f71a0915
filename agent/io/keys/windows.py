"""Windows keys: ``SendInput`` with hardware scan codes (KEYEVENTF_SCANCODE).

DirectInput games (ETS2/ATS among them) read the keyboard by scan code and
ignore virtual-key events, so every event here carries a set-1 scan code.
This module cannot run on this project's Linux machines: its tests check the
scan-code table and the INPUT struct packing against a mocked ``SendInput``.
"""
from __future__ import annotations

import ctypes

from agent.io.keys.base import KeyBackend, KeyMap
from agent.types import DRIVING_KEYS

INPUT_KEYBOARD = 1
KEYEVENTF_EXTENDEDKEY = 0x0001
KEYEVENTF_KEYUP = 0x0002
KEYEVENTF_SCANCODE = 0x0008

#: X keysym name -> (set-1 scan code, extended key?). Arrows are E0-prefixed (extended).
SCAN_CODES: dict[str, tuple[int, bool]] = {
    "Left": (0x4B, True), "Right": (0x4D, True), "Up": (0x48, True), "Down": (0x50, True),
    "w": (0x11, False), "a": (0x1E, False), "s": (0x1F, False), "d": (0x20, False),
    "space": (0x39, False), "End": (0x4F, True), "Pause": (0x45, False),
}

# Fixed-width types so the layout matches Windows on any host (DWORD is 32-bit;
# ULONG_PTR is pointer-sized): sizeof(INPUT) is 40 on 64-bit, 28 on 32-bit.
DWORD = ctypes.c_uint32
WORD = ctypes.c_uint16
LONG = ctypes.c_int32
ULONG_PTR = ctypes.c_size_t


class MOUSEINPUT(ctypes.Structure):
    _fields_ = [("dx", LONG), ("dy", LONG), ("mouseData", DWORD), ("dwFlags", DWORD),
                ("time", DWORD), ("dwExtraInfo", ULONG_PTR)]


class KEYBDINPUT(ctypes.Structure):
    _fields_ = [("wVk", WORD), ("wScan", WORD), ("dwFlags", DWORD), ("time", DWORD),
                ("dwExtraInfo", ULONG_PTR)]


class HARDWAREINPUT(ctypes.Structure):
    _fields_ = [("uMsg", DWORD), ("wParamL", WORD), ("wParamH", WORD)]


class _INPUTUNION(ctypes.Union):
    _fields_ = [("mi", MOUSEINPUT), ("ki", KEYBDINPUT), ("hi", HARDWAREINPUT)]


class INPUT(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("type", DWORD), ("u", _INPUTUNION)]


def scan_code_for(keysym_name: str) -> tuple[int, bool]:
    """(scan code, extended) for a key name; ValueError naming the known keys."""
    try:
        return SCAN_CODES[keysym_name]
    except KeyError:
        raise ValueError(f"no scan code for key {keysym_name!r}; known: {sorted(SCAN_CODES)}") from None


def keyboard_input(keysym_name: str, down: bool) -> INPUT:
    """One INPUT record: a scan-code key event (wVk = 0)."""
    scan, extended = scan_code_for(keysym_name)
    flags = KEYEVENTF_SCANCODE | (KEYEVENTF_EXTENDEDKEY if extended else 0) | (0 if down else KEYEVENTF_KEYUP)
    event = INPUT(type=INPUT_KEYBOARD)
    event.ki = KEYBDINPUT(wVk=0, wScan=scan, dwFlags=flags, time=0, dwExtraInfo=0)
    return event


def _default_send_input():
    user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
    fn = user32.SendInput
    fn.argtypes = [ctypes.c_uint, ctypes.POINTER(INPUT), ctypes.c_int]
    fn.restype = ctypes.c_uint
    return fn


class WindowsSendInputKeys(KeyBackend):
    """Driving keys via user32 SendInput with scan codes.

    send_input: callable(count, INPUT array, sizeof(INPUT)) -> number sent;
    default user32.SendInput (Windows only). Tests pass a fake.
    """

    kind = "windows"

    def __init__(self, keymap: KeyMap | None = None, send_input=None) -> None:
        super().__init__(keymap)
        for key in DRIVING_KEYS:
            scan_code_for(self.keymap.physical(key))  # fail early on an unmappable key
        self._send_input = send_input or _default_send_input()

    def _send(self, key: str, down: bool) -> None:
        events = (INPUT * 1)(keyboard_input(self.keymap.physical(key), down))
        sent = self._send_input(1, events, ctypes.sizeof(INPUT))
        if sent != 1:
            err = ctypes.get_last_error() if hasattr(ctypes, "get_last_error") else 0
            raise OSError(f"SendInput sent {sent} of 1 events for {key!r} (error {err}); "
                          "is the game running as administrator? run TruckPilot elevated too")

    def recipe(self) -> dict:
        return {"kind": "windows", "keymap": dict(self.keymap.items())}

    def guard_spec(self) -> dict:
        return self.recipe()


#: X keysym name -> Windows virtual-key code, for reading the keyboard state
VIRTUAL_KEYS: dict[str, int] = {
    "Left": 0x25, "Up": 0x26, "Right": 0x27, "Down": 0x28, "End": 0x23, "Pause": 0x13, "space": 0x20,
    "w": 0x57, "a": 0x41, "s": 0x53, "d": 0x44,
}


class Win32KeyboardReader:
    """Which keys are down on Windows (user32.GetAsyncKeyState), for the safety guard's
    e-stop hotkey and takeover detection: ``down(names) -> set[str]``.

    Keys injected with SendInput read as down too, as XTest keys do on X11, so the
    guard's "down but not pressed by the agent" rule works the same way.
    get_async_key_state: injectable (tests on Linux pass a fake).
    """

    def __init__(self, get_async_key_state=None) -> None:
        if get_async_key_state is None:
            get_async_key_state = ctypes.WinDLL("user32").GetAsyncKeyState  # type: ignore[attr-defined]
        self._state = get_async_key_state

    def down(self, keysym_names) -> set[str]:
        out = set()
        for name in keysym_names:
            vk = VIRTUAL_KEYS.get(name)
            if vk is None:
                raise ValueError(f"no virtual-key code for {name!r}; known: {sorted(VIRTUAL_KEYS)}")
            if self._state(vk) & 0x8000:
                out.add(name)
        return out

    def close(self) -> None:
        pass

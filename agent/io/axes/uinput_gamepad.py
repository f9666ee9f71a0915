"""Analog steering and pedals through a Linux uinput virtual gamepad (python-evdev).

The kernel makes an input device (``/dev/input/eventN``, and ``jsN`` through joydev)
that games read like a plugged-in pad; it works under X11, XWayland and Wayland,
with any game that binds joystick axes. When the process that owns it exits (even
by kill -9) the kernel destroys the device, so the game sees the pad unplugged
rather than an axis left deflected. Needs write access to ``/dev/uinput`` (the same
as the uinput key backend: ``agent.io.keys.uinput.uinput_problem`` says what is missing).

The device, in xpad's (the kernel's Xbox pad driver's) layout:

===========  ==================  ==============================  ===========
axis         range               carries                         neutral
===========  ==================  ==============================  ===========
ABS_X        -32767 .. 32767     steer (+ = right)               0
ABS_Y        -32767 .. 32767     nothing (always 0)              0
ABS_RX/RY    -32767 .. 32767     nothing (always 0)              0
ABS_Z        0 .. 1023           brake (left trigger)            0 (released)
ABS_RZ       0 .. 1023           throttle (right trigger)        0 (released)
===========  ==================  ==============================  ===========

``steer`` in [-1, 1] becomes ``round(steer * 32767)``, a pedal in [0, 1]
``round(pedal * 1023)``. The stick range is symmetric (not xpad's -32768..32767) so
that the centre every reader computes, (min + max) / 2, is exactly the neutral 0;
1023 steps per pedal as xpad gives an Xbox One trigger. ``fuzz`` and ``flat`` are 0:
the kernel drops changes smaller than ``fuzz`` and SDL turns ``flat`` into a dead
zone, and the controller's small corrections must reach the game. Buttons: the
eleven of an Xbox pad (BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST, BTN_TL, BTN_TR,
BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL, BTN_THUMBR), never pressed: they are
there so the device is classed a joystick. Bind the axes in the game's controller
settings (steering: X axis; throttle: RZ; brake: Z).

Why this set is a joystick, verified against the sources (the test suite runs a
Python port of both rules on ``gamepad_capabilities()``):

- systemd udev, ``src/udev/udev-builtin-input_id.c``, ``test_pointers()`` (the
  current version, with ``FOREACH_ELEMENT``; RHEL 9's v252 has the same rule
  without the last step): ``ID_INPUT_JOYSTICK=1`` when the device has ABS_X and
  ABS_Y, no stylus/pen, finger, mouse button (BTN_MOUSE..BTN_JOYSTICK-1), touch or
  INPUT_PROP_DIRECT, and at least one joystick button (BTN_JOYSTICK..BTN_DIGI-1,
  BTN_TRIGGER_HAPPY1..40, BTN_DPAD_*) or joystick axis (ABS_RX..ABS_PRESSURE-1);
  then "joystick un-detection" drops it again when it has 4 or more of 10
  well-known keyboard keys, or fewer than 2 joystick buttons plus axes. Before all
  that, a device with ABS_X, ABS_Y and ABS_Z but no EV_KEY is an accelerometer, so
  the buttons matter even though nothing presses them. Here: 11 buttons + 3 axes
  (RX, RY, RZ), no keyboard keys. ``test_key()`` finds no KEY_* (all codes are
  BTN_* above BTN_MISC and outside its high key blocks), so no ID_INPUT_KEY: nothing
  takes the pad for a keyboard.
- ``ID_INPUT_JOYSTICK`` is also what gives the person at the seat read access to the
  event node: systemd's ``70-uaccess.rules``, ``SUBSYSTEM=="input",
  ENV{ID_INPUT_JOYSTICK}=="?*", TAG+="uaccess"``.
- SDL (libsdl-org/SDL): with udev, ``src/core/linux/SDL_udev.c`` ``device_event()``
  classes a device a joystick from that ``ID_INPUT_JOYSTICK`` property, and
  ``src/joystick/linux/SDL_sysjoystick.c`` adds only devices of that class. Without
  udev it calls ``SDL_EVDEV_GuessDeviceClass`` (``src/core/linux/SDL_evdev_capabilities.c``):
  joystick when EV_ABS with ABS_X and ABS_Y and one of BTN_TRIGGER, BTN_A (=
  BTN_SOUTH), BTN_1, ABS_RX, ABS_RY, ABS_RZ, ABS_THROTTLE, ABS_RUDDER, ABS_WHEEL,
  ABS_GAS, ABS_BRAKE; X+Y+Z (or RX+RY+RZ) without EV_KEY is an accelerometer; a
  KEY_* code (as udev's ``test_key``) makes it a keyboard too. Here: joystick only.

    with UinputGamepadOutput() as pad:          # the device appears, neutral
        pad.send(Axes(steer=-0.3, throttle=0.6))
    # close(): neutral, then the device is destroyed

Not wired into ``truckpilot drive`` or the guard yet.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from agent.io.axes import NEUTRAL, AxisBackendUnavailable, Axes, AxisWriter
from agent.io.keys.uinput import uinput_problem

#: stick axes: -STICK_MAX .. STICK_MAX, 0 = centred
STICK_MAX = 32767
#: pedal (trigger) axes: 0 .. PEDAL_MAX, 0 = released
PEDAL_MAX = 1023
#: evdev names of what each part of ``Axes`` drives
STEER_AXIS, THROTTLE_AXIS, BRAKE_AXIS = "ABS_X", "ABS_RZ", "ABS_Z"
#: the axes held at 0 (a joystick has ABS_Y; RX/RY complete the pad)
IDLE_STICK_AXES = ("ABS_Y", "ABS_RX", "ABS_RY")
#: an Xbox pad's buttons as xpad reports them; never pressed
BUTTONS = ("BTN_SOUTH", "BTN_EAST", "BTN_NORTH", "BTN_WEST", "BTN_TL", "BTN_TR", "BTN_SELECT", "BTN_START",
           "BTN_MODE", "BTN_THUMBL", "BTN_THUMBR")
DEVICE_NAME = "TruckPilot virtual gamepad"
#: linux/input.h BUS_VIRTUAL: honest about what it is (no vendor's ids are borrowed)
BUS_VIRTUAL = 0x06


class GamepadUnavailable(AxisBackendUnavailable):
    """No uinput gamepad here: not Linux, /dev/uinput missing or not writable, or no python-evdev."""


def gamepad_problem(platform: str = sys.platform) -> str | None:
    """Why a uinput gamepad cannot be made here, with the fix; None when it can (nothing is created)."""
    if not platform.startswith("linux"):
        return f"uinput is Linux only (this is {platform}): use vgamepad on Windows"
    return uinput_problem()


def stick_value(x: float) -> int:
    """[-1, 1] -> -STICK_MAX .. STICK_MAX."""
    return round(x * STICK_MAX)


def pedal_value(x: float) -> int:
    """[0, 1] -> 0 .. PEDAL_MAX."""
    return round(x * PEDAL_MAX)


def gamepad_capabilities(ecodes: Any = None) -> dict[int, list]:
    """The ``events`` dict for ``evdev.UInput``: {EV_KEY: button codes, EV_ABS: [(code, AbsInfo), ...]}."""
    if ecodes is None:
        from evdev import ecodes
    from evdev import AbsInfo

    def stick(name: str) -> tuple[int, AbsInfo]:
        return getattr(ecodes, name), AbsInfo(value=0, min=-STICK_MAX, max=STICK_MAX, fuzz=0, flat=0, resolution=0)

    def pedal(name: str) -> tuple[int, AbsInfo]:
        return getattr(ecodes, name), AbsInfo(value=0, min=0, max=PEDAL_MAX, fuzz=0, flat=0, resolution=0)

    axes = [stick(STEER_AXIS)] + [stick(n) for n in IDLE_STICK_AXES] + [pedal(BRAKE_AXIS), pedal(THROTTLE_AXIS)]
    return {ecodes.EV_KEY: [getattr(ecodes, n) for n in BUTTONS], ecodes.EV_ABS: sorted(axes, key=lambda a: a[0])}


class UinputGamepadOutput(AxisWriter):
    """A uinput virtual gamepad; an ``AxisOutput``. ``last``: the axes written last.

    ``uinput_factory(events, name=, vendor=, product=, version=, bustype=, phys=)``
    makes the device (default ``evdev.UInput``, after checking /dev/uinput); it is a
    parameter so tests, where /dev/uinput does not exist, can record the writes.
    """

    kind = "uinput-gamepad"

    def __init__(self, device_name: str = DEVICE_NAME, *, vendor: int = 0, product: int = 0, version: int = 1,
                 bustype: int = BUS_VIRTUAL, uinput_factory: Callable[..., Any] | None = None) -> None:
        if uinput_factory is None:
            problem = gamepad_problem()
            if problem:
                raise GamepadUnavailable(f"no uinput gamepad: {problem}")
            from evdev import UInput

            uinput_factory = UInput
        from evdev import ecodes

        self._ev_abs = ecodes.EV_ABS
        self._codes = {name: getattr(ecodes, name) for name in (STEER_AXIS, THROTTLE_AXIS, BRAKE_AXIS)}
        self.device_name = device_name
        self._identity = {"vendor": vendor, "product": product, "version": version, "bustype": bustype}
        self.device = uinput_factory(gamepad_capabilities(ecodes), name=device_name, vendor=vendor, product=product,
                                     version=version, bustype=bustype, phys="truckpilot/gamepad")
        self.last = NEUTRAL
        self._closed = False
        self._write(NEUTRAL)

    def recipe(self) -> dict:
        """How the safety guard's process makes the same pad to hold the axes itself (a uinput device
        belongs to the process that made it, so no other can centre this one): JSON-ready, for
        ``agent.io.guard.axes_from_spec``."""
        return {"kind": self.kind, "device_name": self.device_name, **self._identity}

    def _write(self, axes: Axes) -> None:
        if self._closed:
            raise RuntimeError(f"uinput gamepad {self.device_name!r} is closed; open a new one")
        write, ev_abs, codes = self.device.write, self._ev_abs, self._codes
        write(ev_abs, codes[STEER_AXIS], stick_value(axes.steer))
        write(ev_abs, codes[THROTTLE_AXIS], pedal_value(axes.throttle))
        write(ev_abs, codes[BRAKE_AXIS], pedal_value(axes.brake))
        self.device.syn()  # one report: the game sees the three values together
        self.last = axes

    def close(self) -> None:
        """Go neutral and destroy the device. Closing twice is a no-op."""
        if self._closed:
            return
        try:
            self._write(NEUTRAL)
        finally:
            self._closed = True
            self.device.close()



__all__ = ["UinputGamepadOutput", "GamepadUnavailable", "gamepad_capabilities", "gamepad_problem", "stick_value",
           "pedal_value", "STICK_MAX", "PEDAL_MAX", "STEER_AXIS", "THROTTLE_AXIS", "BRAKE_AXIS", "BUTTONS"]

"""A joystick as the sim window's analog input (sim.joystick), read through pygame's joystick API.

No joystick is plugged into the test machine, and /dev/uinput does not exist, so the device is
SDL's own virtual joystick (SDL_JoystickAttachVirtual, called through ctypes on the SDL2 library
that pygame loaded): pygame reads it through the same SDL joystick API as a real pad, only the
kernel device is missing."""
from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys

import pytest

from sim.joystick import JoystickInput, JoystickLayout, strongest
from sim.scs_controls import ControlsReading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDL_JOYSTICK_TYPE_GAMECONTROLLER = 1


@pytest.fixture()
def virtual_pad():
    """An Xbox-like virtual joystick (6 axes, 11 buttons): yields a function setting axis i to a raw
    SDL value (-32768..32767), applied at the next event pump."""
    import pygame

    pygame.display.init()  # the event pump that updates joystick state needs it (SDL_VIDEODRIVER=dummy here)
    pygame.joystick.init()
    libs = glob.glob(os.path.join(os.path.dirname(pygame.__file__), "..", "pygame.libs", "libSDL2-2*"))
    sdl = ctypes.CDLL(libs[0]) if libs else ctypes.CDLL("libSDL2-2.0.so.0")
    sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
    sdl.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
    sdl.SDL_JoystickDetachVirtual.argtypes = [ctypes.c_int]
    index = sdl.SDL_JoystickAttachVirtual(SDL_JOYSTICK_TYPE_GAMECONTROLLER, 6, 11, 1)
    assert index >= 0, "SDL could not attach a virtual joystick"
    handle = sdl.SDL_JoystickOpen(index)

    def set_axis(axis: int, raw: int) -> None:
        sdl.SDL_JoystickSetVirtualAxis(handle, axis, raw)

    for axis in range(6):  # released: sticks centred, triggers at rest (-1)
        set_axis(axis, -32768 if axis in (2, 5) else 0)
    yield set_axis
    sdl.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
    sdl.SDL_JoystickClose(handle)
    sdl.SDL_JoystickDetachVirtual(index)
    pygame.joystick.quit()
    pygame.display.quit()


def pumped(js: JoystickInput) -> ControlsReading:
    import pygame

    pygame.event.pump()
    return js.read()


def test_the_pads_stick_and_triggers_are_steering_and_pedals(virtual_pad):
    js = JoystickInput.open("auto")
    assert js is not None and js.joystick.get_numaxes() == 6
    assert pumped(js) == ControlsReading(0.0, 0.0, 0.0, 0.0)  # at rest: nothing
    virtual_pad(0, 16384)   # stick half right
    virtual_pad(5, 32767)   # right trigger (RT, ABS_RZ) fully in: accelerator
    virtual_pad(2, 0)       # left trigger (LT, ABS_Z) half in: brake
    r = pumped(js)
    assert r.steering == pytest.approx(0.5, abs=1e-3) and r.aforward == pytest.approx(1.0, abs=1e-3)
    assert r.abackward == pytest.approx(0.5, abs=1e-3)
    virtual_pad(0, -1000)   # stick drift inside the dead zone reads centred
    assert pumped(js).steering == 0.0
    js.close()


def test_layouts_open_and_strongest():
    assert JoystickLayout.parse("0,1,2") == JoystickLayout(0, 1, 2)
    with pytest.raises(ValueError, match="three axis indices"):
        JoystickLayout.parse("0,1")
    assert JoystickInput.open("off") is None
    with pytest.raises(ValueError, match="auto, off or a joystick index"):
        JoystickInput.open("wheel")
    a, b = ControlsReading(0.2, 0.5, 0.0, 0.0), ControlsReading(-0.6, 0.1, 0.3, 0.0)
    assert strongest(a, None, b) == ControlsReading(-0.6, 0.5, 0.3, 0.0) and strongest(None) is None


def test_sim_refuses_a_joystick_that_is_not_there_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "agent.apps.cli", "sim", "--joystick", "3", "--seconds", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert proc.returncode == 1 and "truckpilot sim: no joystick 3: SDL finds 0" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

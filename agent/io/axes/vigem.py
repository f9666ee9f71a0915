"""Analog steering and pedals through a virtual Xbox 360 pad on Windows (ViGEmBus via ``vgamepad``).

The `vgamepad` package (https://github.com/yannbouteiller/vgamepad, ``pip install
vgamepad``) drives the ViGEmBus kernel driver, which makes a pad that Windows and
every XInput / DirectInput game see as a wired Xbox 360 controller. vgamepad's
Windows installer runs ViGEmBus's setup (1.17.333); without the driver, ``import
vgamepad`` itself fails (it connects to the bus at import: ``VIGEM_ERROR_BUS_NOT_FOUND``).
Its Linux port (``vgamepad.lin``, python-libevdev) is experimental; on Linux the
``uinput-gamepad`` backend does the same without it.

The calls, checked against vgamepad 0.1.3's ``vgamepad/win/virtual_gamepad.py``
(``VX360Gamepad``): ``left_joystick_float(x_value_float, y_value_float)`` ->
``round(x * 32767)`` into the report's sThumbLX (-32767 .. 32767, 0 = centred);
``right_trigger_float(value_float)`` / ``left_trigger_float(value_float)`` ->
``round(v * 255)`` into bRightTrigger / bLeftTrigger (0 = released); they only change
the report, ``update()`` sends it; ``reset()`` puts the default (all zero) report back
without sending it. The pad exists while the ``VX360Gamepad`` object does (its
``__del__`` removes it from the bus).

=========  ====================  ===========
Axes       pad                   neutral
=========  ====================  ===========
steer      left stick X          0
throttle   right trigger (RT)    0
brake      left trigger (LT)     0
=========  ====================  ===========

    with VgamepadOutput() as pad:               # the pad is plugged in, neutral
        pad.send(Axes(steer=0.1, brake=0.4))
    # close(): neutral, then the pad is unplugged

Not wired into ``truckpilot drive`` or the guard yet.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Callable

from agent.io.axes import NEUTRAL, AxisBackendUnavailable, Axes, AxisWriter

INSTALL_HINT = ("pip install vgamepad (on Windows its installer also installs the ViGEmBus driver; or install "
                "ViGEmBus 1.17.333 from https://github.com/nefarius/ViGEmBus/releases)")


class VgamepadUnavailable(AxisBackendUnavailable):
    """vgamepad is not installed, or cannot reach the ViGEmBus driver."""


def import_vgamepad(import_module: Callable[[str], ModuleType] = importlib.import_module,
                    platform: str = sys.platform) -> ModuleType:
    """The ``vgamepad`` module, or ``VgamepadUnavailable`` saying what to install."""
    elsewhere = "" if platform == "win32" else "; on Linux the uinput-gamepad backend needs neither"
    try:
        return import_module("vgamepad")
    except ModuleNotFoundError as exc:
        if exc.name != "vgamepad":  # vgamepad is there, a module it needs is not (Linux: libevdev)
            raise VgamepadUnavailable(f"vgamepad is installed but cannot import {exc.name!r} ({exc})"
                                      f"{elsewhere}") from exc
        raise VgamepadUnavailable(f"the vgamepad package is not installed: {INSTALL_HINT}{elsewhere}") from exc
    except Exception as exc:  # noqa: BLE001 - vgamepad connects to ViGEmBus at import and raises a bare Exception
        raise VgamepadUnavailable(f"vgamepad cannot reach the ViGEmBus driver ({type(exc).__name__}: {exc}): "
                                  f"{INSTALL_HINT}{elsewhere}") from exc


def vgamepad_problem(import_module: Callable[[str], ModuleType] = importlib.import_module,
                     platform: str = sys.platform) -> str | None:
    """Why no vgamepad pad can be made here; None when vgamepad imports (no pad is created)."""
    try:
        import_vgamepad(import_module, platform)
    except VgamepadUnavailable as exc:
        return str(exc)
    return None


class VgamepadOutput(AxisWriter):
    """A virtual Xbox 360 pad through vgamepad; an ``AxisOutput``. ``last``: the axes sent last.

    ``module``: the vgamepad module to use (default: imported here; a parameter so
    tests, where ViGEmBus cannot run, can hand in a fake that records the calls).
    """

    kind = "vgamepad"

    def __init__(self, *, module: Any = None) -> None:
        vgamepad = module if module is not None else import_vgamepad()
        try:
            self._pad = vgamepad.VX360Gamepad()
        except Exception as exc:  # noqa: BLE001 - vgamepad's errors are bare Exceptions / AssertionError
            raise VgamepadUnavailable(f"vgamepad could not plug in a virtual Xbox 360 pad ({type(exc).__name__}: "
                                      f"{exc}): check that ViGEmBus is installed and running") from exc
        self.last = NEUTRAL
        self._write(NEUTRAL)

    def _write(self, axes: Axes) -> None:
        pad = self._pad
        if pad is None:
            raise RuntimeError("the vgamepad pad is closed; open a new one")
        pad.left_joystick_float(x_value_float=axes.steer, y_value_float=0.0)
        pad.right_trigger_float(value_float=axes.throttle)
        pad.left_trigger_float(value_float=axes.brake)
        pad.update()
        self.last = axes

    def neutral(self) -> None:
        """Centre the stick and release both triggers (vgamepad's ``reset`` + ``update``)."""
        pad = self._pad
        if pad is None:
            raise RuntimeError("the vgamepad pad is closed; open a new one")
        pad.reset()
        pad.update()
        self.last = NEUTRAL

    def close(self) -> None:
        """Go neutral and let go of the pad (vgamepad unplugs it when the object goes). Twice is a no-op."""
        if self._pad is None:
            return
        try:
            self.neutral()
        finally:
            self._pad = None  # the last reference: VX360Gamepad.__del__ removes the pad from the bus


__all__ = ["VgamepadOutput", "VgamepadUnavailable", "import_vgamepad", "vgamepad_problem", "INSTALL_HINT"]

"""Analog outputs: drive with continuous steering and pedals instead of key taps.

``Axes`` is what one tick sends; an ``AxisOutput`` sends it. The backends, each
imported only when asked for (nothing here maps memory, opens /dev/uinput or
loads a driver at import):

- ``scs-controls``: ``agent.io.axes.scs_controls.ScsControlsOutput``, ETS2LA's SCS
  SDK input plugin's shared block (ETS2 / ATS only, Windows or Linux);
- ``uinput-gamepad``: ``agent.io.axes.uinput_gamepad.UinputGamepadOutput``, a Linux
  kernel virtual gamepad (any game that binds joystick axes);
- ``vgamepad``: ``agent.io.axes.vigem.VgamepadOutput``, a virtual Xbox 360 pad on
  Windows through the ViGEmBus driver.

``open_axis_output(name, **opts)`` opens one by name; ``axis_backend_problems()``
says, without opening anything, which can work here and why the others cannot.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Axes", "AxisOutput", "AxisWriter", "NEUTRAL", "AXIS_BACKENDS", "AxisBackendUnavailable", "open_axis_output",
           "axis_backend_problem", "axis_backend_problems"]

#: the analog output backends ``open_axis_output`` knows, by name
AXIS_BACKENDS: tuple[str, ...] = ("scs-controls", "uinput-gamepad", "vgamepad")


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


@dataclass(frozen=True)
class Axes:
    """One tick of analog driving input.

    ``steer``: [-1, 1] of full lock, + = right (negative = left, as ``agent.types.Action``
    and the SCS input plugin's ``steering``; the SCS *telemetry* counts the other
    way). ``throttle``, ``brake``: [0, 1] pedal travel. Values must be finite and in
    range: the plugin turns NaN into full left lock and may pass values beyond 1, so
    a bad value raises here instead (``Axes.clipped`` clips a controller's output).
    """

    steer: float = 0.0
    throttle: float = 0.0
    brake: float = 0.0

    def __post_init__(self) -> None:
        for name, value, lo in (("steer", self.steer, -1.0), ("throttle", self.throttle, 0.0),
                                ("brake", self.brake, 0.0)):
            if not math.isfinite(value) or not lo <= value <= 1.0:
                raise ValueError(f"Axes.{name}={value!r}: must be finite and in [{lo:g}, 1]")

    @classmethod
    def clipped(cls, steer: float, throttle: float, brake: float) -> "Axes":
        """Axes with each finite value clipped into its range (NaN or inf still raise)."""
        for name, value in (("steer", steer), ("throttle", throttle), ("brake", brake)):
            if not math.isfinite(value):
                raise ValueError(f"Axes.clipped: {name}={value!r} is not finite")
        return cls(_clip(float(steer), -1.0, 1.0), _clip(float(throttle), 0.0, 1.0), _clip(float(brake), 0.0, 1.0))


#: centred wheel, pedals released
NEUTRAL = Axes()


@runtime_checkable
class AxisOutput(Protocol):
    """Somewhere analog input goes: ``send`` holds ``axes`` until the next send;
    ``neutral`` sends ``NEUTRAL``; ``close`` goes neutral and lets go."""

    def send(self, axes: Axes) -> None: ...

    def neutral(self) -> None: ...

    def close(self) -> None: ...


class AxisWriter:
    """What the device backends share: ``send`` and ``neutral`` write one state through the
    backend's ``_write(axes)``; a context manager whose exit is the backend's ``close``."""

    def _write(self, axes: Axes) -> None:
        raise NotImplementedError

    def send(self, axes: Axes) -> None:
        """Hold ``axes`` (steer + = right, pedals [0, 1]) until the next send."""
        self._write(axes)

    def neutral(self) -> None:
        """Centre the steering and release both pedals."""
        self._write(NEUTRAL)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AxisBackendUnavailable(RuntimeError):
    """An analog output backend cannot work here; the message says why and what to install or fix.
    (``scs-controls`` raises its own ``agent.io.axes.scs_controls.ControlsError`` instead.)"""


def open_axis_output(name: str, **opts) -> AxisOutput:
    """Open the analog output backend ``name`` (one of ``AXIS_BACKENDS``); it starts neutral.

    ``opts`` go to the backend: ``scs-controls``: ``path``, ``version``
    (``ScsControlsOutput.open``); ``uinput-gamepad``: ``device_name``, ``vendor``,
    ``product``, ``version``, ``bustype`` (``UinputGamepadOutput``); ``vgamepad``: none.
    ValueError for an unknown name; the backend's own error (naming the fix) when it
    cannot work here.
    """
    if name == "scs-controls":
        from agent.io.axes.scs_controls import ScsControlsOutput

        return ScsControlsOutput.open(**opts)
    if name == "uinput-gamepad":
        from agent.io.axes.uinput_gamepad import UinputGamepadOutput

        return UinputGamepadOutput(**opts)
    if name == "vgamepad":
        from agent.io.axes.vigem import VgamepadOutput

        return VgamepadOutput(**opts)
    raise ValueError(f"unknown analog output backend {name!r}: choose one of {', '.join(AXIS_BACKENDS)}")


def _windows_mapping_exists(tagname: str) -> bool:
    """Whether a named file mapping exists (OpenFileMappingW; nothing is mapped). Windows only."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenFileMappingW.restype = ctypes.c_void_p
    handle = kernel32.OpenFileMappingW(0x0004, False, tagname)  # FILE_MAP_READ
    if not handle:
        return False
    kernel32.CloseHandle(ctypes.c_void_p(handle))
    return True


def _scs_controls_problem(path: str | None, platform: str) -> str | None:
    """What ``ScsControlsOutput.open(path)`` would fail on, found without writing to the block."""
    from agent.io.axes.scs_controls import ControlsError, layout_for, probe_path
    from sim.scs_controls_layout import PLUGIN_HINT

    where = path if path is not None else probe_path(platform)
    if path is None and platform == "win32":
        return None if _windows_mapping_exists(where) else f"no SCS controls block {where}: install {PLUGIN_HINT}"
    try:
        size = os.stat(where).st_size
    except FileNotFoundError:
        return (f"no SCS controls block at {where}: install {PLUGIN_HINT}, or start "
                f"`truckpilot sim --scs-controls {where}`")
    except OSError as exc:
        return f"cannot read the SCS controls block {where}: {exc}"
    if not os.access(where, os.R_OK | os.W_OK):
        return f"the SCS controls block {where} is not writable by this user"
    try:
        layout_for(size, where)
    except ControlsError as exc:
        return str(exc)
    return None


def axis_backend_problem(name: str, *, platform: str = sys.platform, scs_path: str | None = None) -> str | None:
    """Why the backend ``name`` cannot work here, with the fix; None when it can. Opens, creates
    and writes nothing (``scs-controls`` is looked at where the plugin puts it, or ``scs_path``)."""
    if name == "scs-controls":
        return _scs_controls_problem(scs_path, platform)
    if name == "uinput-gamepad":
        from agent.io.axes.uinput_gamepad import gamepad_problem

        return gamepad_problem(platform)
    if name == "vgamepad":
        from agent.io.axes.vigem import vgamepad_problem

        return vgamepad_problem(platform=platform)
    raise ValueError(f"unknown analog output backend {name!r}: choose one of {', '.join(AXIS_BACKENDS)}")


def axis_backend_problems(*, platform: str = sys.platform, scs_path: str | None = None) -> dict[str, str | None]:
    """``axis_backend_problem`` of every backend in ``AXIS_BACKENDS`` (None: it can work here)."""
    return {name: axis_backend_problem(name, platform=platform, scs_path=scs_path) for name in AXIS_BACKENDS}

"""Analog steering and pedals through ETS2LA's SCS SDK input plugin.

With scs-sdk-controller (https://github.com/ETS2LA/scs-sdk-controller) loaded,
Euro Truck Simulator 2 / American Truck Simulator read a semantical input
device's values from a shared memory block every frame; this backend writes
the ``steering``, ``aforward`` (throttle) and ``abackward`` (brake) axes there
(``clutch`` stays 0). ``truckpilot sim --scs-controls PATH`` reads the same block.
Where it lives:

- Windows: the named mapping ``Local\\SCSControls``, which the plugin makes at
  the game's start. Its size cannot be read back, so the plugin version is
  ``version`` (default: the newest); a missing mapping is found with
  ``OpenFileMappingW`` before mapping it.
- Linux: the file ``/dev/shm/SCS/SCSControls`` (the plugin's Linux build), or
  any file given as ``path`` (the simulator's). The file's size names the
  plugin version: the block has no header. A game run through Proton/Wine loads
  the Windows plugin, whose named mapping belongs to Wine, not this file.

The layouts, the commits of the plugin's ``inputs.h`` they were read from, and
the plugin's reading quirks (NaN -> full left, no upper clamp with MSVC) are in
``sim.scs_controls_layout``; ``Axes`` only holds finite values in range.

    with ScsControlsOutput.open() as out:      # or open("/tmp/SCSControls"); writes neutral at open
        out.send(Axes(steer=0.2, throttle=0.5))   # 20 % right, half throttle, until the next send
        out.neutral()
    # close() went neutral

Errors are ``ControlsError`` naming the path and the fix: ``ControlsNotFound``,
``ControlsTooShort`` (size found vs needed), ``ControlsVersionUnknown`` (a size
that is no known plugin version's). ``truckpilot drive --window --axes scs-controls``
drives through it behind the safety guard, whose guard process opens the same block
(``guard_spec``) to centre it when the agent stalls or dies.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
from typing import Callable

from agent.io.axes import NEUTRAL, Axes, AxisWriter
from sim.scs_controls_layout import (AXIS_FORMAT, LAYOUTS, LINUX_PATH, NEWEST, PLUGIN_HINT, WINDOWS_TAGNAME,
                                     ControlsLayout, layout_for_size)

_AXIS = struct.Struct(AXIS_FORMAT)
_SIZES = ", ".join(f"{layout.size} ({version})" for version, layout in LAYOUTS.items())


class ControlsError(RuntimeError):
    """The controls block at ``path`` cannot be written; the message says why and what to do."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class ControlsNotFound(ControlsError):
    """No controls block where it was looked for."""


class ControlsTooShort(ControlsError):
    """The block has ``size`` bytes, fewer than the ``needed`` of the version asked for (or of any version)."""

    def __init__(self, message: str, path: str, size: int, needed: int):
        super().__init__(message, path)
        self.size, self.needed = size, needed


class ControlsVersionUnknown(ControlsError):
    """The block's ``size`` is no known plugin version's (or not the version asked for)."""

    def __init__(self, message: str, path: str, size: int):
        super().__init__(message, path)
        self.size = size


def layout_for(size: int, path: str, version: str | None = None) -> ControlsLayout:
    """The layout of a ``size``-byte block: ``version``'s (checked against the size), or the
    version of that size; the clear error for a short block or an unknown size."""
    if version is not None:
        layout = LAYOUTS.get(version)
        if layout is None:
            raise ValueError(f"unknown scs-sdk-controller version {version!r}; known: {', '.join(LAYOUTS)}")
        if size < layout.size:
            raise ControlsTooShort(f"SCS controls block {path} has {size} bytes but plugin version {version} needs "
                                   f"{layout.size}: install {PLUGIN_HINT}", path, size, layout.size)
        if size != layout.size:
            raise ControlsVersionUnknown(f"SCS controls block {path} has {size} bytes, not the {layout.size} of plugin "
                                         f"version {version}: the plugin installed is another version (known sizes: "
                                         f"{_SIZES})", path, size)
        return layout
    layout = layout_for_size(size)
    if layout is not None:
        return layout
    smallest = min(x.size for x in LAYOUTS.values())
    if size < smallest:
        why = "empty: the plugin has not made it" if size == 0 else "cut short"
        raise ControlsTooShort(f"SCS controls block {path} has {size} bytes ({why}); the smallest plugin block has "
                               f"{smallest}: install {PLUGIN_HINT}", path, size, smallest)
    raise ControlsVersionUnknown(f"SCS controls block {path} has {size} bytes, which is no scs-sdk-controller version "
                                 f"TruckPilot knows (sizes {_SIZES}; the block has no version field, so its size names "
                                 f"the version): install {PLUGIN_HINT} at one of those versions, or add the new "
                                 "inputs.h to sim/scs_controls_layout.py", path, size)


def _map_windows(tagname: str, size: int) -> mmap.mmap:
    """The plugin's named mapping, only if the plugin made it (Windows only)."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenFileMappingW.restype = ctypes.c_void_p
    handle = kernel32.OpenFileMappingW(0x0002 | 0x0004, False, tagname)  # FILE_MAP_WRITE | FILE_MAP_READ
    if not handle:
        raise ControlsNotFound(f"no SCS controls block {tagname}: install {PLUGIN_HINT}", tagname)
    kernel32.CloseHandle(ctypes.c_void_p(handle))
    return mmap.mmap(-1, size, tagname=tagname, access=mmap.ACCESS_WRITE)


def probe_path(platform: str = sys.platform) -> str:
    """Where the plugin's block is on ``platform``: the Windows mapping name, or the Linux file."""
    return WINDOWS_TAGNAME if platform == "win32" else LINUX_PATH


class ScsControlsOutput(AxisWriter):
    """An open controls block; an ``AxisOutput``. Use ``ScsControlsOutput.open``.

    ``last``: the axes written last (``NEUTRAL`` after open, neutral() and close()).
    """

    def __init__(self, block: mmap.mmap, path: str, layout: ControlsLayout, fd: int | None = None):
        self._mm, self.path, self.layout, self._fd = block, path, layout, fd
        self.last = NEUTRAL
        self._write(NEUTRAL)  # whatever an earlier writer left, nothing steers until the first send

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, version: str | None = None,
             platform: str = sys.platform,
             map_windows: Callable[[str, int], mmap.mmap] = _map_windows) -> "ScsControlsOutput":
        """Open the block at ``path`` (a file), or the plugin's place on ``platform`` when None.

        ``version``: the plugin version (a key of ``LAYOUTS``) to expect; None takes
        it from the file's size (on Windows, where the size cannot be read: the
        newest). ``map_windows`` opens the Windows mapping (a parameter so tests,
        which do not run on Windows, can check how it is called).
        """
        where = str(path) if path is not None else probe_path(platform)
        if path is None and platform == "win32":
            name = version or NEWEST
            if name not in LAYOUTS:
                raise ValueError(f"unknown scs-sdk-controller version {name!r}; known: {', '.join(LAYOUTS)}")
            return cls(map_windows(where, LAYOUTS[name].size), where, LAYOUTS[name])
        try:
            fd = os.open(where, os.O_RDWR)
        except FileNotFoundError:
            raise ControlsNotFound(f"no SCS controls block at {where}: install {PLUGIN_HINT}, or start "
                                   f"`truckpilot sim --scs-controls {where}`", where) from None
        except OSError as exc:
            raise ControlsNotFound(f"cannot open the SCS controls block {where} for writing: {exc}", where) from exc
        try:
            layout = layout_for(os.fstat(fd).st_size, where, version)
            block = mmap.mmap(fd, layout.size, access=mmap.ACCESS_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(block, where, layout, fd)

    def guard_spec(self) -> dict:
        """How another process (the safety guard's) opens this same block to centre it: a JSON-ready
        recipe for ``agent.io.guard.axes_from_spec``."""
        return {"kind": "scs-controls", "path": self.path, "version": self.layout.version}

    def recipe(self) -> dict:
        """The same block, for a guard process told to hold the axes itself (``GuardConfig.host_axes``);
        it need not: any process can open the block (``guard_spec``)."""
        return self.guard_spec()

    def _write(self, axes: Axes) -> None:
        if self._mm.closed:
            raise ControlsError(f"SCS controls block {self.path} is closed; open it again", self.path)
        if self._fd is not None and os.fstat(self._fd).st_size != self.layout.size:
            # writing past a shrunk file's end would kill this process (SIGBUS)
            raise ControlsError(f"SCS controls block {self.path} is no longer {self.layout.size} bytes (the game "
                                "reloaded another plugin version?); open it again", self.path)
        o = self.layout
        _AXIS.pack_into(self._mm, o.steering, axes.steer)
        _AXIS.pack_into(self._mm, o.aforward, axes.throttle)
        _AXIS.pack_into(self._mm, o.abackward, axes.brake)
        _AXIS.pack_into(self._mm, o.clutch, 0.0)
        self.last = axes

    def close(self) -> None:
        """Go neutral and unmap the block (the file stays: it is the plugin's). Closing twice is a no-op."""
        if self._mm.closed:
            return
        try:
            self._write(NEUTRAL)
        finally:
            self._mm.close()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None



__all__ = ["ScsControlsOutput", "ControlsError", "ControlsNotFound", "ControlsTooShort", "ControlsVersionUnknown",
           "layout_for", "probe_path"]

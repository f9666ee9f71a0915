"""The simulator plays the game's side of ETS2LA's SCS SDK input plugin: it makes
the plugin's controls block (see ``sim.scs_controls_layout``) and reads the
analog axes from it every frame, so a program that steers the game through the
plugin steers the simulator the same way.

    device = ControlsDevice("/dev/shm/SCS/SCSControls")   # made and zeroed, like the plugin at load
    reading = device.read()                                 # ControlsReading, the plugin's conventions
    controls = mix_controls(reading, left=False, right=False, throttle=False, brake=False)
    device.close()

The block is made at the size of one plugin version (the newest by default);
the writer identifies the version by that size. Only the four axes are read;
the plugin's bools (blinkers, wipers, ...) have no counterpart in the simulator.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .scs_controls_layout import AXIS_FORMAT, LAYOUTS, NEWEST, plugin_read_value
from .truck import TruckControls

_AXIS = struct.Struct(AXIS_FORMAT)


@dataclass(frozen=True)
class ControlsReading:
    """The axes the plugin hands the game this frame, after its clamp
    (``plugin_read_value``: NaN and values <= -1 read as -1).

    ``steering``: [-1, 1], + = right (the simulator's sign). ``aforward``
    (accelerator), ``abackward`` (brake), ``clutch``: [0, 1] when the writer keeps
    to the plugin's ranges; nothing here clips them.
    """

    steering: float
    aforward: float
    abackward: float
    clutch: float


def _unit(x: float) -> float:
    return min(1.0, max(0.0, x))


def mix_controls(reading: ControlsReading, *, left: bool, right: bool, throttle: bool, brake: bool) -> TruckControls:
    """The truck's controls from the plugin's axes and the keyboard this frame.

    Steering: a held steering key wins (full lock that way, both keys cancel to
    centre, as without the plugin); with no steering key held the wheel follows
    ``steering`` (clipped to [-1, 1]) at the key rate. A target of exactly 0 (no
    key and the writer's neutral, or both keys) self-centres as released keys do,
    so with the axes neutral this is ``TruckControls.from_keys``. Pedals: the larger of the key (1 held, 0 not) and the axis, clipped to
    [0, 1] -- a key can add pedal, never take the writer's away.
    """
    key_steer = left or right
    if key_steer:
        steer = (1.0 if right else 0.0) - (1.0 if left else 0.0)
    else:
        steer = min(1.0, max(-1.0, reading.steering))
    return TruckControls(steer_target=steer,
                         throttle=max(1.0 if throttle else 0.0, _unit(reading.aforward)),
                         brake=max(1.0 if brake else 0.0, _unit(reading.abackward)),
                         centring=steer == 0.0)


class ControlsDevice:
    """The plugin's controls block at ``path`` for plugin ``version``, read by ``read()``.

    Like the plugin at load, the file (and its folder) is made if missing and set to
    the version's size; unlike the Linux plugin (which only ``ftruncate``\\ s, keeping
    a same-size file's bytes) it is zeroed, as the Windows plugin's ``memset`` does,
    so stale axes from an earlier writer do not steer a new run.
    """

    def __init__(self, path: str | os.PathLike, version: str = NEWEST):
        layout = LAYOUTS.get(version)
        if layout is None:
            raise ValueError(f"unknown scs-sdk-controller version {version!r}; known: {', '.join(LAYOUTS)}")
        self.path, self.layout = Path(path), layout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(f"cannot create the SCS controls block {self.path}: {exc}; pass a writable "
                          "--scs-controls path (e.g. /dev/shm/SCS/SCSControls or one under /tmp)") from exc
        try:
            if os.fstat(fd).st_size != layout.size:
                os.ftruncate(fd, layout.size)
            self._mm = mmap.mmap(fd, layout.size, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        self._mm[:] = bytes(layout.size)

    def read(self) -> ControlsReading:
        """The four axes now, as the plugin passes them to the game."""
        o = self.layout
        return ControlsReading(*(plugin_read_value(_AXIS.unpack_from(self._mm, off)[0])
                                 for off in (o.steering, o.aforward, o.abackward, o.clutch)))

    def close(self) -> None:
        """Unmap the block; the file stays (the plugin leaves its /dev/shm file too)."""
        if not self._mm.closed:
            self._mm.close()

    def __enter__(self) -> "ControlsDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""The simulator publishes SCS-style telemetry: the revision-12 block of the
SCS Telemetry plugin (see ``sim.scs_telemetry_layout``) in a memory-mapped file,
so a tool that reads the game's telemetry reads the simulator's the same way.

    publisher = TelemetryPublisher("/dev/shm/SCSTelemetry")
    publisher.publish(frame_from_sim(controls, truck_steer=info["steer"], speed_m_s=info["speed"], ...))
    publisher.close()            # like the plugin's shutdown: sdkActive off, paused on

The file is ``MMF_SIZE`` (32 KiB) bytes, zeroed at open like the plugin's block;
only the fields of the layout table are written (a few ``struct.pack_into`` per
frame). Cruise control is always off: the simulator has none.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .scs_telemetry_layout import LAYOUTS, MMF_SIZE
from .truck import TruckControls

REVISION = 12


@dataclass(frozen=True)
class TelemetryFrame:
    """One frame's published values, in the plugin's conventions.

    ``speed_m_s`` (m/s, negative reversing); steering in [-1, 1]
    counterclockwise (+ = left, the opposite of the simulator's sign);
    throttle and brake in [0, 1]; ``user_*`` is the input held, ``game_*``
    what the truck applies; ``simulated_time_us`` stops while paused,
    ``render_time_us`` does not (microseconds).
    """

    paused: bool
    speed_m_s: float
    user_steer: float
    user_throttle: float
    user_brake: float
    game_steer: float
    game_throttle: float
    game_brake: float
    simulated_time_us: int
    render_time_us: int


def frame_from_sim(controls: TruckControls, *, truck_steer: float, speed_m_s: float, paused: bool,
                   simulated_s: float, wall_s: float) -> TelemetryFrame:
    """The frame for the simulator's state: ``controls`` held this step, the truck's
    ``truck_steer`` ([-1, 1], negative = left) and speed, simulated and wall seconds.
    Steering flips sign to SCS's counterclockwise convention (``0.0 - x``: no -0.0)."""
    throttle = min(1.0, max(0.0, controls.throttle))
    brake = min(1.0, max(0.0, controls.brake))
    return TelemetryFrame(paused=paused, speed_m_s=speed_m_s,
                          user_steer=0.0 - min(1.0, max(-1.0, controls.steer_target)), user_throttle=throttle,
                          user_brake=brake, game_steer=0.0 - truck_steer, game_throttle=throttle, game_brake=brake,
                          simulated_time_us=int(simulated_s * 1e6), render_time_us=int(wall_s * 1e6))


class TelemetryPublisher:
    """A revision-12 SCS Telemetry block at ``path``, rewritten by ``publish`` each frame."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        layout = LAYOUTS[REVISION]
        self._packers = {name: (struct.Struct(f.fmt), f.offset) for name, f in layout.fields.items()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(f"cannot create the telemetry file {self.path}: {exc}; pass a writable --telemetry path "
                          "(e.g. /dev/shm/SCSTelemetry or one under /tmp)") from exc
        try:
            if os.fstat(fd).st_size != MMF_SIZE:  # resize only another size: a reader may have this one mapped
                os.ftruncate(fd, MMF_SIZE)
            self._mm = mmap.mmap(fd, MMF_SIZE, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        self._mm[:] = bytes(MMF_SIZE)  # zeroed, like the plugin's memset at open
        self._write(revision=REVISION, sdk_active=True, paused=True, game=0, version_major=0, version_minor=0,
                    cruise_control=False, cruise_control_speed=0.0)

    def _write(self, **values) -> None:
        for name, value in values.items():
            packer, offset = self._packers[name]
            packer.pack_into(self._mm, offset, value)

    def publish(self, frame: TelemetryFrame) -> None:
        """Write one frame (the plugin's ``time`` follows the simulated clock, which stops while paused)."""
        self._write(paused=frame.paused, speed=frame.speed_m_s, user_steer=frame.user_steer,
                    user_throttle=frame.user_throttle, user_brake=frame.user_brake, game_steer=frame.game_steer,
                    game_throttle=frame.game_throttle, game_brake=frame.game_brake,
                    time_us=frame.simulated_time_us, simulated_time_us=frame.simulated_time_us,
                    render_time_us=frame.render_time_us)

    def close(self) -> None:
        """Mark the block as the plugin does at shutdown (sdkActive off, paused) and unmap it; the file stays."""
        if self._mm.closed:
            return
        self._write(sdk_active=False, paused=True)
        self._mm.close()

    def __enter__(self) -> "TelemetryPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Read-only SCS telemetry: the game's own speed, inputs, pause and cruise control.

Euro Truck Simulator 2 / American Truck Simulator with the SCS Telemetry plugin
(scs-sdk-plugin, https://github.com/RenCloud/scs-sdk-plugin) publish a shared
memory block; ``truckpilot sim --telemetry PATH`` publishes the same block.
Where it lives:

- Windows: the named mapping ``Local\\SCSTelemetry`` (opened with
  ``mmap.mmap(-1, 32 KiB, tagname=...)``; Windows hands back an empty block
  when the plugin has not made one, which reads as revision 0 -> an error).
- Linux: the file ``/dev/shm/SCSTelemetry`` (plugin builds with Linux support
  ``shm_open("/SCSTelemetry")``), else ``/dev/shm/SCS/SCSTelemetry``; or any
  file given as ``path`` (the simulator's). A game run through Proton/Wine
  loads the Windows plugin, whose named mapping belongs to Wine: it is not one
  of these files.

The plugin revisions read are 10 and 12; the offsets, and the commits of the
plugin's ``scs-telemetry-common.hpp`` they were computed from, are in
``sim.scs_telemetry_layout`` (shared with the simulator's writer).

    with TelemetrySource.open() as source:      # or open("/tmp/sim-telemetry")
        reading = source.read()                  # TelemetryReading
        print(reading.speed_m_s, reading.paused)

Every failure is a ``TelemetryError`` naming the path and the fix:
``TelemetryNotFound`` (no block), ``TelemetryTooShort`` (size found vs needed),
``TelemetryRevisionUnsupported`` (the revision field is not 10 or 12).
"""
from __future__ import annotations

import logging
import mmap
import os
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from sim.scs_telemetry_layout import (GAMES, LAYOUTS, LINUX_PATHS, MMF_SIZE, PLUGIN_HINT, REVISION_FORMAT,
                                      REVISION_OFFSET, WINDOWS_TAGNAME, Layout)

log = logging.getLogger(__name__)

_REVISION = struct.Struct(REVISION_FORMAT)
#: bytes a block needs before its revision can be read, and before any known revision's fields can be
_MIN_SIZE = max(REVISION_OFFSET + _REVISION.size, *(layout.size_needed for layout in LAYOUTS.values()))


class TelemetryError(RuntimeError):
    """The telemetry block at ``path`` cannot be read; the message says why and what to do."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class TelemetryNotFound(TelemetryError):
    """No telemetry block where it was looked for."""


class TelemetryTooShort(TelemetryError):
    """The block is smaller than the fields need: ``size`` bytes found, ``needed`` bytes needed."""

    def __init__(self, message: str, path: str, size: int, needed: int):
        super().__init__(message, path)
        self.size, self.needed = size, needed


class TelemetryRevisionUnsupported(TelemetryError):
    """The block's plugin revision field holds ``revision``, which is not one this reader knows."""

    def __init__(self, message: str, path: str, revision: int):
        super().__init__(message, path)
        self.revision = revision


@dataclass(frozen=True)
class TelemetryReading:
    """One snapshot of the block at ``path``.

    ``revision``: the plugin's revision (10 or 12). ``sdk_active``: the game
    is running the plugin. ``paused``: the game (or the simulator) is paused.
    ``time_us``: the plugin's frame timestamp (microseconds; it stops while
    paused; changes when the block is updated); ``simulated_time_us``,
    ``render_time_us``: the game's simulation and render clocks (microseconds).
    ``game``: "ets2", "ats" or "unknown"; ``version_major``/``version_minor``:
    the game's telemetry version. ``speed_m_s``: speedometer speed (m/s,
    negative reversing). Steering in [-1, 1], counterclockwise (+ = left,
    steer right = -1); throttle and brake in [0, 1]; ``user_*`` is the driver's
    input (``truck.input.*``), ``game_*`` what the truck applies
    (``truck.effective.*``). ``cruise_control``: on; ``cruise_control_speed_m_s``:
    its set speed (m/s, 0 when off).
    """

    path: str
    revision: int
    sdk_active: bool
    paused: bool
    time_us: int
    simulated_time_us: int
    render_time_us: int
    game: str
    version_major: int
    version_minor: int
    speed_m_s: float
    user_steer: float
    user_throttle: float
    user_brake: float
    game_steer: float
    game_throttle: float
    game_brake: float
    cruise_control: bool
    cruise_control_speed_m_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def _too_short(path: str, size: int) -> TelemetryTooShort:
    return TelemetryTooShort(
        f"telemetry block {path} has {size} bytes but {_MIN_SIZE} are needed (the plugin's block is "
        f"{MMF_SIZE}): it is not an SCS Telemetry block, or was cut short; install {PLUGIN_HINT}",
        path, size, _MIN_SIZE)


def _layout_for(block: bytes, path: str) -> Layout:
    """The layout of the block's revision, or the clear error for a short block or an unknown revision."""
    if len(block) < _MIN_SIZE:
        raise _too_short(path, len(block))
    (revision,) = _REVISION.unpack_from(block, REVISION_OFFSET)
    layout = LAYOUTS.get(revision)
    if layout is None:
        known = " and ".join(str(r) for r in sorted(LAYOUTS))
        why = ("the block is empty: the game is not running or the plugin has not started" if revision == 0
               else "another plugin version")
        raise TelemetryRevisionUnsupported(
            f"telemetry block {path} has plugin revision {revision} ({why}); TruckPilot reads revisions {known}: "
            f"install {PLUGIN_HINT}", path, revision)
    return layout


def decode(block: bytes, path: str) -> TelemetryReading:
    """Decode one snapshot of a telemetry block (``path`` only names it in the reading and in errors)."""
    layout = _layout_for(block, path)
    v = {name: struct.unpack_from(f.fmt, block, f.offset)[0] for name, f in layout.fields.items()}
    return TelemetryReading(
        path=path, revision=v["revision"], sdk_active=bool(v["sdk_active"]), paused=bool(v["paused"]),
        time_us=v["time_us"], simulated_time_us=v["simulated_time_us"], render_time_us=v["render_time_us"],
        game=GAMES.get(v["game"], f"unknown ({v['game']})"), version_major=v["version_major"],
        version_minor=v["version_minor"], speed_m_s=v["speed"], user_steer=v["user_steer"],
        user_throttle=v["user_throttle"], user_brake=v["user_brake"], game_steer=v["game_steer"],
        game_throttle=v["game_throttle"], game_brake=v["game_brake"], cruise_control=bool(v["cruise_control"]),
        cruise_control_speed_m_s=v["cruise_control_speed"])


def _map_windows(tagname: str, size: int) -> mmap.mmap:
    """The plugin's named mapping (Windows only: ``tagname`` is a Windows ``mmap`` argument)."""
    return mmap.mmap(-1, size, tagname=tagname, access=mmap.ACCESS_READ)


def _map_file(path: str) -> mmap.mmap:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise TelemetryNotFound(f"no telemetry block at {path}: install {PLUGIN_HINT}, or start "
                                f"`truckpilot sim --telemetry {path}`", path) from None
    except OSError as exc:
        raise TelemetryNotFound(f"cannot open the telemetry block {path}: {exc}", path) from exc
    try:
        size = os.fstat(fd).st_size
        if size < _MIN_SIZE:
            raise _too_short(path, size)
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def probe_path(platform: str = sys.platform, exists: Callable[[str], bool] = os.path.exists) -> str:
    """Where the plugin's block is on this platform: the Windows mapping name, or the first Linux file that exists."""
    if platform == "win32":
        return WINDOWS_TAGNAME
    for candidate in LINUX_PATHS:
        if exists(candidate):
            return candidate
    where = " or ".join(LINUX_PATHS)
    raise TelemetryNotFound(f"no telemetry block at {where}: install {PLUGIN_HINT} (on Linux a build with Linux "
                            "support, which makes /dev/shm/SCSTelemetry), or pass --path FILE (e.g. the file of "
                            "`truckpilot sim --telemetry FILE`)", where)


class TelemetrySource:
    """An open telemetry block; ``read()`` takes a snapshot. Use ``TelemetrySource.open``."""

    def __init__(self, block: mmap.mmap, path: str):
        self._mm, self.path = block, path
        try:
            self.revision = self.read().revision  # a short block or an unknown revision fails at open
        except BaseException:
            block.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, platform: str = sys.platform,
             map_windows: Callable[[str, int], mmap.mmap] = _map_windows) -> "TelemetrySource":
        """Open ``path`` (a file), or probe the plugin's place for ``platform`` when None.

        ``map_windows`` opens the Windows named mapping (a parameter so that tests,
        which cannot run on Windows here, can check how it is called).
        """
        where = str(path) if path is not None else probe_path(platform)
        if path is None and platform == "win32":
            return cls(map_windows(where, MMF_SIZE), where)
        return cls(_map_file(where), where)

    def read(self) -> TelemetryReading:
        """A snapshot of the block now (a copy: the game keeps writing while we decode)."""
        return decode(self._mm[:_MIN_SIZE], self.path)

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> "TelemetrySource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_game_telemetry(where: str | os.PathLike | None) -> TelemetrySource | None:
    """The telemetry a drive or a recording reads, by the user's choice: None (off) -> None;
    "auto" -> the plugin's block where it puts it (``TelemetrySource.open()``) when it is there, else
    None, with one log line either way; a path -> that block (a ``TelemetryError`` naming the path and
    the plugin when it cannot be read)."""
    if where is None:
        return None
    if str(where) == "auto":
        try:
            source = TelemetrySource.open()
        except TelemetryError as exc:
            log.info("no game telemetry: %s (going on without speed and pause from the game)", exc)
            return None
    else:
        source = TelemetrySource.open(where)
    log.info("game telemetry from %s: speed, steering, pedals and pause per frame", source.path)
    return source

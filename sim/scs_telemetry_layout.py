"""Where the SCS Telemetry plugin puts the fields TruckPilot reads, per plugin revision.

The plugin is scs-sdk-plugin ("SCS Telemetry", https://github.com/RenCloud/scs-sdk-plugin).
Inside Euro Truck Simulator 2 / American Truck Simulator it copies the game's telemetry
into a 32 KiB shared memory block, the C struct ``scsTelemetryMap_t`` of
``scs-telemetry/inc/scs-telemetry-common.hpp``: on Windows the named mapping
``Local\\SCSTelemetry``; builds with Linux support ``shm_open("/SCSTelemetry")``,
which is ``/dev/shm/SCSTelemetry`` (other builds use ``/dev/shm/SCS/SCSTelemetry``).

The offsets below were computed from the struct definitions (zones of fixed size,
each padded with a ``buffer_*`` array; natural alignment) and checked with
``offsetof`` on the header compiled at these commits:

- revision 10: scs-telemetry-common.hpp at RenCloud/scs-sdk-plugin
  2be7683 (master of 2020-12-23; tag V.1.10.6 = 5cec527a has the same struct),
  ``#define PLUGIN_REVID 10``, ``sizeof(scsTelemetryMap_t)`` = 21520.
- revision 12: scs-telemetry-common.hpp at RenCloud/scs-sdk-plugin
  008a1680296b5fbce905c132c793df2bd5eeb889 ("Raise version number to 1.12",
  2022-11-11), ``#define PLUGIN_REVID 12``, ``sizeof`` = 21600.

Between the two, only fields TruckPilot reads in the fifth (bool) zone moved:
revision 12 inserts ``truck_b.lightsHazard`` before ``truck_b.cruiseControl``
(1588 -> 1589). Revision 12's first zone holds ``multiplayerTimeOffset`` where
revision 10 has ``char buffer[8]``; nothing else read here differs.

Field meanings (SCS SDK ``scssdk_telemetry_truck_common_channels.h``; the plugin
fills ``userX`` from ``truck.input.X`` and ``gameX`` from ``truck.effective.X``):
speed in m/s, negative when reversing; steering in [-1, 1] counterclockwise
(steer right -> -1); throttle and brake in [0, 1]; cruise control speed in m/s,
0 when off (the plugin sets the ``cruiseControl`` bool to ``speed > 0``); the
timestamps in microseconds. Little-endian throughout; bools are one byte.

No project imports and no torch: both the simulator's writer (sim.scs_telemetry)
and the agent's reader (agent.io.telemetry) use this table.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

#: SCS_PLUGIN_MMF_SIZE: the size of the block the plugin maps (bytes)
MMF_SIZE = 32 * 1024
#: SCS_PLUGIN_MMF_NAME on Windows: a named mapping, not a file
WINDOWS_TAGNAME = "Local\\SCSTelemetry"
#: where plugin builds for Linux put the block (probed in this order)
LINUX_PATHS: tuple[str, ...] = ("/dev/shm/SCSTelemetry", "/dev/shm/SCS/SCSTelemetry")
#: what a user has to install, for error messages
PLUGIN_HINT = ("the SCS Telemetry plugin (scs-sdk-plugin, https://github.com/RenCloud/scs-sdk-plugin, "
               "revision 10 or 12) in the game's bin/<platform>/plugins folder and start the game")
#: offset of ``scs_values.telemetry_plugin_revision`` (unsigned int); the same in every revision read here
REVISION_OFFSET = 40
REVISION_FORMAT = "<I"


@dataclass(frozen=True)
class Field:
    """One value in the block: byte ``offset`` and a little-endian ``struct`` format."""

    offset: int
    fmt: str

    @property
    def end(self) -> int:
        """First byte after the value."""
        return self.offset + struct.calcsize(self.fmt)


@dataclass(frozen=True)
class Layout:
    """The fields of one plugin revision, by TruckPilot's name; ``source`` is the header they come from."""

    revision: int
    source: str
    fields: Mapping[str, Field]

    @property
    def size_needed(self) -> int:
        """Bytes a block must have for every field here to be inside it."""
        return max(f.end for f in self.fields.values())


def _fields(cruise_control_offset: int) -> Mapping[str, Field]:
    return MappingProxyType({
        "sdk_active": Field(0, "<?"),            # bool sdkActive
        "paused": Field(4, "<?"),                # bool paused
        "time_us": Field(8, "<Q"),               # unsigned long long time
        "simulated_time_us": Field(16, "<Q"),    # unsigned long long simulatedTime
        "render_time_us": Field(24, "<Q"),       # unsigned long long renderTime
        "revision": Field(REVISION_OFFSET, REVISION_FORMAT),  # scs_values.telemetry_plugin_revision
        "version_major": Field(44, "<I"),        # scs_values.version_major (game version)
        "version_minor": Field(48, "<I"),        # scs_values.version_minor
        "game": Field(52, "<I"),                 # scs_values.game: 0 unknown, 1 ETS2, 2 ATS
        "speed": Field(948, "<f"),               # truck_f.speed
        "user_steer": Field(956, "<f"),          # truck_f.userSteer
        "user_throttle": Field(960, "<f"),       # truck_f.userThrottle
        "user_brake": Field(964, "<f"),          # truck_f.userBrake
        "game_steer": Field(972, "<f"),          # truck_f.gameSteer
        "game_throttle": Field(976, "<f"),       # truck_f.gameThrottle
        "game_brake": Field(980, "<f"),          # truck_f.gameBrake
        "cruise_control_speed": Field(988, "<f"),  # truck_f.cruiseControlSpeed
        "cruise_control": Field(cruise_control_offset, "<?"),  # truck_b.cruiseControl
    })


LAYOUTS: Mapping[int, Layout] = MappingProxyType({
    10: Layout(10, "RenCloud/scs-sdk-plugin scs-telemetry/inc/scs-telemetry-common.hpp @ 2be7683", _fields(1588)),
    12: Layout(12, "RenCloud/scs-sdk-plugin scs-telemetry/inc/scs-telemetry-common.hpp @ 008a168", _fields(1589)),
})

#: game ids of ``scs_values.game``
GAMES: Mapping[int, str] = MappingProxyType({0: "unknown", 1: "ets2", 2: "ats"})

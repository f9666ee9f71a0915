"""Where ETS2LA's SCS SDK input plugin reads the analog axes, per plugin version.

The plugin is scs-sdk-controller (https://github.com/ETS2LA/scs-sdk-controller),
an SCS SDK *input* plugin: Euro Truck Simulator 2 / American Truck Simulator load
it from ``bin/<platform>/plugins`` and it registers a "semantical" input device
whose inputs feed the game's control mixes of the same name (``steering``,
``aforward``, ...). Every game frame it reads the inputs' values from a shared
memory block that another program writes:

- Windows: the named mapping ``Local\\SCSControls`` (``CreateFileMapping`` of
  exactly the block's size, zeroed with ``memset`` at load).
- Linux: the file ``/dev/shm/SCS/SCSControls`` (``open(O_CREAT | O_RDWR)`` and
  ``ftruncate`` to the block's size; the plugin maps it ``PROT_READ`` and never
  writes it, so a file of the same size keeps its old bytes).

What the source says (``scs_sdk_controller.cpp`` and ``inputs.h``, read at every
commit that changed ``inputs.h``):

- The block has **no header and no version field**. It is the values of the
  ``inputs[]`` array of ``inputs.h``, in that order, packed back to back with no
  alignment: ``sizeof(float)`` = 4 bytes for ``SCS_VALUE_TYPE_float``,
  ``sizeof(bool)`` = 1 byte for ``SCS_VALUE_TYPE_bool`` (``memcpy`` at a running
  ``shm_offset``), floats and bools interleaved as the array lists them. Native
  byte order: little-endian on the x86-64 builds.
- Its size is the sum of those sizes (``scs_input_init`` adds them up). So the
  size is the only thing that tells versions apart; each version below has a
  different size, and a reader of a file identifies the version by it.
- Each frame each float is passed through ``std::clamp(float(-1), value, float(1))``
  -- the arguments are in the wrong order (the value is ``lo``). With libstdc++
  (checked: g++ 12) that is a clamp to [-1, 1]; with MSVC's ``clamp`` (the ``cl``
  build of the plugin's workflow) values above 1 pass unclamped. Under both, NaN
  and anything <= -1 read as -1 (full left for ``steering``). So a writer must
  only write finite values already in range.

The versions (the plugin has no version numbers: a version is named by the
commit of ``inputs.h`` that made its layout; offsets computed by replaying the
plugin's sizing loop over each ``inputs.h`` in C++ and cross-checked in Python):

=========  ==========  ======  =====  ========  ========  =========  ======
version    date        inputs  bytes  steering  aforward  abackward  clutch
=========  ==========  ======  =====  ========  ========  =========  ======
10c9355    2024-04-13  42      54     0         4         8          12
a92580c    2024-06-24  48      60     0         4         8          12
408d1f2    2024-10-30  50      62     0         4         8          12
1ad1099    2025-07-20  278     344    118       122       126        130
4c4f074    2025-07-21  276     342    118       122       126        130
=========  ==========  ======  =====  ========  ========  =========  ======

``408d1f2``'s layout is unchanged by 19ee797 (display names only); ``4c4f074``'s
is unchanged up to 27a7b0a6290b8d08be9bf1bea2de43dcf25d10e6 (main of
2026-03-30), whose ``inputs.h`` and ``scs_sdk_controller.cpp`` these notes quote.
``1ad1099`` differs from ``4c4f074`` by the bools ``engine`` and ``engineelect``
after ``menu``. The 54-byte block of ``10c9355`` (4 floats, then 38 bools) is
also the block of the older ETS2LA/scs-sdk-controller-old plugin.

Axis meanings: ``steering`` in [-1, 1], + = right (ETS2LA's SDKController
documentation, docs/04-Modules/SDKController.md @ ETS2LA/documentation 8b22c5a:
"steering = 0.2 # Will steer 20% right") -- the simulator's sign, the opposite
of the telemetry's counterclockwise one. ``aforward`` (accelerator) and
``abackward`` (brake) in [0, 1]; ``clutch`` in [0, 1].

No project imports and no torch: both the simulator's reader
(sim.scs_controls) and the agent's writer (agent.io.axes.scs_controls) use
this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

#: the plugin's mapping name on Windows: a named mapping, not a file
WINDOWS_TAGNAME = "Local\\SCSControls"
#: the file the plugin's Linux build makes and maps
LINUX_PATH = "/dev/shm/SCS/SCSControls"
#: one axis value: a little-endian float32
AXIS_FORMAT = "<f"
#: what a user has to install, for error messages
PLUGIN_HINT = ("ETS2LA's SCS SDK input plugin scs-sdk-controller (https://github.com/ETS2LA/scs-sdk-controller) "
               "in the game's bin/<platform>/plugins folder and start the game (it makes the block when it loads)")


@dataclass(frozen=True)
class ControlsLayout:
    """One plugin version's block: ``size`` bytes in all (``inputs`` values), and the
    byte offsets of the four axes (each an ``AXIS_FORMAT`` float)."""

    version: str
    date: str
    inputs: int
    size: int
    steering: int
    aforward: int
    abackward: int
    clutch: int
    source: str

    @property
    def axis_offsets(self) -> Mapping[str, int]:
        """The axes by the plugin's input name, in block order."""
        return MappingProxyType({"steering": self.steering, "aforward": self.aforward,
                                 "abackward": self.abackward, "clutch": self.clutch})


def _layout(version: str, date: str, inputs: int, size: int, first_axis: int) -> ControlsLayout:
    # the four axes are consecutive floats in every version
    return ControlsLayout(version, date, inputs, size, first_axis, first_axis + 4, first_axis + 8, first_axis + 12,
                          f"ETS2LA/scs-sdk-controller inputs.h @ {version}")


LAYOUTS: Mapping[str, ControlsLayout] = MappingProxyType({
    "10c9355": _layout("10c9355", "2024-04-13", 42, 54, 0),
    "a92580c": _layout("a92580c", "2024-06-24", 48, 60, 0),
    "408d1f2": _layout("408d1f2", "2024-10-30", 50, 62, 0),
    "1ad1099": _layout("1ad1099", "2025-07-20", 278, 344, 118),
    "4c4f074": _layout("4c4f074", "2025-07-21", 276, 342, 118),
})
#: the plugin's current layout (main up to 27a7b0a, 2026-03-30): what the simulator makes by default
NEWEST = "4c4f074"


def layout_for_size(size: int) -> ControlsLayout | None:
    """The version whose block has ``size`` bytes, or None (sizes are unique: see the table)."""
    for layout in LAYOUTS.values():
        if layout.size == size:
            return layout
    return None


def plugin_read_value(value: float) -> float:
    """What the plugin hands the game for a float ``value`` it finds in the block:
    ``std::clamp(float(-1), value, float(1))``, its arguments swapped. NaN and values
    <= -1 give -1; values above 1 are returned as they are, as MSVC's ``clamp`` does
    (libstdc++'s gives 1 there; a caller clips to its own range either way)."""
    return value if value > -1.0 else -1.0

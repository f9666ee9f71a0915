"""The SCS SDK input plugin backend writes the plugin's block byte for byte, and refuses what it cannot write.

The offsets below are typed from ETS2LA/scs-sdk-controller's ``inputs.h`` at each
commit (floats 4 bytes, bools 1 byte, packed in array order, block size = their
sum, as ``scs_sdk_controller.cpp`` maps it), independent of sim.scs_controls_layout.
"""
from __future__ import annotations

import math
import mmap
import os
import struct

import pytest

from agent.io.axes import NEUTRAL, Axes, AxisOutput
from agent.io.axes.scs_controls import (ControlsError, ControlsNotFound, ControlsTooShort, ControlsVersionUnknown,
                                        ScsControlsOutput)
from sim.scs_controls import ControlsDevice

#: version: (block bytes, steering, aforward, abackward, clutch offsets), read from inputs.h at that commit
PUBLISHED = {
    "10c9355": (54, 0, 4, 8, 12),
    "a92580c": (60, 0, 4, 8, 12),
    "408d1f2": (62, 0, 4, 8, 12),
    "1ad1099": (344, 118, 122, 126, 130),
    "4c4f074": (342, 118, 122, 126, 130),
}


def _expected(size: int, offsets, fill: int, values) -> bytes:
    block = bytearray([fill]) * size
    for off, value in zip(offsets, values):
        block[off:off + 4] = struct.pack("<f", value)
    return bytes(block)


@pytest.mark.parametrize("version", sorted(PUBLISHED))
def test_backend_writes_the_published_offsets_byte_for_byte(tmp_path, version):
    size, *offsets = PUBLISHED[version]
    path = tmp_path / "SCSControls"
    path.write_bytes(b"\xab" * size)  # as if the plugin's bools held 0xab: nothing but the axes may change
    out = ScsControlsOutput.open(path)
    assert out.layout.version == version and isinstance(out, AxisOutput)
    assert path.read_bytes() == _expected(size, offsets, 0xAB, (0.0, 0.0, 0.0, 0.0))  # neutral at open
    out.send(Axes(steer=0.25, throttle=0.5, brake=0.75))
    assert path.read_bytes() == _expected(size, offsets, 0xAB, (0.25, 0.5, 0.75, 0.0))
    out.send(Axes(steer=-1.0, throttle=1.0))
    assert path.read_bytes() == _expected(size, offsets, 0xAB, (-1.0, 1.0, 0.0, 0.0))
    out.neutral()
    assert path.read_bytes() == _expected(size, offsets, 0xAB, (0.0, 0.0, 0.0, 0.0)) and out.last == NEUTRAL
    out.send(Axes(steer=0.5))
    out.close()  # goes neutral
    assert path.read_bytes() == _expected(size, offsets, 0xAB, (0.0, 0.0, 0.0, 0.0))
    out.close()  # twice is fine
    with pytest.raises(ControlsError, match="closed"):
        out.send(Axes(steer=0.1))


def test_backend_to_simulator_round_trip(tmp_path):
    path = tmp_path / "shm" / "SCS" / "SCSControls"
    with ControlsDevice(path, version="1ad1099") as device, ScsControlsOutput.open(path) as out:
        assert out.layout.version == "1ad1099"  # named by the size the simulator made
        out.send(Axes(steer=-0.375, throttle=0.125, brake=1.0))
        r = device.read()
        assert (r.steering, r.aforward, r.abackward, r.clutch) == (-0.375, 0.125, 1.0, 0.0)


def test_missing_block_names_the_path_and_the_plugin(tmp_path):
    path = tmp_path / "nothing" / "SCSControls"
    with pytest.raises(ControlsNotFound) as err:
        ScsControlsOutput.open(path)
    assert err.value.path == str(path)
    assert str(path) in str(err.value) and "scs-sdk-controller" in str(err.value)
    assert f"truckpilot sim --scs-controls {path}" in str(err.value)


@pytest.mark.parametrize("size, error, words", [
    (0, ControlsTooShort, "empty"),
    (20, ControlsTooShort, "cut short"),
    (100, ControlsVersionUnknown, "no scs-sdk-controller version"),
    (343, ControlsVersionUnknown, "no scs-sdk-controller version"),
])
def test_short_or_unknown_size_is_refused_with_the_path(tmp_path, size, error, words):
    path = tmp_path / "SCSControls"
    path.write_bytes(b"\x00" * size)
    with pytest.raises(error) as err:
        ScsControlsOutput.open(path)
    message = str(err.value)
    assert str(path) in message and f"{size} bytes" in message and words in message
    assert "scs-sdk-controller" in message and err.value.size == size
    assert path.read_bytes() == b"\x00" * size  # nothing written


def test_asking_for_a_version_checks_the_size(tmp_path):
    path = tmp_path / "SCSControls"
    path.write_bytes(b"\x00" * 54)
    with pytest.raises(ControlsTooShort) as short:
        ScsControlsOutput.open(path, version="4c4f074")
    assert (short.value.size, short.value.needed) == (54, 342) and str(path) in str(short.value)
    path.write_bytes(b"\x00" * 342)
    with pytest.raises(ControlsVersionUnknown, match="not the 62 of plugin version 408d1f2"):
        ScsControlsOutput.open(path, version="408d1f2")
    with pytest.raises(ValueError, match="unknown scs-sdk-controller version 'v9'"):
        ScsControlsOutput.open(path, version="v9")
    with ScsControlsOutput.open(path, version="4c4f074") as out:
        assert out.layout.size == 342


def test_a_block_that_shrinks_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "SCSControls"
    path.write_bytes(b"\x00" * 342)
    out = ScsControlsOutput.open(path)
    os.truncate(path, 62)  # the game reloaded an older plugin: writing at offset 118 would be SIGBUS
    with pytest.raises(ControlsError, match="no longer 342 bytes"):
        out.send(Axes(steer=0.5))
    with pytest.raises(ControlsError):
        out.close()
    assert path.stat().st_size == 62


def test_windows_maps_the_named_block_at_the_versions_size():
    calls = []

    def fake_map(tagname, size):
        calls.append((tagname, size))
        return mmap.mmap(-1, size)

    out = ScsControlsOutput.open(platform="win32", map_windows=fake_map)
    assert calls == [("Local\\SCSControls", 342)] and out.path == "Local\\SCSControls"
    out.send(Axes(steer=0.5, brake=0.25))
    assert struct.unpack_from("<fff", out._mm, 118) == (0.5, 0.0, 0.25)
    out.close()
    ScsControlsOutput.open(platform="win32", map_windows=fake_map, version="408d1f2").close()
    assert calls[-1] == ("Local\\SCSControls", 62)


def test_axes_hold_only_finite_values_in_range():
    for bad in (dict(steer=math.nan), dict(steer=1.5), dict(throttle=-0.1), dict(brake=math.inf)):
        with pytest.raises(ValueError, match="finite and in"):
            Axes(**bad)
    assert Axes.clipped(2.0, -1.0, 1.5) == Axes(1.0, 0.0, 1.0)
    assert Axes.clipped(-0.3, 0.2, 0.0) == Axes(-0.3, 0.2, 0.0)
    with pytest.raises(ValueError, match="not finite"):
        Axes.clipped(math.nan, 0.0, 0.0)  # the plugin would read NaN steering as full left lock

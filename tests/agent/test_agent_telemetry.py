"""The SCS telemetry reader (agent.io.telemetry), `truckpilot telemetry` and doctor's telemetry line.

The blocks here are written from the plugin's published struct, with the offsets typed in
from scs-telemetry/inc/scs-telemetry-common.hpp of RenCloud/scs-sdk-plugin (revision 10 at
2be7683, revision 12 at 008a168), not from the project's layout table, so a wrong entry in
the table fails these tests.
"""
from __future__ import annotations

import json
import mmap
import struct

import pytest

from agent.apps import doctor
from agent.apps.cli import main as truckpilot
from agent.io.telemetry import (TelemetryNotFound, TelemetryReading, TelemetryRevisionUnsupported, TelemetrySource,
                                TelemetryTooShort, probe_path)

BLOCK_SIZE = 32 * 1024  # SCS_PLUGIN_MMF_SIZE
# scsTelemetryMap_t, both revisions: zone 1 (0..39), scs_values at 40, truck_f at 948, truck_b at 1566
SDK_ACTIVE, PAUSED, TIME, SIMULATED_TIME, RENDER_TIME = 0, 4, 8, 16, 24
REVISION, VERSION_MAJOR, VERSION_MINOR, GAME = 40, 44, 48, 52
SPEED, USER_STEER, USER_THROTTLE, USER_BRAKE = 948, 956, 960, 964
GAME_STEER, GAME_THROTTLE, GAME_BRAKE, CRUISE_SPEED = 972, 976, 980, 988
# truck_b: 22 bools from parkBrake (1566) to lightsReverse (1587), then rev 10: cruiseControl;
# rev 12: lightsHazard, cruiseControl
CRUISE_ON = {10: 1588, 12: 1589}
LIGHTS_HAZARD_REV12 = 1588


def plugin_block(revision: int, *, paused: bool = False, speed: float = 23.5, user=(-0.25, 0.75, 0.0),
                 game=(-0.125, 0.5, 0.0), cruise_speed: float = 0.0, hazard: bool = False) -> bytearray:
    """A block as the plugin writes it (little-endian; floats chosen exact in float32)."""
    b = bytearray(BLOCK_SIZE)
    struct.pack_into("<?", b, SDK_ACTIVE, True)
    struct.pack_into("<?", b, PAUSED, paused)
    struct.pack_into("<QQQ", b, TIME, 5_000_000, 4_000_000, 6_000_000)
    struct.pack_into("<IIII", b, REVISION, revision, 1, 18, 1)  # ETS2, telemetry version 1.18
    struct.pack_into("<5f", b, SPEED, speed, 1200.0, *user)  # speed, engineRpm, userSteer/Throttle/Brake
    struct.pack_into("<fff", b, GAME_STEER, *game)
    struct.pack_into("<f", b, CRUISE_SPEED, cruise_speed)
    struct.pack_into("<?", b, CRUISE_ON[revision], cruise_speed > 0)
    if revision == 12:
        struct.pack_into("<?", b, LIGHTS_HAZARD_REV12, hazard)
    return b


def write(tmp_path, block, name="SCSTelemetry"):
    path = tmp_path / name
    path.write_bytes(bytes(block))
    return path


@pytest.mark.parametrize("revision", [10, 12])
def test_reads_the_plugins_block_exactly(tmp_path, revision):
    path = write(tmp_path, plugin_block(revision, paused=True, speed=-3.75, user=(0.5, 0.0, 1.0),
                                        game=(0.375, 0.0, 0.875), cruise_speed=22.25))
    with TelemetrySource.open(path) as source:
        assert source.revision == revision
        r = source.read()
    assert r == TelemetryReading(
        path=str(path), revision=revision, sdk_active=True, paused=True, time_us=5_000_000,
        simulated_time_us=4_000_000, render_time_us=6_000_000, game="ets2", version_major=1, version_minor=18,
        speed_m_s=-3.75, user_steer=0.5, user_throttle=0.0, user_brake=1.0, game_steer=0.375, game_throttle=0.0,
        game_brake=0.875, cruise_control=True, cruise_control_speed_m_s=22.25)


@pytest.mark.parametrize("revision", [10, 12])
def test_running_with_cruise_off(tmp_path, revision):
    """Rev 12's lightsHazard sits where rev 10's cruiseControl is: hazards on must not read as cruise on."""
    path = write(tmp_path, plugin_block(revision, hazard=True))
    with TelemetrySource.open(path) as source:
        r = source.read()
    assert (r.paused, r.speed_m_s, r.user_steer, r.user_throttle, r.user_brake) == (False, 23.5, -0.25, 0.75, 0.0)
    assert (r.game_steer, r.game_throttle, r.game_brake) == (-0.125, 0.5, 0.0)
    assert (r.cruise_control, r.cruise_control_speed_m_s) == (False, 0.0)


def test_read_follows_the_writer(tmp_path):
    path = write(tmp_path, plugin_block(12))
    with TelemetrySource.open(path) as source:
        assert source.read().speed_m_s == 23.5
        with open(path, "r+b") as f:  # the game writes in place
            f.seek(SPEED)
            f.write(struct.pack("<f", 11.0))
            f.seek(PAUSED)
            f.write(b"\x01")
        r = source.read()
    assert (r.speed_m_s, r.paused) == (11.0, True)


def test_truncated_block_is_a_clear_error(tmp_path):
    path = write(tmp_path, plugin_block(12)[:1000])
    with pytest.raises(TelemetryTooShort) as err:
        TelemetrySource.open(path)
    assert str(path) in str(err.value) and "1000 bytes" in str(err.value) and "1590 are needed" in str(err.value)
    assert (err.value.path, err.value.size, err.value.needed) == (str(path), 1000, 1590)
    assert "scs-sdk-plugin" in str(err.value)


def test_empty_file_is_too_short(tmp_path):
    path = write(tmp_path, b"")
    with pytest.raises(TelemetryTooShort, match="0 bytes"):
        TelemetrySource.open(path)


@pytest.mark.parametrize("revision", [9, 11, 13])
def test_unknown_revision_is_a_clear_error(tmp_path, revision):
    block = plugin_block(12)
    struct.pack_into("<I", block, REVISION, revision)
    path = write(tmp_path, block)
    with pytest.raises(TelemetryRevisionUnsupported) as err:
        TelemetrySource.open(path)
    message = str(err.value)
    assert str(path) in message and f"revision {revision}" in message and "10 and 12" in message
    assert err.value.revision == revision and "scs-sdk-plugin" in message


def test_revision_zero_says_the_block_is_empty(tmp_path):
    path = write(tmp_path, bytes(BLOCK_SIZE))
    with pytest.raises(TelemetryRevisionUnsupported, match="empty: the game is not running"):
        TelemetrySource.open(path)


def test_missing_file_names_the_path_and_the_plugin(tmp_path):
    path = tmp_path / "nothing-here"
    with pytest.raises(TelemetryNotFound) as err:
        TelemetrySource.open(path)
    assert str(path) in str(err.value) and "scs-sdk-plugin" in str(err.value)


def test_linux_probe_tries_both_plugin_paths():
    assert probe_path("linux", exists=lambda p: p == "/dev/shm/SCS/SCSTelemetry") == "/dev/shm/SCS/SCSTelemetry"
    assert probe_path("linux", exists=lambda p: True) == "/dev/shm/SCSTelemetry"
    with pytest.raises(TelemetryNotFound) as err:
        probe_path("linux", exists=lambda p: False)
    assert "/dev/shm/SCSTelemetry" in str(err.value) and "/dev/shm/SCS/SCSTelemetry" in str(err.value)


def test_windows_opens_the_named_mapping_read_only():
    """The real Windows mapping cannot be opened here (no Windows, no game): a fake stands in for
    the one mmap call with ``tagname``; everything after it is the real reader."""
    calls = []

    def fake_map(tagname, size):
        calls.append((tagname, size))
        block = mmap.mmap(-1, size)
        block[:] = bytes(plugin_block(12, speed=9.5))
        return block

    with TelemetrySource.open(platform="win32", map_windows=fake_map) as source:
        r = source.read()
    assert calls == [("Local\\SCSTelemetry", BLOCK_SIZE)]
    assert (r.path, r.revision, r.speed_m_s) == ("Local\\SCSTelemetry", 12, 9.5)


def test_cli_prints_one_reading_as_json(tmp_path, capsys):
    path = write(tmp_path, plugin_block(10, cruise_speed=25.0))
    assert truckpilot(["telemetry", "--path", str(path), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    reading = json.loads(lines[0])
    assert reading["path"] == str(path) and reading["revision"] == 10
    assert (reading["speed_m_s"], reading["user_throttle"], reading["paused"]) == (23.5, 0.75, False)
    assert (reading["cruise_control"], reading["cruise_control_speed_m_s"]) == (True, 25.0)


def test_cli_follow_and_text(tmp_path, capsys):
    path = write(tmp_path, plugin_block(12))
    assert truckpilot(["telemetry", "--path", str(path), "--follow", "--hz", "50", "--count", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("rev 12 ets2" in line and "84.6 km/h" in line for line in lines)


def test_cli_error_exits_1_naming_the_path(tmp_path, capsys):
    path = write(tmp_path, plugin_block(12)[:100])
    assert truckpilot(["telemetry", "--path", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "100 bytes" in err


def test_doctor_says_whether_telemetry_is_reachable(tmp_path):
    ok = doctor.check_telemetry(str(write(tmp_path, plugin_block(12))))
    assert ok.status == doctor.OK and "revision 12" in ok.message and str(tmp_path) in ok.message
    missing = doctor.check_telemetry(str(tmp_path / "absent"))
    assert missing.status == doctor.WARN and str(tmp_path / "absent") in missing.message

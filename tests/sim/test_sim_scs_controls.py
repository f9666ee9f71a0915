"""The simulator plays the game's side of ETS2LA's SCS SDK input plugin: it makes the controls block,
reads the analog axes from it, and `truckpilot sim --scs-controls` steers with them.

The offsets are typed from ETS2LA/scs-sdk-controller's ``inputs.h`` at each commit
(independent of sim.scs_controls_layout): floats 4 bytes, bools 1 byte, packed in
array order; the block is exactly their sum.
"""
from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.io.axes import Axes
from agent.io.axes.scs_controls import ControlsError, ScsControlsOutput
from agent.io.telemetry import TelemetryError, TelemetrySource
from sim import cli as sim_cli
from sim.env import TruckSimEnv
from sim.scs_controls import ControlsDevice, ControlsReading, mix_controls
from sim.scs_controls_layout import LAYOUTS, NEWEST, layout_for_size
from sim.truck import TruckControls

REPO = Path(__file__).resolve().parents[2]

#: version: (block bytes, steering, aforward, abackward, clutch offsets), read from inputs.h at that commit
PUBLISHED = {
    "10c9355": (54, 0, 4, 8, 12),
    "a92580c": (60, 0, 4, 8, 12),
    "408d1f2": (62, 0, 4, 8, 12),
    "1ad1099": (344, 118, 122, 126, 130),
    "4c4f074": (342, 118, 122, 126, 130),
}


def test_the_table_is_the_published_layouts():
    assert {v: (x.size, x.steering, x.aforward, x.abackward, x.clutch) for v, x in LAYOUTS.items()} == PUBLISHED
    assert NEWEST == "4c4f074"
    assert all(layout_for_size(size).version == v for v, (size, *_) in PUBLISHED.items())  # sizes tell versions apart


@pytest.mark.parametrize("version", sorted(PUBLISHED))
def test_device_reads_a_block_written_at_the_published_offsets(tmp_path, version):
    size, steering, aforward, abackward, clutch = PUBLISHED[version]
    path = tmp_path / "shm" / "SCS" / "SCSControls"
    with ControlsDevice(path, version=version) as device:
        assert path.read_bytes() == bytes(size)  # made at the plugin's size, zeroed
        assert device.read() == ControlsReading(0.0, 0.0, 0.0, 0.0)
        with open(path, "r+b") as f:  # another program writes, as ETS2LA's SCSController does
            for off, value in ((steering, 0.625), (aforward, 0.25), (abackward, 0.125), (clutch, 0.5)):
                f.seek(off)
                f.write(struct.pack("<f", value))
        assert device.read() == ControlsReading(0.625, 0.25, 0.125, 0.5)


def test_device_zeroes_a_stale_block_and_reads_like_the_plugin(tmp_path):
    path = tmp_path / "SCSControls"
    path.write_bytes(struct.pack("<f", 0.9) * 100)  # an earlier writer's steering, another size
    with ControlsDevice(path, version="408d1f2") as device:
        assert path.stat().st_size == 62 and device.read() == ControlsReading(0.0, 0.0, 0.0, 0.0)
        with open(path, "r+b") as f:
            f.write(struct.pack("<ffff", math.nan, -3.0, 1.5, -0.5))
        # the plugin's clamp(-1, value, 1): NaN and <= -1 read as -1, above 1 passes (MSVC build)
        assert device.read() == ControlsReading(-1.0, -1.0, 1.5, -0.5)
    with pytest.raises(ValueError, match="unknown scs-sdk-controller version"):
        ControlsDevice(path, version="nope")


def test_mix_controls_keys_override_steering_pedals_take_the_larger():
    reading = ControlsReading(steering=0.4, aforward=0.3, abackward=0.0, clutch=0.0)
    assert mix_controls(reading, left=False, right=False, throttle=False, brake=False) == \
        TruckControls(0.4, 0.3, 0.0, centring=False)
    assert mix_controls(reading, left=True, right=False, throttle=False, brake=True) == \
        TruckControls(-1.0, 0.3, 1.0, centring=False)
    assert mix_controls(ControlsReading(-7.0, 2.0, 0.5, 0.0), left=False, right=False, throttle=True,
                        brake=False) == TruckControls(-1.0, 1.0, 0.5, centring=False)
    neutral = ControlsReading(0.0, 0.0, 0.0, 0.0)
    for bits in range(16):  # with the axes neutral, exactly the keyboard's controls
        keys = [bool(bits & (1 << i)) for i in range(4)]
        assert mix_controls(neutral, left=keys[0], right=keys[1], throttle=keys[2], brake=keys[3]) == \
            TruckControls.from_keys(*keys)


def test_env_steps_with_mixed_controls_right_steer_turns_right():
    env = TruckSimEnv(render_mode="rgb_array", width=96, height=72, traffic_density=0.0)
    env.reset(seed=0)
    for _ in range(45):  # pick up speed straight
        _, _, _, _, info = env.step(mix_controls(ControlsReading(0.0, 1.0, 0.0, 0.0), left=False, right=False,
                                                 throttle=False, brake=False))
    offset0, heading0 = info["lateral_offset"], info["heading_error"]
    for _ in range(15):
        _, _, _, _, info = env.step(mix_controls(ControlsReading(0.5, 1.0, 0.0, 0.0), left=False, right=False,
                                                 throttle=False, brake=False))
    env.close()
    assert info["steer"] == pytest.approx(0.5) and info["speed"] > 2.0
    assert info["heading_error"] > heading0 + 0.01 and info["lateral_offset"] > offset0  # + = right


def test_autopilot_and_scs_controls_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        sim_cli.build_parser().parse_args(["--autopilot", "--scs-controls", "/tmp/x"])
    assert "not allowed with" in capsys.readouterr().err


def _wait(predicate, source, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        r = source.read()
        seen.append(r)
        if predicate(r):
            return r
        time.sleep(0.05)
    last = seen[-1] if seen else None
    raise AssertionError(f"timed out waiting for {what}; last reading {last}")


def test_sim_command_steers_with_the_backends_axes(tmp_path):
    """`truckpilot sim --scs-controls PATH` headless, steered by the agent's backend; the sim's telemetry shows it."""
    controls, telemetry = tmp_path / "SCS" / "SCSControls", tmp_path / "SCSTelemetry"
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    proc = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "sim", "--size", "160x120", "--traffic", "0",
                             "--fps", "30", "--seconds", "40", "--scs-controls", str(controls),
                             "--telemetry", str(telemetry)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = None
    try:
        deadline = time.monotonic() + 30
        backend = source = None
        while backend is None or source is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the sim did not make its blocks"
            try:
                backend = backend or ScsControlsOutput.open(controls)
                source = source or TelemetrySource.open(telemetry)
            except (ControlsError, TelemetryError):
                time.sleep(0.1)
        with backend, source:
            _wait(lambda r: r.sdk_active and not r.paused, source, 20, "the sim to run")
            backend.send(Axes(steer=0.6, throttle=1.0))
            # telemetry steering is counterclockwise: the sim's steer right reads negative
            moving = _wait(lambda r: r.game_steer < -0.55 and r.speed_m_s > 1.0, source, 20, "a right steer")
            assert moving.user_steer == pytest.approx(-0.6) and moving.user_throttle == pytest.approx(1.0)
            backend.neutral()
            centred = _wait(lambda r: r.game_steer == 0.0, source, 20, "the wheel back at centre")
            assert (centred.user_steer, centred.user_throttle, centred.user_brake) == (0.0, 0.0, 0.0)
            backend.send(Axes(steer=-0.4, brake=1.0))
            _wait(lambda r: r.game_steer > 0.35 and r.user_brake == 1.0, source, 20, "a left steer and the brake")
        # closing the backend went neutral: the sim's input returns to centre
        with TelemetrySource.open(telemetry) as source:
            _wait(lambda r: r.user_steer == 0.0 and r.user_brake == 0.0 and r.game_steer == 0.0, source, 20,
                  "neutral after close")
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode in (0, -15), out
    assert controls.stat().st_size == PUBLISHED[NEWEST][0]


def test_in_process_drive_counts_analog_steps(tmp_path, monkeypatch):
    """drive() in-process: the summary's analog_steps counts frames with the axes off neutral."""
    import pygame

    path = tmp_path / "SCSControls"
    real_get = pygame.event.get
    frame = {"n": 0, "out": None}

    def events():
        real_get()
        frame["n"] += 1
        n = frame["n"]
        if n == 2:
            frame["out"] = ScsControlsOutput.open(path)
            frame["out"].send(Axes(steer=0.5, throttle=1.0))
        if n == 12:
            frame["out"].close()
        if n == 20:
            return [pygame.event.Event(pygame.QUIT)]
        return []

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setattr(pygame.event, "get", events)
    args = sim_cli.build_parser().parse_args(["--size", "96x72", "--fps", "200", "--traffic", "0",
                                              "--scs-controls", str(path)])
    summary = sim_cli.drive(args)
    assert summary["quit"] == "user" and summary["steps"] == 19
    assert summary["analog_steps"] == 10 and summary["keys_down_steps"] == 0  # frames 2..11 read the deflection
    assert summary["speed_m_s"] > 0.0

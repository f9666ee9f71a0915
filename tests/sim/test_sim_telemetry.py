"""The simulator publishes the SCS Telemetry plugin's revision-12 block, read back by the agent's reader."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pygame
import pytest

from agent.io.telemetry import TelemetryError, TelemetrySource
from sim import cli as sim_cli
from sim.env import TruckSimEnv
from sim.expert import Expert
from sim.scs_telemetry import TelemetryPublisher, frame_from_sim
from sim.scs_telemetry_layout import MMF_SIZE
from sim.truck import TruckControls

REPO = Path(__file__).resolve().parents[2]


def test_publisher_writes_the_plugin_block_in_scs_conventions(tmp_path):
    path = tmp_path / "shm" / "SCSTelemetry"
    with TelemetryPublisher(path) as publisher:
        assert path.stat().st_size == MMF_SIZE
        with TelemetrySource.open(path) as source:
            first = source.read()
            assert (first.revision, first.sdk_active, first.paused, first.cruise_control) == (12, True, True, False)
            # left held (the sim's steer is negative to the left, SCS's counterclockwise positive) and brake
            controls = TruckControls.from_keys(left=True, right=False, throttle=False, brake=True)
            publisher.publish(frame_from_sim(controls, truck_steer=-0.5, speed_m_s=12.5, paused=False,
                                             simulated_s=2.0, wall_s=3.0))
            r = source.read()
            assert (r.paused, r.speed_m_s, r.user_steer, r.user_throttle, r.user_brake) == (False, 12.5, 1.0, 0.0, 1.0)
            assert (r.game_steer, r.game_throttle, r.game_brake) == (0.5, 0.0, 1.0)
            assert (r.time_us, r.simulated_time_us, r.render_time_us) == (2_000_000, 2_000_000, 3_000_000)
            assert (r.cruise_control, r.cruise_control_speed_m_s) == (False, 0.0)
    with TelemetrySource.open(path) as source:  # closed like the plugin at shutdown
        last = source.read()
    assert (last.sdk_active, last.paused, last.speed_m_s) == (False, True, 12.5)


def test_reopening_zeroes_the_old_block(tmp_path):
    path = tmp_path / "SCSTelemetry"
    path.write_bytes(b"\xff" * 100)  # a stale, short file
    with TelemetryPublisher(path):
        data = path.read_bytes()
    assert len(data) == MMF_SIZE and data[100:200] == bytes(100)


def test_expert_drive_in_process_publishes_the_sims_speed(tmp_path):
    path = tmp_path / "SCSTelemetry"
    env = TruckSimEnv(render_mode="rgb_array", width=96, height=72)
    expert = Expert(seed=0, dt=env.config.dt)
    env.reset(seed=0)
    speeds = []
    with TelemetryPublisher(path) as publisher, TelemetrySource.open(path) as source:
        for step in range(1, 61):
            keys = expert.act(env)
            _, _, _, _, info = env.step(keys)
            paused = 40 <= step < 50
            publisher.publish(frame_from_sim(TruckControls.from_keys(*(bool(k) for k in keys)),
                                             truck_steer=info["steer"], speed_m_s=info["speed"], paused=paused,
                                             simulated_s=step * env.config.dt, wall_s=step * 0.01))
            r = source.read()
            assert r.speed_m_s == pytest.approx(info["speed"], rel=1e-6)  # float32 in the block
            assert r.game_steer == pytest.approx(-info["steer"], abs=1e-6)
            assert r.user_throttle == float(keys[2]) and r.paused is paused
            speeds.append(r.speed_m_s)
    env.close()
    assert max(speeds) > 1.0  # the expert drove off


def test_pause_key_publishes_paused_and_freezes_the_world(tmp_path, monkeypatch):
    """`truckpilot sim --telemetry` in-process: P pauses (speed and time stand still, paused is set), P resumes."""
    path = tmp_path / "SCSTelemetry"
    readings = []
    real_get = pygame.event.get
    frame = {"n": 0}

    def events():
        real_get()
        frame["n"] += 1
        n = frame["n"]
        if n > 1:
            with TelemetrySource.open(path) as source:
                readings.append((n, source.read()))
        if n in (30, 45):
            return [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_p)]
        if n == 60:
            return [pygame.event.Event(pygame.QUIT)]
        return []

    monkeypatch.setattr(pygame.event, "get", events)
    args = sim_cli.build_parser().parse_args(["--autopilot", "--size", "96x72", "--fps", "200", "--traffic", "0",
                                              "--telemetry", str(path)])
    summary = sim_cli.drive(args)
    assert summary["quit"] == "user"
    by_frame = dict(readings)
    # reading at frame n shows the world after frame n-1's step
    running, paused, resumed = by_frame[25], [by_frame[n] for n in range(32, 46)], by_frame[59]
    assert not running.paused and running.speed_m_s > 0.5
    assert all(r.paused for r in paused)
    assert len({(r.speed_m_s, r.time_us) for r in paused}) == 1  # nothing moves while paused
    assert not resumed.paused and resumed.time_us > paused[0].time_us
    assert summary["steps"] == 60 - 1 - 15  # 15 frames (30..44) paused, none stepped on the quitting frame
    with TelemetrySource.open(path) as source:
        final = source.read()
    assert (final.sdk_active, final.speed_m_s) == (False, pytest.approx(summary["speed_m_s"], abs=0.005))


def test_sim_command_publishes_while_it_runs(tmp_path):
    """`truckpilot sim --autopilot --telemetry PATH` headless, read by the agent's reader while it drives."""
    path = tmp_path / "SCSTelemetry"
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    proc = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "sim", "--autopilot", "--size", "160x120",
                             "--seconds", "6", "--telemetry", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    readings = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with TelemetrySource.open(path) as source:
                    readings.append(source.read())
            except TelemetryError:
                pass  # not created yet
            time.sleep(0.1)  # sampling period: the readings over the run are what the test checks
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    live = [r for r in readings if r.sdk_active]
    assert len(live) >= 10, f"{len(readings)} readings, {len(live)} live\n{out}"
    assert all(r.revision == 12 and not r.cruise_control for r in live)
    assert max(r.speed_m_s for r in live) > 1.0 and live[-1].time_us > live[0].time_us
    assert any(r.user_throttle == 1.0 for r in live)  # the expert's keys are the user input
    speed = float(re.search(r"speed_m_s=([0-9.]+)", out).group(1))
    with TelemetrySource.open(path) as source:
        final = source.read()
    assert not final.sdk_active and final.speed_m_s == pytest.approx(speed, abs=0.005)

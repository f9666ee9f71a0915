"""`truckpilot drive --window --telemetry` against the simulator window publishing SCS telemetry
(`truckpilot sim --telemetry PATH`, the plugin's revision-12 block) on a private Xvfb: the controller
gets the game's speed, and when the game is paused (P pressed through XTest by xdotool) the drive
logs it, holds no key, decides nothing, and drives again once the game runs (issue 28)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.x11
def test_drive_follows_the_games_speed_and_pause(xvfb_display, tmp_path):
    from drive_kit import SimWindowProcess, wait_for_window
    from tests.waiting import wait_until

    from agent.apps.drive import FIRST_TICK_LOG
    from agent.io.keys.x11 import read_held_keys
    from agent.io.telemetry import TelemetrySource
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet
    from training.sessions import Session

    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    title = "TruckPilot telemetry window"
    block = tmp_path / "SCSTelemetry"
    window = SimWindowProcess("--title", title, "--size", "320x240", "--fps", "15", "--seconds", "60",
                              "--traffic", "0", "--telemetry", str(block))
    drive = None
    stderr: list[str] = []
    reader = None
    keys_while_paused = []
    try:
        wait_for_window(title, sim=window)
        wait_until(block.exists, 30, "the sim's telemetry block", alive=window.proc)
        telemetry = TelemetrySource.open(block)
        drive = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "drive", "--model", str(ckpt), "--window",
                                  title, "--telemetry", str(block), "--seconds", "40", "--fps", "15", "--keys", "x11",
                                  "--device", "cpu", "--threads", "1", "--record", str(tmp_path / "rec"),
                                  "--json", str(tmp_path / "stats.json")],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        reader = threading.Thread(target=lambda: stderr.extend(drive.stderr), daemon=True)
        reader.start()
        wait_until(lambda: any(FIRST_TICK_LOG in line for line in stderr), 60, "the drive's first tick", alive=drive)
        wait_until(lambda: telemetry.read().speed_m_s > 0.5, 30, "the truck moving (the game's telemetry)",
                   alive=drive)
        subprocess.run(["xdotool", "key", "p"], check=True, timeout=10)  # the game's pause key, to the focused sim
        wait_until(lambda: telemetry.read().paused, 10, "the game paused (its telemetry)", alive=drive)
        wait_until(lambda: any("game paused" in line for line in stderr), 10, "the drive's pause line", alive=drive)

        def held_nothing_for_a_second():
            keys_while_paused.append(read_held_keys())
            return len(keys_while_paused) >= 20

        wait_until(held_nothing_for_a_second, 10, "20 samples of the X keymap while paused", interval=0.05,
                   alive=drive)
        subprocess.run(["xdotool", "key", "p"], check=True, timeout=10)
        wait_until(lambda: any("game running again" in line for line in stderr), 10, "the drive's resume line",
                   alive=drive)
        wait_until(lambda: read_held_keys().throttle, 20, "the agent's throttle down again", alive=drive)
        telemetry.close()
        drive.send_signal(signal.SIGTERM)
        drive.wait(timeout=20)
    finally:
        if drive is not None and drive.poll() is None:
            drive.kill()
        window.close()
        if reader is not None:
            reader.join(timeout=5)
    err = "".join(stderr)
    assert drive.returncode == 0, err
    # the agent's keys are released by the next tick after the pause is seen; allow that one tick
    assert not any(any(k.as_array()) for k in keys_while_paused[1:]), (keys_while_paused, err)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["paused_steps"] > 0, stats
    assert any("game paused" in e for e in stats["events"]) and any("running again" in e for e in stats["events"])
    records = Session.open(tmp_path / "rec").records()
    assert Session.open(tmp_path / "rec").manifest.source["telemetry"] == str(block)
    speeds = [r.extra.get("speed") for r in records]
    assert all(s is not None for s in speeds) and max(speeds) > 0.5  # the controller drove on the game's speed

"""`truckpilot drive --window --telemetry` against the simulator window publishing SCS telemetry
(`truckpilot sim --telemetry PATH`, the plugin's revision-12 block) on a private Xvfb: the controller
gets the game's speed, and when the game is paused (P pressed through XTest by xdotool) the drive
logs it, holds no key, decides nothing, and drives again once the game runs (issue 28)."""
from __future__ import annotations

import json
import subprocess

import pytest

@pytest.mark.x11
def test_drive_follows_the_games_speed_and_pause(xvfb_display, tmp_path):
    from drive_kit import drive_process, random_direction_checkpoint, sim_window
    from tests.waiting import wait_until

    from agent.io.keys.x11 import read_held_keys
    from agent.io.telemetry import TelemetrySource
    from training.sessions import Session

    ckpt = random_direction_checkpoint(tmp_path / "d.safetensors")
    title = "TruckPilot telemetry window"
    block = tmp_path / "SCSTelemetry"
    keys_while_paused = []
    with sim_window(title, "--size", "320x240", "--fps", "15", "--seconds", "60", "--traffic", "0",
                    "--telemetry", str(block)) as window:
        wait_until(block.exists, 30, "the sim's telemetry block", alive=window.proc)
        telemetry = TelemetrySource.open(block)
        with drive_process(ckpt, title, "--telemetry", str(block), "--seconds", "40", "--keys", "x11",
                           "--record", str(tmp_path / "rec"), "--json", str(tmp_path / "stats.json")) as drive:
            wait_until(lambda: telemetry.read().speed_m_s > 0.5, 30, "the truck moving (the game's telemetry)",
                       alive=drive.proc)
            subprocess.run(["xdotool", "key", "p"], check=True, timeout=10)  # the game's pause key, to the sim
            wait_until(lambda: telemetry.read().paused, 10, "the game paused (its telemetry)", alive=drive.proc)
            drive.wait_for_log("game paused", 10, "the drive's pause line")

            def held_nothing_for_a_second():
                keys_while_paused.append(read_held_keys())
                return len(keys_while_paused) >= 20

            wait_until(held_nothing_for_a_second, 10, "20 samples of the X keymap while paused", interval=0.05,
                       alive=drive.proc)
            subprocess.run(["xdotool", "key", "p"], check=True, timeout=10)
            drive.wait_for_log("game running again", 10, "the drive's resume line")
            wait_until(lambda: read_held_keys().throttle, 20, "the agent's throttle down again", alive=drive.proc)
            telemetry.close()
            returncode = drive.stop()
    err = drive.log
    assert returncode == 0, err
    # the agent's keys are released by the next tick after the pause is seen; allow that one tick
    assert not any(any(k.as_array()) for k in keys_while_paused[1:]), (keys_while_paused, err)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["paused_steps"] > 0, stats
    assert any("game paused" in e for e in stats["events"]) and any("running again" in e for e in stats["events"])
    records = Session.open(tmp_path / "rec").records()
    assert Session.open(tmp_path / "rec").manifest.source["telemetry"] == str(block)
    speeds = [r.extra.get("speed") for r in records]
    assert all(s is not None for s in speeds) and max(speeds) > 0.5  # the controller drove on the game's speed

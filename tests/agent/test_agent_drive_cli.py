"""``truckpilot drive`` as a user runs it (subprocess, real checkpoints), and the drive recorder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.apps.drive import DriveRecorder, controller_config_for_time_scale
from agent.runtime.loop import Decision, KeyResult, Observation
from training.sessions import Session
from agent.types import Action, Frame, KeysHeld
from perception.types import Detection, Perception

REPO = Path(__file__).resolve().parents[2]


def truckpilot(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.apps.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def direction_checkpoint(module_tmp_path) -> Path:
    """A real (untrained, random-init) ResNet34 DirectionNet checkpoint at a small input size."""
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    torch.manual_seed(0)
    net = DirectionNet(DirectionConfig(input_size=(48, 64), trunk=TrunkConfig(weights="none")))
    return save_model(module_tmp_path / "direction.safetensors", net)


def test_drive_sim_records_and_prints_latency(direction_checkpoint, tmp_path):
    out = tmp_path / "drive"
    stats_file = tmp_path / "stats.json"
    r = truckpilot("drive", "--model", str(direction_checkpoint), "--sim", "--steps", "12", "--sim-size", "160x120",
                   "--seed", "4", "--record", str(out), "--json", str(stats_file), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "12 steps" in r.stdout and "FPS" in r.stdout
    for stage in ("capture", "perceive", "control", "keys", "frame_to_key"):
        assert any(line.strip().startswith(stage) for line in r.stdout.splitlines()), (stage, r.stdout)
    stats = json.loads(stats_file.read_text())
    assert stats["steps"] == 12 and stats["stopped_by"] == "steps"
    for name, stage in stats["stages"].items():  # order statistics of one stage's samples: p50 <= p95 <= max
        assert stage["p50_ms"] <= stage["p95_ms"] <= stage["max_ms"] and stage["mean_ms"] <= stage["max_ms"], name
    assert stats["stages"]["frame_to_key"]["count"] == 12  # one sample a step
    # frame to key spans perceive (and control and keys) of the same step
    assert stats["stages"]["frame_to_key"]["p50_ms"] >= stats["stages"]["perceive"]["p50_ms"]
    session = Session.open(out)
    records = session.records()
    assert len(records) == 12
    assert session.manifest.source["kind"] == "sim" and session.manifest.source["driver"] == "model"
    assert session.manifest.source["models"]["direction"]["input_size"] == [48, 64]
    for rec in records:
        assert rec.direction in ("left", "straight", "right") and rec.direction_source == "model"
        probs = rec.extra["model_probs"]
        assert set(probs) == {"left", "straight", "right"} and sum(probs.values()) == pytest.approx(1, abs=1e-3)
        assert rec.direction == max(probs, key=probs.get)
        assert rec.extra["sim_direction"] in ("left", "straight", "right") and rec.extra["engaged"] is True
        assert rec.action is not None and "speed" in rec.extra
    assert session.load_image(records[0]).shape == (120, 160, 3)


def test_drive_usage_errors(tmp_path):
    r = truckpilot("drive", "--sim", "--steps", "3", env={"TRUCKPILOT_START": "none"})  # no starting pair
    assert r.returncode == 2 and "--model" in r.stderr
    r = truckpilot("drive", "--sim", "--steps", "3", env={"TRUCKPILOT_START": str(tmp_path / "gone.safetensors")})
    assert r.returncode == 1 and "TRUCKPILOT_START" in r.stderr and "gone.safetensors" in r.stderr
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    r = truckpilot("drive", "--model", str(bad), "--sim", "--steps", "3")
    assert r.returncode == 1 and str(bad) in r.stderr
    r = truckpilot("drive", "--model", str(bad), "--sim", "--time-scale", "0")
    assert r.returncode != 0


def test_recorder_stores_detections_as_model_boxes_and_resizes_odd_frames(tmp_path):
    rec = DriveRecorder(tmp_path / "s", source={"kind": "region"}, width=200, height=100, fps=10,
                        classes=("car", "truck", "person", "sign"), image_format="png")
    dets = (Detection((10.0, 20.0, 60.0, 80.0), "car", 0.91), Detection((100.0, 10.0, 140.0, 50.0), "sign", 0.55),
            Detection((0.0, 0.0, 5.0, 5.0), "cow", 0.99))  # a class the session does not know: left out
    perception = Perception("left", {"left": 0.7, "straight": 0.2, "right": 0.1}, dets, {"total": 1.0})
    image = np.full((100, 200, 3), 90, np.uint8)
    result = KeyResult(held=KeysHeld(left=True, throttle=True))

    def decision(action: Action) -> Decision:
        return Decision(keys=result.held, action=action, perception=perception)

    rec.record(Observation(Frame(image, 0.0, 0), 0.0), decision(Action(-0.6, 0.5, 0.0)), result, 3.0)
    big = np.full((200, 400, 3), 90, np.uint8)  # the window grew: resized to the session's 200x100
    rec.record(Observation(Frame(big, 0.1, 1), 0.1), decision(Action(-0.6, 0.5, 0.0)), result, 3.0)
    person = KeyResult(held=KeysHeld(), engaged=False, person_keys=KeysHeld(right=True), takeover=True)
    rec.record(Observation(Frame(image, 0.2, 2), 0.2), decision(Action()), person, 3.0)
    rec.close()
    records = Session.open(tmp_path / "s").records()
    assert len(records) == 3
    first, second, third = records
    assert first.boxes_source == "model" and first.labels == ("car", "sign")
    assert first.boxes[0] == pytest.approx((10, 20, 60, 80)) and first.extra["model_scores"] == [0.91, 0.55]
    assert first.keys == (True, False, True, False) and first.action == pytest.approx((-0.6, 0.5, 0.0))
    assert second.boxes[0] == pytest.approx((5, 10, 30, 40))  # halved with the frame
    assert third.extra["takeover"] is True and third.keys == (False, True, False, False)
    assert third.direction == "right" and third.direction_source == "keys" and third.extra["engaged"] is False
    assert third.extra["model_direction"] == "left"  # what the model thought, kept for review
    # the takeover still going on when the recording closed is marked (and logged) at close
    (mark,) = rec.interventions
    assert (mark.start_index, mark.frames, mark.ended, mark.person_keys) == (2, 1, False, ("right",))
    assert mark.model_index == 1 and mark.model_direction == "left" and mark.model_probs["left"] == 0.7


def test_time_scale_divides_the_controller_time_constants():
    from agent.runtime.controller import ControllerConfig

    base = ControllerConfig()
    fast = controller_config_for_time_scale(base, 2.0)
    assert fast.pwm_period_s == base.pwm_period_s / 2 and fast.steer_tau_s == base.steer_tau_s / 2
    assert fast.target_speed_mps == base.target_speed_mps and fast.steer_gain == base.steer_gain
    assert controller_config_for_time_scale(base, 1.0) is base
    with pytest.raises(ValueError):
        controller_config_for_time_scale(base, 0)


@pytest.mark.x11
def test_drive_window_cli_presses_keys_in_the_sim_window(xvfb_display, tmp_path):
    """`truckpilot drive --window` on the sim's window: capture with mss, XTest keys, latency printed;
    the sim process counts the steps on which it saw a driving key down."""
    from drive_kit import sim_window

    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    title = "TruckPilot drive CLI window"
    with sim_window(title, "--size", "320x240", "--fps", "15", "--seconds", "60") as window:
        r = truckpilot("drive", "--model", str(ckpt), "--window", title, "--steps", "25", "--fps", "15",
                       "--keys", "x11", "--device", "cpu", "--record", str(tmp_path / "rec"))
    # the window closed: the sim printed its summary
    assert r.returncode == 0, r.stderr
    assert "25 steps" in r.stdout and "frame_to_key" in r.stdout, r.stdout
    summary = next(line for line in window.lines if line.startswith("sim summary:"))
    keys_down_steps = int(summary.split("keys_down_steps=")[1].split()[0])
    assert keys_down_steps > 0, summary  # the cruise throttle reached the sim through XTest
    records = Session.open(tmp_path / "rec").records()
    import re

    repeated = re.search(r"(\d+) without a new frame", r.stdout)
    repeated = int(repeated.group(1)) if repeated else 0  # ticks that found no new frame are not recorded
    assert len(records) == 25 - repeated and len(records) >= 15 and records[0].extra["engaged"] is True
    assert Session.open(tmp_path / "rec").manifest.image_format == "jpg"


@pytest.mark.x11
def test_sigterm_mid_drive_releases_the_keys_and_prints_the_latency(xvfb_display, tmp_path):
    import signal
    import threading

    from drive_kit import sim_window
    from tests.waiting import wait_until

    from agent.apps.drive import FIRST_TICK_LOG
    from agent.io.keys.x11 import read_held_keys
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    title = "TruckPilot SIGTERM window"
    drive = None
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}  # the drive's lines so far

    def follow(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    readers = []
    with sim_window(title, "--size", "320x240", "--seconds", "40"):
        try:
            drive = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "drive", "--model", str(ckpt),
                                      "--window", title, "--seconds", "30", "--keys", "x11", "--device", "cpu",
                                      "--threads", "1"],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, stream in (("stdout", drive.stdout), ("stderr", drive.stderr)):
                readers.append(threading.Thread(target=follow, args=(stream, streams[name]), daemon=True))
                readers[-1].start()
            # the throttle goes down inside the first step's key send, microseconds before that step's
            # frame_to_key is timed: a signal sent then can land between the two (0 steps, no latency row).
            # The drive logs FIRST_TICK_LOG once the first tick is done, so the report has a latency.
            wait_until(lambda: any(FIRST_TICK_LOG in line for line in streams["stderr"]), 60,
                       "the drive's first tick (its log line)", alive=drive)
            # the agent is driving: its throttle is down on the X server (the cruise duty lifts it at times)
            wait_until(lambda: read_held_keys().throttle, 30, "the drive's throttle down on the X server", alive=drive)
            drive.send_signal(signal.SIGTERM)
            drive.wait(timeout=20)
            held_after = read_held_keys()
        finally:
            if drive is not None and drive.poll() is None:
                drive.kill()
            for reader in readers:
                reader.join(timeout=5)
    out, err = "".join(streams["stdout"]), "".join(streams["stderr"])
    assert drive.returncode == 0, err
    assert "stopped by signal" in out and "frame_to_key" in out, out
    assert held_after == KeysHeld()


def test_drive_without_a_model_drives_with_the_published_starting_pair(tmp_path):
    from perception.starting_pair import PUBLISHED_PAIR, read_pair_meta

    assert PUBLISHED_PAIR.is_file(), f"{PUBLISHED_PAIR} is part of the product: `truckpilot pretrain --publish`"
    r = truckpilot("drive", "--sim", "--steps", "5", "--engine", "torch", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the starting pair" in r.stderr
    unpacked = sorted((tmp_path / "truckpilot").glob("start-*/best.*.safetensors"))
    assert [p.name for p in unpacked] == ["best.detector.safetensors", "best.direction.safetensors"]
    from perception.checkpoint import read_card

    cards = read_pair_meta(PUBLISHED_PAIR)["cards"]
    assert read_card(unpacked[0]).input_size == tuple(cards["detector"]["input_size"])

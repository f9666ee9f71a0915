"""Replay regression tests (``agent.runtime.replay``, ``truckpilot replay``).

The fixture tests/agent/data/replay/drive is a sim drive recorded by ``truckpilot drive``'s parts
with the tiny e2e ensemble (see tests/agent/replay_kit.py). When a change to preprocessing, the
networks, their decoding or the controller is meant to change what the agent does, these tests
fail until the fixture is re-recorded on purpose: ``python tests/agent/replay_kit.py regenerate``.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from replay_kit import FIXTURE, FIXTURE_STEPS, fixture_controller_config, fixture_perceiver, regenerate

from agent.runtime.replay import ReplayError, replay_session


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def perceiver():
    return fixture_perceiver()


def test_fixture_replays_without_a_mismatch(perceiver):
    report = replay_session(FIXTURE, perceiver, fixture_controller_config())
    assert report.ok, report.summary()
    assert report.frames == FIXTURE_STEPS
    assert sum(report.mismatches.values()) == 0
    assert "REPLAY OK" in report.summary()


def test_fixture_exercises_steering():
    """The fixture is only a regression test of the steering if the agent steers in it."""
    from training.sessions import Session

    records = Session.open(FIXTURE).records()
    assert sum(abs(r.action[0]) > 0.05 for r in records) >= 10
    assert sum(r.keys[0] or r.keys[1] for r in records) >= 5


def test_steering_gain_changed_by_20_percent_fails_until_regenerated(perceiver, tmp_path):
    stronger = fixture_controller_config(steer_gain_scale=1.2)
    assert stronger.steer_gain == pytest.approx(1.2 * fixture_controller_config().steer_gain)
    report = replay_session(FIXTURE, perceiver, stronger)
    assert not report.ok
    assert report.mismatches["steer"] > 0
    first = report.first["steer"]
    assert first.replayed == pytest.approx(1.2 * first.recorded, abs=1e-6)  # the first steering frame: gain x 1.2
    assert "REPLAY MISMATCH: first at frame" in report.summary()

    out = tmp_path / "drive"
    assert regenerate(out, steer_gain_scale=1.2) == 0  # the fixture re-recorded on purpose, with the new gain
    again = replay_session(out, perceiver, stronger)
    assert again.ok, again.summary()
    assert not replay_session(out, perceiver, fixture_controller_config()).ok  # and the old gain now differs


def test_preprocessing_change_is_caught(perceiver):
    """Another normalisation of the network's input (the model card's mean), the same network."""
    card = perceiver.direction_card
    shifted = replace(card, mean=tuple(m - 0.05 for m in card.mean))
    report = replay_session(FIXTURE, fixture_perceiver(shifted), fixture_controller_config())
    assert not report.ok
    assert report.mismatches["probs"] > 0 and report.mismatches["steer"] > 0


def test_missing_session_names_it(perceiver, tmp_path):
    with pytest.raises(ReplayError, match="no such session"):
        replay_session(tmp_path / "nope", perceiver)


# ----------------------------------------------------------------------------- the CLI, on a real checkpoint


@pytest.fixture(scope="module")
def recorded(module_tmp_path):
    """ResNet34 direction and SSD checkpoints (random weights, small inputs: the random detector
    gives ~99 boxes a frame) and an 8-frame sim drive recorded with them."""
    from agent.apps.drive import drive_sim, load_perceiver
    from perception.checkpoint import save_model
    from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    tmp = module_tmp_path
    torch.manual_seed(0)
    ckpt = save_model(tmp / "direction.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    det = save_model(tmp / "detector.safetensors",
                     SSDNet(DetectorConfig(input_size=(64, 96), trunk=TrunkConfig(weights="none"))))
    session = tmp / "drive"
    drive_sim(load_perceiver(str(ckpt), str(det), "cpu", engine="torch"), seed=1, size=(96, 72), traffic=1.0,
              steps=8, record=str(session))
    return ckpt, det, session


def test_the_recorded_drive_has_boxes_to_compare(recorded):
    from training.sessions import Session

    assert all(len(r.boxes) > 10 for r in Session.open(recorded[2]).records())


def test_a_decoding_change_is_caught(recorded):
    """The detector's post-processing (top_k: at most 20 boxes, not 100) changed: the boxes differ."""
    from agent.apps.drive import load_perceiver

    ckpt, det, session = recorded
    same = replay_session(session, load_perceiver(str(ckpt), str(det), "cpu", engine="torch"))
    assert same.ok, same.summary()
    report = replay_session(session, load_perceiver(str(ckpt), str(det), "cpu", engine="torch", top_k=20))
    assert not report.ok
    assert report.mismatches["boxes"] == report.frames


def test_cli_exit_0_when_the_replay_matches(recorded, capsys, tmp_path):
    from agent.apps.cli import main

    ckpt, det, session = recorded
    out = tmp_path / "report.json"
    assert main(["replay", str(session), "--model", str(ckpt), "--detector", str(det), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 frames" in printed and "REPLAY OK" in printed
    assert '"ok": true' in out.read_text()


def test_cli_exit_1_and_the_first_mismatch_when_the_controller_differs(recorded, capsys):
    from agent.apps.cli import main

    ckpt, det, session = recorded
    # the random detector's boxes stand within 8 m of the standing truck (the range rule brakes from frame 0);
    # with no stop gap it drives
    assert main(["replay", str(session), "--model", str(ckpt), "--detector", str(det), "--set", "stop_gap_m=0"]) == 1
    printed = capsys.readouterr().out
    assert "REPLAY MISMATCH: first at frame 0 keys" in printed
    assert "first throttle: frame 0 throttle: recorded 0.0, replayed 1.0" in printed
    assert "throttle 0," not in printed  # counted in the summary line


def test_cli_clear_errors(recorded, capsys, tmp_path):
    from agent.apps.cli import main

    ckpt, det, session = recorded
    assert main(["replay", str(tmp_path / "missing"), "--model", str(ckpt)]) == 2
    assert f"{tmp_path / 'missing'}: no such session directory" in capsys.readouterr().err
    assert main(["replay", str(session), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors: no such checkpoint file" in capsys.readouterr().err
    assert main(["replay", str(session), "--model", str(ckpt), "--set", "steer_gian=1"]) == 2
    assert "steer_gian" in capsys.readouterr().err
    assert main(["replay", str(session)]) == 2
    assert "give --model CKPT" in capsys.readouterr().err


def test_a_drive_records_its_controller_settings_and_replay_uses_them(tmp_path, capsys):
    """``drive --sim --record`` keeps the ControllerConfig in the manifest; a replay without settings
    drives with it, so a drive with a changed setting replays clean from the session alone."""
    from agent.apps.cli import main
    from agent.apps.drive import drive_sim, load_perceiver
    from agent.runtime.controller import ControllerConfig
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet
    from training.sessions import Session

    torch.manual_seed(0)
    ckpt = save_model(tmp_path / "direction.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    changed = ControllerConfig(speed_kp=0.05, target_speed_mps=9.0)
    session = tmp_path / "drive"
    drive_sim(load_perceiver(str(ckpt), None, "cpu", engine="torch"), seed=1, size=(96, 72), traffic=0.0,
              steps=8, record=str(session), controller_config=changed)
    assert ControllerConfig.from_record(Session.open(session).manifest.source["controller"]) == changed

    perceiver = load_perceiver(str(ckpt), None, "cpu", engine="torch")
    assert replay_session(session, perceiver).ok  # the recorded settings
    assert not replay_session(session, perceiver, ControllerConfig()).ok  # the defaults differ
    assert main(["replay", str(session), "--model", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["replay", str(session), "--model", str(ckpt), "--set", "speed_kp=0.25"]) == 1  # --set changes a field
    capsys.readouterr()
    assert main(["replay", str(session), "--model", str(ckpt), "--target-speed", "12"]) == 2
    assert "records the drive's controller settings" in capsys.readouterr().err


def test_controller_settings_from_another_version_are_refused():
    from agent.runtime.controller import ControllerConfig

    record = ControllerConfig().to_record()
    assert ControllerConfig.from_record(record) == ControllerConfig()
    with pytest.raises(ValueError, match="steer_boost"):
        ControllerConfig.from_record({**record, "steer_boost": 2.0})


def _session(path, source: dict, extra: dict):
    import numpy as np

    from perception.types import DIRECTIONS
    from training.sessions import SessionWriter

    writer = SessionWriter.create(path, source=source, width=32, height=24, fps=0.0, classes=("car",),
                                  directions=DIRECTIONS, image_format="png")
    writer.append(np.zeros((24, 32, 3), np.uint8), timestamp=0.0, keys=(False, False, True, False),
                  action=(0.0, 1.0, 0.0), extra=extra)
    writer.close()
    return path


def test_sessions_that_cannot_be_replayed_say_why(perceiver, tmp_path):
    window = _session(tmp_path / "window", {"kind": "window", "title": "ETS2"}, {"model_direction": "straight"})
    with pytest.raises(ReplayError, match="window.*not a simulator drive"):
        replay_session(window, perceiver)
    expert = _session(tmp_path / "expert", {"kind": "sim", "dt": 0.05}, {"speed": 3.0})  # record_sim's: no model outputs
    with pytest.raises(ReplayError, match="frame 0 has no model outputs"):
        replay_session(expert, perceiver)
    takeover = _session(tmp_path / "takeover", {"kind": "sim", "dt": 0.05},
                        {"model_direction": "straight", "capture_index": 0, "takeover": True})
    with pytest.raises(ReplayError, match="frame 0: the agent was not driving"):
        replay_session(takeover, perceiver)

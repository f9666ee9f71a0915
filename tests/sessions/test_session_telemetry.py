"""Per-frame telemetry in sessions: a window recording reads the game's SCS Telemetry block (here the
simulator's real publisher writes it, the real reader reads it) beside a third-party window, paused
frames are marked and training leaves them out; simulator recordings keep the same values from
ground truth."""
from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
import pytest

from training.sessions import FrameTelemetry, Session, SessionWriter, is_paused


def test_frame_telemetry_round_trips_through_extra_and_refuses_bad_values():
    told = FrameTelemetry(speed_m_s=7.5, steer=-0.25, wheel=-0.1, throttle=0.5, brake=0.0, paused=True, source="scs")
    extra = told.to_extra()
    assert extra["paused"] is True and is_paused(extra)
    assert FrameTelemetry.from_extra(extra) == told
    assert FrameTelemetry.from_extra({}) is None and not is_paused({}) and not is_paused(None)
    with pytest.raises(ValueError, match="source"):
        FrameTelemetry(speed_m_s=0, steer=0, wheel=0, throttle=0, brake=0, paused=False, source="game")
    with pytest.raises(ValueError, match="speed_m_s"):
        FrameTelemetry(speed_m_s=float("nan"), steer=0, wheel=0, throttle=0, brake=0, paused=False, source="sim")


def test_training_leaves_paused_frames_out(tmp_path, caplog):
    import logging

    from training.data.samples import samples_from_session

    caplog.set_level(logging.INFO, logger="training.data")

    writer = SessionWriter.create(tmp_path / "s", source={"kind": "window"}, width=32, height=24, fps=10.0,
                                  classes=("car",), directions=("left", "straight", "right"), image_format="png")
    for i in range(6):
        told = FrameTelemetry(speed_m_s=5.0, steer=0.0, wheel=0.0, throttle=0.0, brake=0.0, paused=i in (2, 3),
                              source="scs")
        writer.append(np.full((24, 32, 3), i, np.uint8), timestamp=i / 10, keys=(False, False, False, False),
                      action=(0.0, 0.0, 0.0), direction="straight", direction_source="keys", extra=told.to_extra())
    writer.close()
    samples = samples_from_session(tmp_path / "s")
    assert [s.name.rsplit("/", 1)[1] for s in samples] == ["000000", "000001", "000004", "000005"]
    assert "2 frames recorded while the game was paused are left out" in caplog.text


def test_record_sim_keeps_ground_truth_telemetry(tmp_path):
    from agent.recording.recorder import action_from_keys, record_sim
    from agent.types import KeysHeld

    record_sim(tmp_path / "s", seed=2, autopilot=True, headless=True, frames=150, progress=False, perturb=1.0)
    records = Session.open(tmp_path / "s").records()
    for r in records:
        told = FrameTelemetry.from_extra(r.extra)
        assert told.source == "sim" and not told.paused
        assert told.speed_m_s == r.extra["speed"]
        assert (told.steer, told.throttle, told.brake) == action_from_keys(KeysHeld.from_array(r.keys))
    assert any(t.wheel != 0.0 for t in map(lambda r: FrameTelemetry.from_extra(r.extra), records))
    assert max(FrameTelemetry.from_extra(r.extra).speed_m_s for r in records) > 1.0  # the truck pulled away


@pytest.mark.x11
def test_window_recording_stores_the_games_telemetry_and_marks_paused_frames(xvfb_display, tmp_path, caplog):
    import logging
    import time

    from agent.io.keys.x11 import X11KeymapReader
    from agent.recording.recorder import record_window
    from sim.scs_telemetry import TelemetryFrame, TelemetryPublisher
    from tests.waiting import wait_until
    from training.data.samples import samples_from_session

    if shutil.which("xlogo") is None:
        pytest.fail("xlogo is not installed: apt-get install x11-apps (./run.sh does this as root)")
    block = tmp_path / "SCSTelemetry"
    publisher = TelemetryPublisher(block)

    def game(paused: bool) -> TelemetryFrame:  # the plugin's conventions: steering + = left
        return TelemetryFrame(paused=paused, speed_m_s=0.0 if paused else 12.5, user_steer=0.25, user_throttle=0.75,
                              user_brake=0.0, game_steer=0.125, game_throttle=0.75, game_brake=0.0,
                              simulated_time_us=0, render_time_us=0)

    publisher.publish(game(False))
    out = tmp_path / "game"
    logo = subprocess.Popen(["xlogo", "-title", "TelemetryGame", "-geometry", "200x150+30+30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()

    def play():  # the game pauses after 6 recorded frames and resumes after 6 more
        def frames():
            try:
                return len(Session.open(out, check_images="none").records())
            except Exception:  # noqa: BLE001 - not written yet
                return 0
        for paused, after in ((True, 6), (False, 12)):
            while frames() < after and not stop.is_set():
                time.sleep(0.02)
            publisher.publish(game(paused))

    player = threading.Thread(target=play, daemon=True)
    try:
        from agent.io.window import WindowNotFound, find_window

        def shown():
            try:
                return find_window("TelemetryGame")
            except WindowNotFound:
                return None

        wait_until(shown, 30, "the xlogo window", interval=0.1, alive=logo)
        caplog.set_level(logging.INFO, logger="agent.recording")
        player.start()
        result = record_window(out, window_title="TelemetryGame", fps=20, frames=20, progress=False,
                               key_reader=X11KeymapReader(), telemetry=block)
    finally:
        stop.set()
        player.join(timeout=10)
        logo.terminate()
        logo.wait(timeout=10)
        publisher.close()

    assert result.stopped_by == "frames", result
    session = Session.open(out)
    assert session.manifest.source["telemetry"] == str(block)
    records = session.records()
    told = [FrameTelemetry.from_extra(r.extra) for r in records]
    assert all(t is not None and t.source == "scs" for t in told)
    running = [t for t in told if not t.paused]
    assert running and all((t.speed_m_s, t.steer, t.wheel, t.throttle) == (12.5, -0.25, -0.125, 0.75) for t in running)
    paused = [r.index for r, t in zip(records, told) if t.paused]
    assert paused and all(is_paused(records[i].extra) for i in paused)
    assert paused == list(range(paused[0], paused[-1] + 1))  # one pause, in one piece
    assert f"{len(paused)} frames were recorded while the game was paused" in caplog.text
    assert len(samples_from_session(out)) == len(records) - len(paused)
    # the session's export holds the continuous labels, a row per frame
    import csv

    from training.sessions.export import CONTROLS_COLUMNS, export_session

    exported = export_session(session, tmp_path / "export")
    with open(tmp_path / "export" / "labels_controls.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert exported.controls_rows == len(rows) == len(records) and tuple(rows[0]) == CONTROLS_COLUMNS
    running_rows = [row for row in rows if row["paused"] == "False"]
    assert len(running_rows) == len(running)
    assert all((float(row["steer_label"]), float(row["steer"]), float(row["wheel"]), float(row["throttle"]),
                float(row["speed_m_s"]), row["source"]) == (-0.25, -0.25, -0.125, 0.75, 12.5, "scs")
               for row in running_rows)

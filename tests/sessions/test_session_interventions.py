"""Interventions (a person's takeovers) derived from the frame records of a real session."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sessionkit import CLASSES, H, W, frame_image

from training.sessions import Session, SessionWriter, session_interventions
from training.sessions.summary import format_summary, format_table, summarize

REPO = Path(__file__).resolve().parents[2]
PROBS = {"left": 0.1, "straight": 0.7, "right": 0.2}


def drive_frame(writer: SessionWriter, i: int, person: tuple | None) -> None:
    """Frame i of a recorded drive as DriveRecorder writes it: the model's output in extra, and during
    a takeover (``person``: the person's keys) extra["takeover"] and the person's keys as the keys."""
    extra = {"model_direction": ("left", "straight", "right")[i % 3],
             "model_probs": {**PROBS, "i": i}, "engaged": person is None}
    if person is not None:
        extra["takeover"] = True
    writer.append(frame_image(i), timestamp=i / 10, keys=person or (False, False, True, False), extra=extra)


def record(path, person_at: dict) -> Path:
    with SessionWriter.create(path, source={"kind": "window", "driver": "model"}, width=W, height=H, fps=10.0,
                              classes=CLASSES) as writer:
        for i in range(20):
            drive_frame(writer, i, person_at.get(i))
    return Path(path)


def test_runs_of_takeover_frames_are_interventions(tmp_path):
    brake, left_throttle = (False, False, False, True), (True, False, True, False)
    person = {4: brake, 5: brake, 6: brake} | {10: left_throttle, 11: (False, False, True, False)}
    marks = session_interventions(Session.open(record(tmp_path / "s", person)))
    assert len(marks) == 2
    first, second = marks
    assert (first.start_index, first.frames, first.ended) == (4, 3, True)
    assert first.start_s == pytest.approx(0.4) and first.duration_s == pytest.approx(0.3)  # 0.4 s .. frame 7
    # the model's output on the frame just before the person stepped in
    assert first.model_index == 3 and first.model_direction == "left" and first.model_probs["i"] == 3
    assert first.person_keys == ("brake",) and first.key_frames == {"brake": 3}
    assert (second.start_index, second.frames, second.model_index) == (10, 2, 9)
    assert second.person_keys == ("left", "throttle") and second.key_frames == {"left": 1, "throttle": 2}
    assert "frame 4 at 0.40 s, 0.30 s (3 frames)" in first.describe()


def test_ls_counts_and_show_lists_them(tmp_path, capsys):
    from agent.apps.cli import main

    record(tmp_path / "root" / "two", {4: (False, False, False, True), 12: (True, False, False, False)})
    record(tmp_path / "root" / "none", {})
    assert main(["sessions", "ls", str(tmp_path / "root")]) == 0
    lines = capsys.readouterr().out.splitlines()
    column = lines[0].split().index("takeovers")
    counts = sorted(int(line.split()[column]) for line in lines[1:])
    assert counts == [0, 2]
    assert main(["sessions", "show", str(tmp_path / "root" / "two")]) == 0
    out = capsys.readouterr().out
    assert "takeovers    2 (2 frames driven by a person)" in out
    assert "1. frame 4 at 0.40 s" in out and "2. frame 12 at 1.20 s" in out and "person left" in out


def test_a_takeover_open_when_the_recorder_was_killed_counts(tmp_path):
    """kill -9 the recording process while the person drives: the last run has no frame after it, and
    counts (ended False, one frame period long past its last frame)."""
    path = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(REPO / "tests" / "sessions")!r})
        from test_session_interventions import drive_frame
        from sessionkit import CLASSES, H, W
        from training.sessions import SessionWriter
        writer = SessionWriter.create({str(path)!r}, source={{"kind": "window"}}, width=W, height=H, fps=10.0,
                                      classes=CLASSES)
        for i in range(12):
            drive_frame(writer, i, (False, True, False, False) if i >= 8 else None)
        frames = os.path.join({str(path)!r}, "frames.jsonl")
        deadline = time.monotonic() + 20  # the writer thread writes its lines at least every 0.1 s
        while time.monotonic() < deadline:
            with open(frames, "rb") as fh:
                if fh.read().count(b"\\n") == 12:
                    break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(): killed while the person drives
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == -signal.SIGKILL, r.stderr
    session = Session.open(path)
    assert len(session.records()) == 12
    (mark,) = session_interventions(session)
    assert (mark.start_index, mark.frames, mark.ended, mark.model_index) == (8, 4, False, 7)
    assert mark.duration_s == pytest.approx(0.4)  # frames 8..11 at 10 fps, the last one lasting 0.1 s
    assert mark.person_keys == ("right",)
    summary = summarize(session)
    assert len(summary.interventions) == 1 and summary.takeover_frames == 4
    assert "open at the end of the session" in format_summary(summary)
    assert format_table([summary]).splitlines()[1].split()[7] == "1"

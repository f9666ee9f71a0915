"""Crash safety of the store: a full disk, and a writer process killed with kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from training.sessions import Session, SessionDiskFullError, SessionWriter
from training.sessions.verify import verify

CLASSES = ("car", "truck", "person", "sign")


def noisy_frame(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    """Incompressible HxWx3 uint8 RGB frames (~57 KB as PNG), distinct per index."""
    return np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_disk_full_stops_with_a_clear_message_and_everything_before_reads_back(small_tmpfs):
    path = small_tmpfs / "s"
    writer = SessionWriter.create(path, source={"kind": "test"}, width=160, height=120, fps=0, classes=CLASSES)
    appended = 0
    with pytest.raises(SessionDiskFullError, match="disk full") as caught:
        for i in range(500):
            writer.append(noisy_frame(i), timestamp=i * 0.01, keys=(0, 0, 1, 0), direction="straight",
                          direction_source="sim")
            appended += 1
        writer.close()
    assert "Free space or record to another disk" in str(caught.value)
    with pytest.raises(SessionDiskFullError):
        writer.close()  # closing again reports the same error, releases everything
    session = Session.open(path)
    records = session.records()
    assert 10 < len(records) <= appended < 500
    assert [r.index for r in records] == list(range(len(records)))
    for r in records:
        np.testing.assert_array_equal(session.load_image(r), noisy_frame(r.index))
    report = verify(path, repair=False)
    assert report.records_quarantined == 0 and report.status in ("clean", "repaired")



def test_disk_full_keeps_the_frames_whose_records_fit_when_every_line_is_still_pending(small_tmpfs):
    """The images fill the disk before any record line is written (a loaded machine, a long flush
    interval): the writer gives back the newest frames' image bytes until the older frames' lines fit."""
    path = small_tmpfs / "s"
    writer = SessionWriter.create(path, source={"kind": "test"}, width=160, height=120, fps=0, classes=CLASSES,
                                  flush_every_s=3600.0)
    with pytest.raises(SessionDiskFullError):
        for i in range(500):
            writer.append(noisy_frame(i), timestamp=i * 0.01, keys=(0, 0, 1, 0), direction="straight",
                          direction_source="sim")
        writer.close()
    session = Session.open(path)
    records = session.records()
    assert len(records) > 10
    for r in records:
        np.testing.assert_array_equal(session.load_image(r), noisy_frame(r.index))
    assert verify(path, repair=False).records_quarantined == 0

WRITER_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np
    from training.sessions import SessionWriter
    frame = np.zeros((120, 160, 3), np.uint8)
    with SessionWriter.create(sys.argv[1], source={"kind": "test"}, width=160, height=120, fps=0,
                              classes=("car",)) as w:
        i = 0
        while True:
            frame[:, :, 0] = i % 256
            frame[:, :, 1] = i // 256 % 256
            w.append(frame, timestamp=w.elapsed(), keys=(0, 0, 1, 0), extra={"i": i})
            i += 1
            time.sleep(0.001)  # pacing: a recorder appends frames over time, not all at once
""")


def test_writer_killed_mid_recording_opens_with_at_most_a_second_lost(tmp_path):
    """kill -9 a process that is appending frames: the session opens, every record's image is whole."""
    import datetime as dt

    for trial, delay in enumerate((0.3, 0.9)):
        path = tmp_path / f"s{trial}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path)], cwd=os.getcwd())
        deadline = time.monotonic() + 60
        while not ((path / "frames.jsonl").exists() and (path / "frames.jsonl").stat().st_size > 0):
            assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.01)
        time.sleep(delay)  # the behaviour under test: kill -9 this far into a running recording
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        session = Session.open(path)
        records = session.records()
        created = dt.datetime.fromisoformat(session.manifest.created).timestamp()
        assert killed_at - (created + records[-1].timestamp) <= 1.0
        for r in records:
            img = session.load_image(r)
            assert img[0, 0, 0] == r.extra["i"] % 256 and img[0, 0, 1] == r.extra["i"] // 256 % 256
        report = verify(path)
        assert report.records_quarantined == 0 and report.status in ("clean", "repaired")
        assert verify(path).status == "clean"

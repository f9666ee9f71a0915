"""A person takes over a live `truckpilot drive --window --record` (a real key pressed through XTest on a
private Xvfb, against the `truckpilot sim` window): the session marks the intervention, the drive logs it,
and `truckpilot sessions ls` counts it (issue 29's acceptance line)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def takeover_frames(path: Path) -> int:
    """Takeover frames recorded so far (the session is read as it is written: open never changes it)."""
    from training.sessions import Session
    from training.sessions.interventions import is_takeover

    if not (path / "manifest.json").exists():
        return 0
    return sum(1 for r in Session.open(path, check_images="none").records() if is_takeover(r))


@pytest.mark.x11
def test_a_takeover_in_a_live_recorded_drive_is_marked_and_counted(xvfb_display, tmp_path):
    from drive_kit import SimWindowProcess, wait_for_window
    from tests.waiting import wait_until

    from agent.apps.drive import FIRST_TICK_LOG
    from agent.io.keys.x11 import X11Keys, read_held_keys
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet
    from training.sessions import Session, session_interventions

    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    title = "TruckPilot takeover window"
    rec = tmp_path / "rec"
    window = SimWindowProcess("--title", title, "--size", "320x240", "--fps", "15", "--seconds", "60")
    drive = None
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def follow(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    readers = []
    try:
        wait_for_window(title, sim=window)
        drive = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "drive", "--model", str(ckpt), "--window",
                                  title, "--seconds", "40", "--fps", "15", "--keys", "x11", "--device", "cpu",
                                  "--threads", "1", "--record", str(rec)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        for name, stream in (("stdout", drive.stdout), ("stderr", drive.stderr)):
            readers.append(threading.Thread(target=follow, args=(stream, streams[name]), daemon=True))
            readers[-1].start()
        wait_until(lambda: any(FIRST_TICK_LOG in line for line in streams["stderr"]), 60,
                   "the drive's first tick (its log line)", alive=drive)
        # the agent drives: its throttle is down on the X server
        wait_until(lambda: read_held_keys().throttle, 30, "the drive's throttle down on the X server", alive=drive)
        with X11Keys() as person:  # another X client: a person's keyboard, arrows
            person.press("brake")  # Down: a driving key the agent did not press
            wait_until(lambda: takeover_frames(rec) >= 3, 20, "three takeover frames in the session",
                       interval=0.1, alive=drive)
            person.release("brake")
        # the first frame after the person let go ends the takeover: the drive logs it
        wait_until(lambda: any("takeover 1 recorded" in line for line in streams["stderr"]), 20,
                   "the drive's log line of the ended takeover", alive=drive)
        drive.send_signal(signal.SIGTERM)
        drive.wait(timeout=20)
    finally:
        if drive is not None and drive.poll() is None:
            drive.kill()
        window.close()
        for reader in readers:
            reader.join(timeout=5)
    err = "".join(streams["stderr"])
    assert drive.returncode == 0, err
    assert "takeover 2 recorded" not in err, err  # one press, one intervention

    (mark,) = session_interventions(Session.open(rec))
    assert mark.ended and mark.frames >= 3 and mark.person_keys == ("brake",), mark
    assert mark.duration_s > 0 and mark.model_direction in ("left", "straight", "right"), mark
    assert mark.model_index == mark.start_index - 1  # the agent drove the frame before

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ls = subprocess.run([sys.executable, "-m", "agent.apps.cli", "sessions", "ls", str(rec)], cwd=REPO,
                        capture_output=True, text=True, timeout=60, env=env)
    assert ls.returncode == 0, ls.stderr
    header, row = ls.stdout.splitlines()
    assert row.split()[header.split().index("takeovers")] == "1", ls.stdout
    show = subprocess.run([sys.executable, "-m", "agent.apps.cli", "sessions", "show", str(rec)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    assert show.returncode == 0 and "takeovers    1 (" in show.stdout and "person brake" in show.stdout, show.stdout

"""A person takes over a live `truckpilot drive --window --record` (a real key pressed through XTest on a
private Xvfb, against the `truckpilot sim` window): the session marks the intervention, the drive logs it,
and `truckpilot sessions ls` counts it (issue 29's acceptance line)."""
from __future__ import annotations

import os
import subprocess
import sys
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
    from drive_kit import drive_process, random_direction_checkpoint, sim_window
    from tests.waiting import wait_until

    from agent.io.keys.x11 import X11Keys, read_held_keys
    from training.sessions import Session, session_interventions

    ckpt = random_direction_checkpoint(tmp_path / "d.safetensors")
    title = "TruckPilot takeover window"
    rec = tmp_path / "rec"
    with (sim_window(title, "--size", "320x240", "--fps", "15", "--seconds", "60"),
          drive_process(ckpt, title, "--seconds", "40", "--keys", "x11", "--record", str(rec)) as drive):
        # the agent drives: its throttle is down on the X server
        wait_until(lambda: read_held_keys().throttle, 30, "the drive's throttle down on the X server",
                   alive=drive.proc)
        with X11Keys() as person:  # another X client: a person's keyboard, arrows
            person.press("brake")  # Down: a driving key the agent did not press
            wait_until(lambda: takeover_frames(rec) >= 3, 20, "three takeover frames in the session",
                       interval=0.1, alive=drive.proc)
            person.release("brake")
        # the first frame after the person let go ends the takeover: the drive logs it
        drive.wait_for_log("takeover 1 recorded", 20, "the drive's log line of the ended takeover")
        returncode = drive.stop()
    err = drive.log
    assert returncode == 0, err
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

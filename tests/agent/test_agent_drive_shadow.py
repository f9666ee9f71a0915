"""Shadow mode on a real X server: `truckpilot drive --window ... --shadow --record` beside a person who
drives the `truckpilot sim` window with real XTest keys. No key of the agent's reaches the game, the
session holds the person's keys and the model's, the frames where their directions differ are marked,
and the labelling tool's "disagree" filter opens exactly those (issue 29, shadow mode)."""
from __future__ import annotations

from pathlib import Path

import pytest

def recorded(path: Path) -> list:
    """The frame records written so far (the session is read as it is written)."""
    from training.sessions import Session

    if not (path / "manifest.json").exists():
        return []
    return Session.open(path, check_images="none").records()


@pytest.mark.x11
def test_shadow_mode_records_person_and_model_and_sends_no_key(xvfb_display, tmp_path, monkeypatch):
    from drive_kit import drive_process, random_direction_checkpoint, sim_window
    from tests.waiting import wait_until

    from agent.io.keys.x11 import X11Keys, read_held_keys
    from agent.types import KeysHeld
    from training.sessions import Session

    ckpt = random_direction_checkpoint(tmp_path / "d.safetensors")
    title = "TruckPilot shadow window"
    rec = tmp_path / "shadow"
    keys_seen_while_nobody_drove: list[KeysHeld] = []
    with (sim_window(title, "--size", "320x240", "--fps", "15", "--seconds", "60"),
          drive_process(ckpt, title, "--shadow", "--seconds", "40", "--record", str(rec)) as drive):
        # nobody drives: the model decides (its cruise throttle presses throttle on most frames), yet no key
        # is down on the X server at any time
        def nobody_drove_long_enough():
            keys_seen_while_nobody_drove.append(read_held_keys())
            return sum(r.extra.get("model_keys", [0, 0, 0, 0])[2] for r in recorded(rec)) >= 5

        wait_until(nobody_drove_long_enough, 30, "5 recorded frames where the model would have pressed throttle",
                   interval=0.05, alive=drive.proc)
        quiet = len(recorded(rec))
        with X11Keys() as person:  # a person's keyboard: Left and Up through XTest
            person.apply(KeysHeld(left=True, throttle=True))
            wait_until(lambda: sum(tuple(r.keys) == (True, False, True, False) for r in recorded(rec)) >= 5, 20,
                       "5 recorded frames holding the person's Left + Up", interval=0.1, alive=drive.proc)
            person.release_all()
        returncode = drive.stop()
    err = drive.log
    assert returncode == 0, err
    assert keys_seen_while_nobody_drove and not any(any(k.as_array()) for k in keys_seen_while_nobody_drove), err
    assert "shadow: the model's direction differed from the person's on" in err, err

    session = Session.open(rec)
    assert session.manifest.source["shadow"] is True and session.manifest.source["driver"] == "person"
    records = session.records()
    assert all(r.extra["shadow"] and r.direction_source == "keys" for r in records)
    assert all(not any(r.keys) for r in records[:quiet])  # nobody drove: the recorded (person's) keys are none
    assert any(r.extra["model_keys"][2] for r in records[:quiet])  # ... while the model would have pressed throttle
    for r in records:
        person_direction = "left" if r.keys[0] and not r.keys[1] else "right" if r.keys[1] and not r.keys[0] \
            else "straight"
        assert r.direction == person_direction
        assert r.extra["disagree"] == (r.extra["model_direction"] != person_direction)
    assert any(r.direction == "left" for r in records)

    # the labelling tool's "disagree" filter opens exactly the marked frames
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from agent.recording.labeller import LabelTool

    tool = LabelTool(rec)
    try:
        tool.set_filter("disagree")
        assert tool.view == [r.index for r in records if r.extra["disagree"]]
    finally:
        tool.close()

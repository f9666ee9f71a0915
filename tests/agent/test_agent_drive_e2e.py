"""End to end on a real X server: the simulator in its own window, the agent capturing it
with mss and driving it with XTest keys, 1 km.

How the driving decisions are made honestly and cheaply: the steering comes from a direction
classifier that looks only at the captured pixels. The project's ResNet34 cannot be trained
in a test's time on 2 shared CPU cores (and no pretrained weights can be downloaded), so the
Perceiver is given three tiny CNNs averaged (tests/agent/drive_kit.py), trained on frames of the
real simulator (other roads than the one driven here) labelled with ``info["direction"]``, with
three DAgger rounds. Their weights are published with the tests (tests/agent/data/e2e_direction.pt,
rebuilt by ``python tests/agent/drive_kit.py train``), so every run drives the same model on any
CPU. There is no oracle: nothing but the window's pixels reaches the agent, and the sim process
only sees X key events. The speed comes from the controller's cruise throttle duty (a game gives no
speed).

The sim window runs in real time (15 frames per second, 1/15 s each), so 1 km takes about a
minute. (At twice real time, with the controller's time constants halved, it took ~45 s, but a
busy machine then delayed the agent's keys by a larger share of a sim step and the truck left
the road in 2 of the 4 runs of one day on the 2-core box, both while other work loaded it.) The sim reports its distance in its log lines
("t=..s .. km/h .. m", every 0.2 simulated seconds), read live here; the drive stops once they say 1 km.
"""
from __future__ import annotations

import pytest
import torch
from drive_kit import e2e_controller_config, load_tiny_ensemble, sim_window

from agent.apps.drive import controller_config_for_time_scale, drive_window
from agent.types import KeysHeld, StopReason

#: ``slow``: 95 s of real time, kept out of the default suite (which must stay under 15 minutes on 2 cores);
#: ``python -m agent.tools.e2e_series`` runs it (``-m slow``), and ``./run.sh test -m slow`` runs it once.
pytestmark = [pytest.mark.x11, pytest.mark.slow]

TITLE = "TruckPilot e2e sim window"
SIM_SEED = 3  # the road driven here; the classifiers were trained on other roads (drive_kit.E2E_SEEDS)
TIME_SCALE = 1.0  # the sim window runs 15 fps x 1/15 s = real time
CONTROLLER = e2e_controller_config()
#: the agent samples the window twice per sim frame and acts once on each new one (skip_repeated),
#: within ~33 ms of its appearance, so the keys reach the next sim step (as in-process)
AGENT_FPS = 30.0


@pytest.fixture(scope="module")
def tiny_perceiver():
    torch.set_num_threads(1)
    return load_tiny_ensemble()


#: One attempt. On 2026-11-23 the tiny model left this road in 5 of 8 real-X drives (an S-bend near
#: 850 m) while it finished every in-process drive, and the test tried up to 3 times. The cause,
#: measured with ``python -m agent.apps.realtime_probe`` (the sim logs each step's key read and
#: frame; the agent each grab and key send; joined on one monotonic clock): the keys land in the
#: same sim step as in-process for 99.6-99.9 % of the frames and the frames are the same pixels,
#: but the controller's clock was the grab time, which trails each frame by 0-33 ms (the 30 Hz
#: grab phase): its step between decisions was off by p95 26-33 ms of a 67 ms frame, noise that its
#: steering EMA and key PWM integrate. Replayed in-process, that jitter alone made the model need an
#: intervention in 3 of 6 drives of this road (one collision at 944 m). The loop's CaptureSource now
#: times frames with ``agent.runtime.frame_clock.FrameClock`` (when each frame appeared).
#: With that fix the single tiny net still left the road in 2 of 20 idle drives (and once in CI, at
#: 774 m). Replayed in-process with what a live window does to the loop (``drive_kit.drive_in_process``:
#: 0.5 % of keys one frame late, 2 % of frames missed), it failed 5 of 12 drives of this road: the
#: model, not the loop. Traced, the truck weaved out to 2-3 m off its lane centre in the S-bend, where
#: the net had no data (its training episodes restarted at 1.6 m off-lane), and read a roadside tree
#: as "right". Its training episodes now run to 3 m off-lane on 12 roads a round, and three such nets
#: are averaged: 20 of 20 in-process drives of 4 roads under that noise (agent/RESULTS.md).


def _drive_once(tiny_perceiver):
    """One drive of the sim window: (DriveStats, sim process, keys still held afterwards)."""
    from agent.io.keys.x11 import read_held_keys

    with sim_window(TITLE, "--size", "320x240", "--seed", str(SIM_SEED), "--time-of-day", "day", "--weather", "clear",
                    "--traffic", "0", "--fps", str(15 * TIME_SCALE), "--seconds", "240", "--log-every", "0.2") as sim:
        config = controller_config_for_time_scale(CONTROLLER, TIME_SCALE)
        stats = drive_window(
            tiny_perceiver, window_title=TITLE, fps=AGENT_FPS, keys="x11", seconds=200,
            controller_config=config,
            stop_when=lambda: "1 km" if sim.distance_m >= 1000 else ("sim restarted" if sim.restarts else None),
        )
        held_after = read_held_keys()
    print(stats.summary())
    print("events:", stats.events)
    print("\n".join(sim.lines[-5:]))
    return stats, sim, held_after


def test_agent_drives_the_sim_window_1km_with_mss_and_xtest(xvfb_display, tiny_perceiver):
    stats, sim, held_after = _drive_once(tiny_perceiver)
    # whatever the outcome, the drive must end with no driving key down on the X server
    assert held_after == KeysHeld(), "a driving key is still down after the drive"
    assert stats.stopped_by is StopReason.REQUESTED and stats.stop_detail == "1 km", (
        f"stopped by {stats.stopped_by.value} ({stats.stop_detail}) at {sim.distance_m:.0f} m: {sim.lines[-5:]}")
    assert sim.distance_m >= 1000 and sim.restarts == 0, sim.lines[-10:]
    assert stats.engaged_steps >= 0.95 * stats.steps, stats.events  # no takeover / stale-capture stops
    new_frames = stats.steps - stats.repeated_steps  # acted on once each
    assert new_frames >= 0.9 * 1000 / 16.0 * 15  # ~one per sim frame (1 km at <= 16 m/s avg, 15 frames/s)
    for stage in ("perceive", "control", "frame_to_key"):
        assert stats.stages[stage].count == new_frames
    for stage in ("capture", "keys"):
        assert stats.stages[stage].count == stats.steps
    assert stats.stages["frame_to_key"].p50_ms >= stats.stages["perceive"].p50_ms

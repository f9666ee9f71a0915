"""Analog driving end to end: the agent steers and presses the pedals through the SCS SDK input
plugin's block (``drive --window --axes``), which the sim window reads as the game reads the
plugin (``truckpilot sim --scs-controls``); and the same driver in-process on the simulator's
continuous controls (``truckpilot eval --drivers analog``)."""
from __future__ import annotations

import pytest

from agent.apps.live_sim import LiveRoute, drive_live
from agent.apps.scorecard import ScorecardConfig, run_scorecard
from perception.types import Perception


def right_leaning(image) -> Perception:
    """Sees a right bend everywhere: p_right - p_left = 0.5. The key controller steers right at
    0.5 x its gain 0.5 = 0.25 by PWM (the right key down a quarter of the time); the analog one
    holds the wheel target at 0.25."""
    return Perception("right", {"left": 0.1, "straight": 0.3, "right": 0.6})


def straight_only(image) -> Perception:
    return Perception("straight", {"left": 0.0, "straight": 1.0, "right": 0.0})


@pytest.mark.x11
def test_the_agent_drives_the_sim_window_through_the_scs_controls_block_with_no_key(xvfb_display, tmp_path):
    route = LiveRoute(seed=0, time_of_day="day", weather="clear", route_m=80.0, traffic=0.0, budget_steps=300)
    straight = drive_live(straight_only, route, driver="analog", display=xvfb_display, workdir=tmp_path / "straight",
                          max_seconds=30.0)
    leaning = drive_live(right_leaning, route, driver="analog", display=xvfb_display, workdir=tmp_path / "right",
                         max_seconds=30.0)
    for drive in (straight, leaning):
        # no key reached the sim window (its keyboard; the step log's keys also show the judge's expert
        # rescuing), and the agent held none: the truck moved on the accelerator axis
        assert drive.summary["keys_down_steps"] == 0 and drive.summary["analog_steps"] > 0, drive.summary
        assert {t.keys for t in drive.ticks} == {"----"}
        assert drive.summary["judge"]["distance_m"] > 50.0, drive.summary
        assert drive.stats is not None and drive.stats.engaged_steps > 0
    # the steering axis steered: leaning right drifts right of the straight drive's line and the
    # sim's judge has the expert take over; straight ahead on seed 0's first 80 m does not need it
    right_offsets = [abs(s.offset) for s in leaning.steps]
    straight_offsets = [abs(s.offset) for s in straight.steps]
    assert max(right_offsets) > max(straight_offsets) + 0.5, (max(right_offsets), max(straight_offsets))
    assert leaning.summary["judge"]["interventions"] >= 1


def test_eval_drives_the_analog_agent_in_process_on_continuous_controls():
    card = run_scorecard(right_leaning, [0], [("day", "clear")], 150.0, drivers=("agent", "analog"),
                         config=ScorecardConfig(traffic_density=0.0), progress=False)
    analog, keys = card["analog"], card["agent"]
    assert analog["km_driven"] > 0.0 and analog["steer_reversals_per_s"] is not None
    # the analog agent never changes a key (it has none), the key agent does
    assert analog["steer_changes_per_s"] == 0.0 and keys["steer_changes_per_s"] > 0.0
    # a steady right lean: the analog wheel holds still (few reversals), the key PWM wheel zigzags
    assert analog["steer_reversals_per_s"] < keys["steer_reversals_per_s"]


def test_open_axes_names_a_backend_and_only_scs_controls_takes_a_path(tmp_path):
    from agent.apps.drive import open_axes
    from agent.io.axes import Axes
    from sim.scs_controls import ControlsDevice

    with ControlsDevice(tmp_path / "SCSControls") as device:
        out = open_axes(f"scs-controls:{tmp_path / 'SCSControls'}")
        try:
            out.send(Axes(steer=-0.4, brake=0.2))
            assert (device.read().steering, device.read().abackward) == pytest.approx((-0.4, 0.2))
        finally:
            out.close()
        assert device.read().steering == 0.0
    with pytest.raises(ValueError, match="only scs-controls takes a path"):
        open_axes("uinput-gamepad:/dev/uinput")
    with pytest.raises(ValueError, match="unknown analog output backend 'wheel'"):
        open_axes("wheel")

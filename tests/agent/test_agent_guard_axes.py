"""The safety guard centres analog axes as it releases keys, on a real Xvfb with a real SCS controls
block: kill -9 and SIGSTOP of a guarded child whose steering axis is deflected, e-stop and a
person's takeover in process, and close. The block is read as the game reads it
(``sim.scs_controls.ControlsDevice``, the simulator's side of the SCS SDK input plugin)."""
from __future__ import annotations

import pytest

from agent.io.axes import NEUTRAL, Axes
from agent.io.axes.scs_controls import ScsControlsOutput
from agent.io.guard import SafetyGuard
from agent.io.guard_protocol import DisengageReason
from agent.io.keys import KeyMap
from agent.io.keys.x11 import X11KeymapReader, X11Keys, read_held_keys
from agent.tools.guard_bench import DEFLECTED, kill_trial, stall_trial, summarize
from agent.types import KeysHeld
from sim.scs_controls import ControlsDevice

pytestmark = pytest.mark.x11

PERIOD = 0.05
STEER = Axes(steer=0.8, throttle=0.5)


@pytest.fixture()
def reader(xvfb_display):
    with X11KeymapReader() as r:
        yield r


@pytest.fixture()
def block(tmp_path):
    with ControlsDevice(tmp_path / "SCSControls") as device:
        yield device


def reads(device: ControlsDevice) -> tuple[float, float, float]:
    r = device.read()
    return r.steering, r.aforward, r.abackward


def test_kill9_with_the_axis_deflected_centres_it(reader, block):
    results = [kill_trial(reader, PERIOD, device=block) for _ in range(3)]
    summary = summarize(results, limit_ms=3 * PERIOD * 1e3)
    assert summary["axes_left_deflected"] == 0 and summary["keys_left_down"] == 0, results
    assert summary["axes_neutral_within_limit"] == 3, results  # the pipe closes at once: well inside 3 periods
    assert reads(block) == (0.0, 0.0, 0.0)


def test_kill9_without_the_guard_leaves_the_axis_deflected(reader, block):
    """Control: nothing else centres the block of a killed writer (the plugin passes its last values on)."""
    try:
        result = kill_trial(reader, PERIOD, use_guard=False, timeout_s=0.5, device=block)
        assert result.axes_left_deflected and result.axes_latency_ms is None
        assert reads(block) == pytest.approx(DEFLECTED)
    finally:
        with X11Keys() as cleanup:
            cleanup.force_release_all()


def test_sigstop_with_the_axis_deflected_centres_it_within_three_periods(reader, block):
    result = stall_trial(reader, PERIOD, device=block)
    assert result.axes_latency_ms is not None, "the guard never centred the axes of a stopped agent"
    # as for keys: <= 3 periods from the last heartbeat, plus up to one period and scheduling slack
    assert result.axes_latency_ms <= 1e3 * 4 * PERIOD, result
    assert result.note.startswith("DISENGAGED guard process released the keys (stall)"), result
    assert not result.axes_left_deflected, result  # the resumed agent knows it is disengaged


def test_estop_and_takeover_centre_the_axes_in_process(reader, block):
    with X11Keys() as backend, ScsControlsOutput.open(block.path) as axes, \
            SafetyGuard(backend, PERIOD, axes=axes) as guard, X11Keys(KeyMap(left="End")) as estop, \
            X11Keys() as person:
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(), axes=STEER)
        assert reads(block) == pytest.approx((0.8, 0.5, 0.0)) and guard.axes_held == STEER
        estop.press("left")  # End
        assert guard.apply(KeysHeld(), axes=STEER) == KeysHeld()
        assert guard.disengagement.reason is DisengageReason.ESTOP
        assert reads(block) == (0.0, 0.0, 0.0) and guard.axes_held == NEUTRAL
        estop.release("left")
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(), axes=STEER)
        assert reads(block) == pytest.approx((0.8, 0.5, 0.0))
        person.press("brake")  # a person's driving key: a takeover
        guard.apply(KeysHeld(), axes=STEER)
        assert guard.disengagement.reason is DisengageReason.TAKEOVER
        assert reads(block) == (0.0, 0.0, 0.0)
        person.release("brake")
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(), axes=Axes(steer=-0.3))
        assert reads(block) == pytest.approx((-0.3, 0.0, 0.0))
    assert reads(block) == (0.0, 0.0, 0.0)  # close went neutral
    assert read_held_keys() == KeysHeld()


def test_hosted_axes_kill9_and_sigstop_centre_them(reader, block):
    """The guard process holding the axes itself (what it does for a uinput gamepad, which belongs to
    the process that made it; there is no /dev/uinput here, so the hosted output is the SCS block)."""
    kill = kill_trial(reader, PERIOD, hosted=True, device=block)
    assert not kill.axes_left_deflected and kill.axes_latency_ms is not None and kill.guard_exited, kill
    stall = stall_trial(reader, PERIOD, hosted=True, device=block)
    assert stall.axes_latency_ms is not None and stall.axes_latency_ms <= 1e3 * 4 * PERIOD, stall
    assert stall.note.startswith("DISENGAGED guard process released the keys"), stall
    assert not stall.axes_left_deflected


def test_hosted_axes_are_held_by_the_guard_process_and_refused_after_a_stall(reader, block):
    from agent.io.guard import GuardConfig

    with X11Keys() as backend, ScsControlsOutput.open(block.path) as axes, \
            SafetyGuard(backend, PERIOD, config=GuardConfig(host_axes=True), axes=axes) as guard:
        assert guard.axes_hosted and type(guard.axes).__name__ == "HostedAxes"
        assert guard.engage(frame_fresh=True)
        guard.apply(KeysHeld(), axes=STEER)  # acknowledged: the guard process wrote it
        assert reads(block) == pytest.approx((0.8, 0.5, 0.0))
        import time

        time.sleep(5 * PERIOD)  # no heartbeat: the guard process centres the axes and locks them
        assert reads(block) == (0.0, 0.0, 0.0)
        guard.apply(KeysHeld(), axes=STEER)
        assert not guard.engaged and guard.disengagement.reason is DisengageReason.GUARD_RELEASED
        assert reads(block) == (0.0, 0.0, 0.0)
        assert guard.engage(frame_fresh=True)  # Unlock
        guard.apply(KeysHeld(), axes=Axes(steer=0.1))
        assert reads(block) == pytest.approx((0.1, 0.0, 0.0))
    assert reads(block) == (0.0, 0.0, 0.0)

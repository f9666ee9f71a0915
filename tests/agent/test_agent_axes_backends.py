"""The analog output backends beside scs-controls: a Linux uinput virtual gamepad and a Windows
vgamepad (ViGEmBus) pad, and choosing a backend by name.

Neither can make a real device here: this machine has no /dev/uinput and no Windows. So

- the uinput gamepad's capabilities are checked against Python ports of the two rules that
  decide whether Linux games see it as a joystick: systemd's udev builtin ``input_id``
  (src/udev/udev-builtin-input_id.c, ``test_pointers()`` and ``test_key()``) and SDL's fallback
  without udev (libsdl-org/SDL src/core/linux/SDL_evdev_capabilities.c,
  ``SDL_EVDEV_GuessDeviceClass``); its value mapping is checked on a FAKE ``evdev.UInput`` that
  records ``write()``/``syn()``, because /dev/uinput does not exist here;
- the vgamepad backend runs on a FAKE ``vgamepad`` module put in ``sys.modules``, because
  ViGEmBus is a Windows kernel driver and cannot run here;
- the real uinput test below runs only where /dev/uinput is usable, and says why it skips.
"""
from __future__ import annotations

import gc
import sys
import types
import weakref

import pytest

from agent.io.axes import (AXIS_BACKENDS, NEUTRAL, AxisBackendUnavailable, Axes, AxisOutput, axis_backend_problem,
                           axis_backend_problems, open_axis_output)
from agent.io.keys.uinput import uinput_problem

evdev = pytest.importorskip("evdev")
ec = evdev.ecodes

from agent.io.axes.uinput_gamepad import (BUTTONS, PEDAL_MAX, STICK_MAX, GamepadUnavailable,  # noqa: E402
                                          UinputGamepadOutput, gamepad_capabilities, gamepad_problem)


# --- systemd udev: src/udev/udev-builtin-input_id.c, test_pointers() and test_key(), ported line by line
# --- (the version with FOREACH_ELEMENT and "joystick un-detection"; comments quote the C). Sets of codes
# --- stand in for the kernel's capability bitmasks: test_bit(x, mask) is `x in mask`.

_WELL_KNOWN_KEYBOARD_KEYS = (ec.KEY_LEFTCTRL, ec.KEY_CAPSLOCK, ec.KEY_NUMLOCK, ec.KEY_INSERT, ec.KEY_MUTE, ec.KEY_CALC,
                             ec.KEY_FILE, ec.KEY_MAIL, ec.KEY_PLAYPAUSE, ec.KEY_BRIGHTNESSDOWN)
# "key code ranges above BTN_MISC (start is inclusive, stop is exclusive)"
_HIGH_KEY_BLOCKS = ((ec.KEY_OK, ec.BTN_DPAD_UP), (ec.KEY_ALS_TOGGLE, ec.BTN_TRIGGER_HAPPY))


def udev_test_pointers(ev, abs_, key, rel=frozenset(), props=frozenset(), bustype=ec.BUS_VIRTUAL) -> set[str]:
    """The ID_INPUT_* properties systemd's test_pointers() sets."""
    out: set[str] = set()
    has_keys = ec.EV_KEY in ev
    has_abs_coordinates = ec.ABS_X in abs_ and ec.ABS_Y in abs_
    has_3d_coordinates = has_abs_coordinates and ec.ABS_Z in abs_
    is_accelerometer = ec.INPUT_PROP_ACCELEROMETER in props
    if not has_keys and has_3d_coordinates:
        is_accelerometer = True
    if is_accelerometer:
        return {"ID_INPUT_ACCELEROMETER"}
    is_pointing_stick = ec.INPUT_PROP_POINTING_STICK in props
    has_stylus = ec.BTN_STYLUS in key
    has_pen = ec.BTN_TOOL_PEN in key
    finger_but_no_pen = ec.BTN_TOOL_FINGER in key and ec.BTN_TOOL_PEN not in key
    has_mouse_button = any(b in key for b in range(ec.BTN_MOUSE, ec.BTN_JOYSTICK))
    has_rel_coordinates = ec.EV_REL in ev and ec.REL_X in rel and ec.REL_Y in rel
    has_mt_coordinates = ec.ABS_MT_POSITION_X in abs_ and ec.ABS_MT_POSITION_Y in abs_
    # "unset has_mt_coordinates if devices claims to have all abs axis"
    if has_mt_coordinates and ec.ABS_MT_SLOT in abs_ and ec.ABS_MT_SLOT - 1 in abs_:
        has_mt_coordinates = False
    is_direct = ec.INPUT_PROP_DIRECT in props
    has_touch = ec.BTN_TOUCH in key
    has_pad_buttons = ec.BTN_0 in key and ec.BTN_1 in key and not has_pen
    has_wheel = ec.EV_REL in ev and (ec.REL_WHEEL in rel or ec.REL_HWHEEL in rel)
    num_joystick_buttons = num_joystick_axes = 0
    # "a mouse with more than 16 buttons runs into the joystick range ... Skip those."
    if ec.BTN_JOYSTICK - 1 not in key:
        num_joystick_buttons += sum(b in key for b in range(ec.BTN_JOYSTICK, ec.BTN_DIGI))
        num_joystick_buttons += sum(b in key for b in range(ec.BTN_TRIGGER_HAPPY1, ec.BTN_TRIGGER_HAPPY40 + 1))
        num_joystick_buttons += sum(b in key for b in range(ec.BTN_DPAD_UP, ec.BTN_DPAD_RIGHT + 1))
    num_joystick_axes = sum(a in abs_ for a in range(ec.ABS_RX, ec.ABS_PRESSURE))
    is_tablet = is_touchpad = is_abs_mouse = is_touchscreen = is_joystick = is_tablet_pad = is_mouse = False
    if has_abs_coordinates:
        if has_stylus or has_pen:
            is_tablet = True
        elif finger_but_no_pen and not is_direct:
            is_touchpad = True
        elif has_mouse_button:
            is_abs_mouse = True
        elif has_touch or is_direct:
            is_touchscreen = True
        elif num_joystick_buttons > 0 or num_joystick_axes > 0:
            is_joystick = True
    elif num_joystick_buttons > 0 or num_joystick_axes > 0:
        is_joystick = True
    if has_mt_coordinates:
        if has_stylus or has_pen:
            is_tablet = True
        elif finger_but_no_pen and not is_direct:
            is_touchpad = True
        elif has_touch or is_direct:
            is_touchscreen = True
    if is_tablet and has_pad_buttons:
        is_tablet_pad = True
    if has_pad_buttons and has_wheel and not has_rel_coordinates:
        is_tablet = is_tablet_pad = True
    if (not is_tablet and not is_touchpad and not is_joystick and has_mouse_button
            and (has_rel_coordinates or not has_abs_coordinates)):
        is_mouse = True
    if is_mouse and bustype == ec.BUS_I2C:  # "There is no such thing as an i2c mouse"
        is_pointing_stick = True
    if is_joystick:  # "Joystick un-detection"
        num_well_known_keys = sum(k in key for k in _WELL_KNOWN_KEYBOARD_KEYS) if has_keys else 0
        if num_well_known_keys >= 4 or num_joystick_buttons + num_joystick_axes < 2:
            is_joystick = False
        if has_wheel and has_pad_buttons:
            is_joystick = False
    for flag, prop in ((is_pointing_stick, "ID_INPUT_POINTINGSTICK"), (is_mouse or is_abs_mouse, "ID_INPUT_MOUSE"),
                       (is_touchpad, "ID_INPUT_TOUCHPAD"), (is_touchscreen, "ID_INPUT_TOUCHSCREEN"),
                       (is_joystick, "ID_INPUT_JOYSTICK"), (is_tablet, "ID_INPUT_TABLET"),
                       (is_tablet_pad, "ID_INPUT_TABLET_PAD")):
        if flag:
            out.add(prop)
    return out


def udev_test_key(ev, key) -> set[str]:
    """The ID_INPUT_KEY / ID_INPUT_KEYBOARD properties systemd's test_key() sets."""
    if ec.EV_KEY not in ev:
        return set()
    # "only consider KEY_* here, not BTN_*": the bit blocks below BTN_MISC, then the high blocks
    found = any(k < ec.BTN_MISC for k in key) or any(lo <= k < hi for lo, hi in _HIGH_KEY_BLOCKS for k in key)
    out = {"ID_INPUT_KEY"} if found else set()
    if all(k in key for k in range(1, 32)):  # FLAGS_SET(bitmask_key[0], 0xFFFFFFFE)
        out.add("ID_INPUT_KEYBOARD")
    return out


def sdl_guess_device_class(ev, abs_, key, rel=frozenset()) -> set[str]:
    """SDL's class for a device when udev does not say: SDL_EVDEV_GuessDeviceClass, ported."""
    has = ec.EV_ABS in ev
    if has and {ec.ABS_X, ec.ABS_Y, ec.ABS_Z} <= abs_ and ec.EV_KEY not in ev:
        return {"accelerometer"}  # "X, Y, Z axes but no buttons probably means an accelerometer"
    if has and {ec.ABS_RX, ec.ABS_RY, ec.ABS_RZ} <= abs_ and ec.EV_KEY not in ev:
        return {"accelerometer"}
    out: set[str] = set()
    if has and ec.ABS_X in abs_ and ec.ABS_Y in abs_:
        if ec.BTN_STYLUS in key or ec.BTN_TOOL_PEN in key:
            pass  # ID_INPUT_TABLET
        elif ec.BTN_TOOL_FINGER in key and ec.BTN_TOOL_PEN not in key:
            out.add("touchpad")
        elif ec.BTN_MOUSE in key:
            out.add("mouse")
        elif ec.BTN_TOUCH in key:
            out.add("touchscreen")
        if (ec.BTN_TRIGGER in key or ec.BTN_A in key or ec.BTN_1 in key
                or {ec.ABS_RX, ec.ABS_RY, ec.ABS_RZ, ec.ABS_THROTTLE, ec.ABS_RUDDER, ec.ABS_WHEEL, ec.ABS_GAS,
                    ec.ABS_BRAKE} & abs_):
            out.add("joystick")
    if ec.EV_REL in ev and ec.REL_X in rel and ec.REL_Y in rel and ec.BTN_MOUSE in key:
        out.add("mouse")
    if ec.EV_KEY in ev and (any(k < ec.BTN_MISC for k in key)
                            or any(lo <= k < hi for lo, hi in _HIGH_KEY_BLOCKS for k in key)):
        out.add("keyboard")  # ID_INPUT_KEY
    if any(0 < k < 32 for k in key):  # (bitmask_key[0] & 0xFFFFFFFE) != 0
        out.add("keyboard")
    return out


def _bitmasks(caps: dict) -> tuple[set, set, set]:
    """What the kernel would expose for a uinput device made with ``caps`` (EV_SYN is always set)."""
    ev = {ec.EV_SYN, *caps}
    key = set(caps.get(ec.EV_KEY, []))
    abs_ = {code for code, _ in caps.get(ec.EV_ABS, [])}
    return ev, abs_, key


def test_udev_and_sdl_class_the_gamepad_as_a_joystick_and_nothing_else():
    ev, abs_, key = _bitmasks(gamepad_capabilities())
    assert udev_test_pointers(ev, abs_, key) | udev_test_key(ev, key) == {"ID_INPUT_JOYSTICK"}
    assert sdl_guess_device_class(ev, abs_, key) == {"joystick"}


def test_the_ports_tell_apart_devices_that_are_not_joysticks():
    """The ports are not trivially true: devices one might make instead are classed otherwise."""
    x_only = ({ec.EV_SYN, ec.EV_ABS}, {ec.ABS_X}, set())
    assert udev_test_pointers(*x_only) == set() and sdl_guess_device_class(*x_only) == set()
    xyz_no_buttons = ({ec.EV_SYN, ec.EV_ABS}, {ec.ABS_X, ec.ABS_Y, ec.ABS_Z}, set())
    assert udev_test_pointers(*xyz_no_buttons) == {"ID_INPUT_ACCELEROMETER"}
    assert sdl_guess_device_class(*xyz_no_buttons) == {"accelerometer"}
    # one button and X/Y: SDL says joystick, current udev un-detects it (fewer than 2 buttons + axes)
    one_button = ({ec.EV_SYN, ec.EV_ABS, ec.EV_KEY}, {ec.ABS_X, ec.ABS_Y}, {ec.BTN_SOUTH})
    assert udev_test_pointers(*one_button) == set() and sdl_guess_device_class(*one_button) == {"joystick"}
    # a mouse button makes an absolute device a mouse, before any joystick button counts
    abs_mouse = ({ec.EV_SYN, ec.EV_ABS, ec.EV_KEY}, {ec.ABS_X, ec.ABS_Y, ec.ABS_RZ}, {ec.BTN_LEFT, ec.BTN_SOUTH})
    assert udev_test_pointers(*abs_mouse) == {"ID_INPUT_MOUSE"}
    # a keyboard with joystick buttons: un-detected by the well-known keys
    kbd = ({ec.EV_SYN, ec.EV_ABS, ec.EV_KEY}, {ec.ABS_X, ec.ABS_Y},
           {ec.BTN_SOUTH, ec.BTN_EAST, ec.KEY_LEFTCTRL, ec.KEY_CAPSLOCK, ec.KEY_NUMLOCK, ec.KEY_INSERT})
    assert "ID_INPUT_JOYSTICK" not in udev_test_pointers(*kbd) and udev_test_key(kbd[0], kbd[2]) == {"ID_INPUT_KEY"}


def test_capabilities_ranges_and_no_dead_zone():
    caps = gamepad_capabilities()
    assert caps[ec.EV_KEY] == [getattr(ec, b) for b in BUTTONS] and len(BUTTONS) == 11
    info = dict(caps[ec.EV_ABS])
    for code in (ec.ABS_X, ec.ABS_Y, ec.ABS_RX, ec.ABS_RY):
        assert (info[code].min, info[code].max, info[code].value) == (-STICK_MAX, STICK_MAX, 0)
        assert (info[code].min + info[code].max) / 2 == 0  # every reader's centre is the neutral value
    for code in (ec.ABS_Z, ec.ABS_RZ):
        assert (info[code].min, info[code].max, info[code].value) == (0, PEDAL_MAX, 0)
    assert all(a.fuzz == 0 and a.flat == 0 for a in info.values())  # no kernel filtering, no SDL dead zone


class FakeUInput:
    """A FAKE evdev.UInput: /dev/uinput does not exist here, so no kernel device can be made.
    It records the constructor's arguments and every write()/syn()/close()."""

    made: list["FakeUInput"] = []

    def __init__(self, events, **kwargs):
        self.events, self.kwargs, self.log, self.closed = events, kwargs, [], False
        FakeUInput.made.append(self)

    def write(self, etype, code, value):
        assert not self.closed
        self.log.append((etype, code, value))

    def syn(self):
        self.log.append("SYN")

    def close(self):
        self.closed = True


def _report(steer, throttle, brake):
    return [(ec.EV_ABS, ec.ABS_X, steer), (ec.EV_ABS, ec.ABS_RZ, throttle), (ec.EV_ABS, ec.ABS_Z, brake), "SYN"]


def test_uinput_gamepad_maps_axes_to_events_on_a_fake_uinput():
    pad = UinputGamepadOutput(uinput_factory=FakeUInput)
    dev = pad.device
    assert isinstance(pad, AxisOutput) and dev.events == gamepad_capabilities()
    assert dev.kwargs == {"name": "TruckPilot virtual gamepad", "vendor": 0, "product": 0, "version": 1,
                          "bustype": ec.BUS_VIRTUAL, "phys": "truckpilot/gamepad"}
    assert dev.log == _report(0, 0, 0) and pad.last == NEUTRAL  # neutral at open
    dev.log.clear()
    pad.send(Axes(steer=0.5, throttle=0.25, brake=0.0))
    pad.send(Axes(steer=-1.0, throttle=0.0, brake=1.0))
    pad.send(Axes(steer=1.0, throttle=1.0))
    pad.send(Axes(steer=-0.001, brake=0.5))
    assert dev.log == (_report(16384, 256, 0) + _report(-32767, 0, 1023) + _report(32767, 1023, 0)
                       + _report(-33, 0, 512))  # round(x * 32767), round(p * 1023)
    dev.log.clear()
    pad.neutral()
    assert dev.log == _report(0, 0, 0) and pad.last == NEUTRAL
    pad.send(Axes(steer=0.2))
    dev.log.clear()
    pad.close()
    assert dev.log == _report(0, 0, 0) and dev.closed  # neutral, then the device is destroyed
    pad.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        pad.send(Axes(steer=0.1))


def test_uinput_gamepad_without_dev_uinput_says_so():
    if uinput_problem() is None:
        pytest.skip("/dev/uinput is usable here: the missing-device message cannot be seen")
    with pytest.raises(GamepadUnavailable, match="/dev/uinput"):
        UinputGamepadOutput()
    assert "Linux only" in gamepad_problem("win32")


@pytest.mark.skipif(uinput_problem() is not None, reason=f"uinput not usable here: {uinput_problem()}")
def test_uinput_gamepad_on_the_kernel():
    """A real device: its capabilities and the axis values the kernel holds, read back through evdev."""
    with UinputGamepadOutput(device_name="truckpilot-test-gamepad") as pad:
        device = next(evdev.InputDevice(p) for p in evdev.list_devices()
                      if evdev.InputDevice(p).name == "truckpilot-test-gamepad")
        caps = device.capabilities()
        assert set(caps[ec.EV_KEY]) == {getattr(ec, b) for b in BUTTONS}
        assert {code for code, _ in caps[ec.EV_ABS]} == {c for c, _ in gamepad_capabilities()[ec.EV_ABS]}
        ev, abs_, key = {*caps}, {c for c, _ in caps[ec.EV_ABS]}, set(caps[ec.EV_KEY])
        assert udev_test_pointers(ev, abs_, key) == {"ID_INPUT_JOYSTICK"}
        pad.send(Axes(steer=-0.5, throttle=0.75, brake=0.1))
        assert (device.absinfo(ec.ABS_X).value, device.absinfo(ec.ABS_RZ).value,
                device.absinfo(ec.ABS_Z).value) == (-16384, 767, 102)
        pad.neutral()
        assert device.absinfo(ec.ABS_X).value == 0 and device.absinfo(ec.ABS_RZ).value == 0


# --- vgamepad: a FAKE module, because ViGEmBus is a Windows kernel driver and cannot run here.

def _fake_vgamepad(log: list) -> types.ModuleType:
    """A FAKE ``vgamepad`` with vgamepad 0.1.3's VX360Gamepad signatures (vgamepad/win/virtual_gamepad.py):
    the float setters scale as the real ones do, only update() "sends" (here: logs) the report."""

    class VX360Gamepad:
        def __init__(self):
            self.report = self.get_default_report()
            log.append(("plugged",))
            self.update()  # the real constructor sends the default report too

        def get_default_report(self):
            return {"wButtons": 0, "bLeftTrigger": 0, "bRightTrigger": 0, "sThumbLX": 0, "sThumbLY": 0,
                    "sThumbRX": 0, "sThumbRY": 0}

        def reset(self):
            self.report = self.get_default_report()

        def left_trigger_float(self, value_float):
            self.report["bLeftTrigger"] = round(value_float * 255)

        def right_trigger_float(self, value_float):
            self.report["bRightTrigger"] = round(value_float * 255)

        def left_joystick_float(self, x_value_float, y_value_float):
            self.report["sThumbLX"] = round(x_value_float * 32767)
            self.report["sThumbLY"] = round(y_value_float * 32767)

        def update(self):
            r = self.report
            log.append(("update", r["sThumbLX"], r["sThumbLY"], r["bRightTrigger"], r["bLeftTrigger"],
                        r["wButtons"]))

        def __del__(self):
            log.append(("unplugged",))

    module = types.ModuleType("vgamepad")
    module.VX360Gamepad = VX360Gamepad
    return module


def test_vgamepad_maps_axes_to_the_x360_report_on_a_fake_module(monkeypatch):
    from agent.io.axes.vigem import VgamepadOutput

    log: list = []
    monkeypatch.setitem(sys.modules, "vgamepad", _fake_vgamepad(log))
    pad = open_axis_output("vgamepad")
    assert isinstance(pad, VgamepadOutput) and isinstance(pad, AxisOutput)
    # (stick X, stick Y, right trigger = throttle, left trigger = brake, buttons)
    assert log == [("plugged",), ("update", 0, 0, 0, 0, 0), ("update", 0, 0, 0, 0, 0)]
    log.clear()
    pad.send(Axes(steer=0.5, throttle=0.25, brake=0.75))
    pad.send(Axes(steer=-1.0, throttle=1.0))
    assert log == [("update", 16384, 0, 64, 191, 0), ("update", -32767, 0, 255, 0, 0)]
    log.clear()
    pad.neutral()
    assert log == [("update", 0, 0, 0, 0, 0)] and pad.last == NEUTRAL
    pad.send(Axes(steer=0.3, brake=0.2))
    ref = weakref.ref(pad._pad)
    log.clear()
    pad.close()
    gc.collect()
    assert log == [("update", 0, 0, 0, 0, 0), ("unplugged",)] and ref() is None  # neutral, then unplugged
    pad.close()
    with pytest.raises(RuntimeError, match="closed"):
        pad.send(Axes(steer=0.1))


def test_vgamepad_missing_or_without_vigembus_is_a_clear_error(monkeypatch):
    from agent.io.axes.vigem import VgamepadUnavailable, import_vgamepad, vgamepad_problem

    monkeypatch.setitem(sys.modules, "vgamepad", None)  # makes `import vgamepad` fail, installed or not
    with pytest.raises(VgamepadUnavailable, match="pip install vgamepad") as exc:
        open_axis_output("vgamepad")
    assert "ViGEmBus" in str(exc.value) and isinstance(exc.value, AxisBackendUnavailable)
    assert "uinput-gamepad" in vgamepad_problem(platform="linux")

    def bus_not_found(name):  # what vgamepad's import does on Windows without the driver (VBus() at import)
        raise Exception("VIGEM_ERROR_BUS_NOT_FOUND")

    with pytest.raises(VgamepadUnavailable, match="ViGEmBus driver.*VIGEM_ERROR_BUS_NOT_FOUND.*pip install vgamepad"):
        import_vgamepad(bus_not_found, platform="win32")

    def no_libevdev(name):
        raise ModuleNotFoundError("No module named 'libevdev'", name="libevdev")

    assert "'libevdev'" in vgamepad_problem(no_libevdev, platform="linux")


# --- choosing a backend by name

def test_open_axis_output_by_name(tmp_path):
    from sim.scs_controls_layout import LAYOUTS, NEWEST

    with pytest.raises(ValueError, match="unknown analog output backend 'joystick'.*scs-controls, uinput-gamepad, "
                                         "vgamepad"):
        open_axis_output("joystick")
    with pytest.raises(ValueError, match="unknown"):
        axis_backend_problem("joystick")
    path = tmp_path / "SCSControls"
    path.write_bytes(bytes(LAYOUTS[NEWEST].size))
    with open_axis_output("scs-controls", path=path) as out:
        assert out.layout.version == NEWEST
    pad = open_axis_output("uinput-gamepad", uinput_factory=FakeUInput, device_name="by name")
    assert FakeUInput.made[-1].kwargs["name"] == "by name"
    pad.close()


def test_backend_problems_look_without_opening(tmp_path, monkeypatch):
    from sim.scs_controls_layout import LAYOUTS, NEWEST

    monkeypatch.setitem(sys.modules, "vgamepad", None)
    missing = axis_backend_problems(scs_path=str(tmp_path / "none"))
    assert set(missing) == set(AXIS_BACKENDS)
    assert "no SCS controls block" in missing["scs-controls"] and "pip install vgamepad" in missing["vgamepad"]
    assert missing["uinput-gamepad"] == gamepad_problem()
    block = tmp_path / "SCSControls"
    block.write_bytes(b"\xab" * LAYOUTS[NEWEST].size)
    assert axis_backend_problem("scs-controls", scs_path=str(block)) is None
    assert block.read_bytes() == b"\xab" * LAYOUTS[NEWEST].size  # looked at, not written (open() writes neutral)
    block.write_bytes(b"\0" * 7)
    assert "7 bytes" in axis_backend_problem("scs-controls", scs_path=str(block))
    assert "Linux only" in axis_backend_problem("uinput-gamepad", platform="win32")


def test_doctor_reports_each_axis_backend():
    from agent.apps.doctor import OK, WARN, check_axis_outputs

    results = check_axis_outputs({"scs-controls": "no SCS controls block at /dev/shm/SCS/SCSControls: install it",
                                  "uinput-gamepad": None, "vgamepad": "the vgamepad package is not installed"})
    assert [(r.name, r.status) for r in results] == [("axes scs-controls", WARN), ("axes uinput-gamepad", OK),
                                                     ("axes vgamepad", WARN)]
    assert "reachable: a Linux uinput virtual gamepad" in results[1].line()
    assert "not reachable: the vgamepad package is not installed" in results[2].line() and "fix:" in results[2].line()
    assert len(check_axis_outputs()) == len(AXIS_BACKENDS)  # this machine, as it is

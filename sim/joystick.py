"""A joystick or gamepad as the sim window's analog input, through pygame's (SDL's) joystick API.

``truckpilot sim`` reads the first joystick SDL finds (``--joystick auto``, the default; ``N`` for
another, ``off`` for none) every frame, beside the keyboard and the SCS input plugin's block: a
wheel, a pad, or the agent's own virtual gamepad (``agent.io.axes.uinput_gamepad``).

Which axis is which: ``JoystickLayout``, default the Linux xpad layout of an Xbox pad in SDL's raw
joystick API, which the agent's uinput gamepad copies: axis 0 (ABS_X, left stick X) steers, axis 5
(ABS_RZ, right trigger) is the accelerator, axis 2 (ABS_Z, left trigger) the brake. SDL scales every
axis to [-1, 1]; a trigger rests at -1, so a pedal is (value + 1) / 2. ``--joystick-axes S,T,B``
names other axes (a wheel's pedals are often axes 1 and 2); a pedal axis of -1 means none.
"""
from __future__ import annotations

from dataclasses import dataclass

from .scs_controls import ControlsReading


@dataclass(frozen=True)
class JoystickLayout:
    """Joystick axis indices (SDL order) of the steering, accelerator and brake (-1: none), and the
    steering dead zone (|value| below it reads 0: a pad's stick rarely rests at exactly 0)."""

    steer: int = 0
    throttle: int = 5
    brake: int = 2
    deadzone: float = 0.05

    @classmethod
    def parse(cls, text: str) -> "JoystickLayout":
        """"S,T,B" axis indices -> a layout; ValueError naming the text otherwise."""
        try:
            steer, throttle, brake = (int(x) for x in text.split(","))
        except ValueError:
            raise ValueError(f"--joystick-axes {text!r}: give three axis indices STEER,THROTTLE,BRAKE, e.g. 0,5,2 "
                             "(-1 for a pedal the device lacks)") from None
        if steer < 0:
            raise ValueError(f"--joystick-axes {text!r}: the steering axis must be an index >= 0")
        return cls(steer, throttle, brake)


def _pedal(value: float) -> float:
    return min(1.0, max(0.0, (value + 1.0) / 2.0))


class JoystickInput:
    """One SDL joystick read as the plugin's ``ControlsReading`` (steering + = right, pedals [0, 1]).

    Initialises pygame's joystick module; ``JoystickInput.open(spec)`` is the CLI's entry. Read with
    ``read()`` after the frame's ``pygame.event.pump`` / ``pygame.event.get`` (SDL updates the axes then).
    """

    def __init__(self, index: int = 0, layout: JoystickLayout = JoystickLayout()) -> None:
        import pygame

        pygame.joystick.init()
        count = pygame.joystick.get_count()
        if not 0 <= index < count:
            raise ValueError(f"no joystick {index}: SDL finds {count} (plug one in, or run without --joystick)")
        self.joystick = pygame.joystick.Joystick(index)
        self.layout = layout
        axes = self.joystick.get_numaxes()
        for name, axis in (("steering", layout.steer), ("throttle", layout.throttle), ("brake", layout.brake)):
            if axis >= axes:
                raise ValueError(f"joystick {index} ({self.joystick.get_name()}) has {axes} axes, no {name} axis "
                                 f"{axis}: pass --joystick-axes STEER,THROTTLE,BRAKE")

    @classmethod
    def open(cls, spec: str, layout: JoystickLayout = JoystickLayout()) -> "JoystickInput | None":
        """``spec`` "auto": the first joystick, None when SDL finds none; "off": None; "N": joystick N
        (ValueError when it is not there)."""
        if spec == "off":
            return None
        if spec == "auto":
            import pygame

            pygame.joystick.init()
            return cls(0, layout) if pygame.joystick.get_count() > 0 else None
        try:
            index = int(spec)
        except ValueError:
            raise ValueError(f"--joystick {spec!r}: auto, off or a joystick index") from None
        return cls(index, layout)

    @property
    def name(self) -> str:
        return self.joystick.get_name()

    def read(self) -> ControlsReading:
        lay, js = self.layout, self.joystick
        steer = js.get_axis(lay.steer)
        if abs(steer) < lay.deadzone:
            steer = 0.0
        throttle = _pedal(js.get_axis(lay.throttle)) if lay.throttle >= 0 else 0.0
        brake = _pedal(js.get_axis(lay.brake)) if lay.brake >= 0 else 0.0
        return ControlsReading(min(1.0, max(-1.0, steer)), throttle, brake, 0.0)

    def close(self) -> None:
        self.joystick.quit()


def strongest(*readings: ControlsReading | None) -> ControlsReading | None:
    """Per axis, the reading that asks for the most (largest |steering|, largest pedal) among the
    analog inputs present this frame (the plugin's block, a joystick); None when there is none."""
    present = [r for r in readings if r is not None]
    if not present:
        return None
    return ControlsReading(max((r.steering for r in present), key=abs), max(r.aforward for r in present),
                           max(r.abackward for r in present), max(r.clutch for r in present))

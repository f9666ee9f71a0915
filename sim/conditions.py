"""Appearance of the world under each time of day and weather: colours, light
levels and visibility. Pure data and arithmetic (no pygame)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TIMES_OF_DAY, WEATHERS


@dataclass(frozen=True)
class Look:
    """Light and colour for one (time of day, weather).

    ambient: 0..1 multiplier on surface colours; tint: per-channel multiplier;
    headlight_range_m: 0 = headlights add nothing; fog: colour that distant
    things fade into, reaching 95% at ``visibility_m``; sky_top / sky_horizon:
    the sky gradient; lights_on: vehicles show lamps; rain: draw streaks.
    """

    time_of_day: str
    weather: str
    ambient: float
    tint: tuple[float, float, float]
    headlight_range_m: float
    fog: tuple[int, int, int]
    visibility_m: float
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    hills: tuple[int, int, int]
    lights_on: bool
    rain: bool

    def fog_fraction(self, z_m: float) -> float:
        """Share (0..1) of the fog colour in a surface z metres away."""
        return 1.0 - math.exp(-3.0 * max(z_m, 0.0) / self.visibility_m)

    def light_level(self, z_m: float, lateral_m: float) -> float:
        """Surface brightness multiplier at forward distance z, lateral offset
        from the truck's axis (headlights add light in a cone ahead)."""
        k = self.ambient
        if self.headlight_range_m > 0 and z_m > 0:
            cone = 4.0 + 0.35 * z_m
            if abs(lateral_m) < cone:
                k += 0.85 * max(0.0, 1.0 - z_m / self.headlight_range_m) * (1.0 - 0.5 * abs(lateral_m) / cone)
        return min(1.0, k)


def make_look(time_of_day: str, weather: str) -> Look:
    if time_of_day not in TIMES_OF_DAY or weather not in WEATHERS:
        raise ValueError(f"unknown condition {time_of_day!r}/{weather!r}; use {TIMES_OF_DAY} x {WEATHERS}")
    if time_of_day == "day":
        ambient, tint, head = 1.0, (1.0, 1.0, 1.0), 0.0
        sky_top, sky_hor, fog, hills = (70, 130, 210), (175, 205, 235), (190, 205, 220), (95, 125, 110)
    elif time_of_day == "dusk":
        ambient, tint, head = 0.62, (1.05, 0.85, 0.78), 45.0
        sky_top, sky_hor, fog, hills = (60, 50, 110), (245, 140, 80), (150, 110, 110), (60, 45, 70)
    else:
        ambient, tint, head = 0.13, (0.8, 0.85, 1.1), 75.0
        sky_top, sky_hor, fog, hills = (5, 6, 18), (20, 24, 45), (18, 20, 30), (10, 12, 20)
    visibility = 1500.0
    if weather == "fog":
        visibility = 85.0
        grey = {"day": (185, 188, 192), "dusk": (135, 115, 115), "night": (30, 31, 36)}[time_of_day]
        fog = grey
        sky_top = sky_hor = hills = grey
    elif weather == "rain":
        visibility = 260.0
        ambient *= 0.78
        mix = lambda c, g: tuple(int(0.35 * a + 0.65 * b) for a, b in zip(c, g))  # noqa: E731
        grey = {"day": (120, 125, 132), "dusk": (85, 75, 80), "night": (14, 15, 20)}[time_of_day]
        sky_top, sky_hor, fog = mix(sky_top, grey), mix(sky_hor, grey), mix(fog, grey)
        hills = mix(hills, grey)
    return Look(time_of_day, weather, ambient, tint, head, fog, visibility, sky_top, sky_hor, hills,
                lights_on=time_of_day != "day" or weather != "clear", rain=weather == "rain")

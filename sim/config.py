"""Simulator configuration: one frozen dataclass, every field documented.

Units: metres, seconds, radians, pixels. Nothing here touches pygame.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

TIMES_OF_DAY: tuple[str, ...] = ("day", "dusk", "night")
WEATHERS: tuple[str, ...] = ("clear", "fog", "rain")
RENDER_MODES: tuple[str, ...] = ("rgb_array", "human")

#: Default physics/frame step: 15 frames per simulated second. Data is recorded
#: at this rate and the expert's key pulses are sized for it.
DEFAULT_DT: float = 1.0 / 15.0


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes one simulator instance.

    The road, traffic, scenery and (when left as None) the conditions are drawn
    from the seed given to ``reset(seed=...)``; ``road_seed`` pins the road
    independently of that seed.
    """

    width: int = 320  #: frame width in pixels (320x240 for data, larger for play)
    height: int = 240  #: frame height in pixels
    time_of_day: str | None = None  #: one of TIMES_OF_DAY, or None = picked by the seed
    weather: str | None = None  #: one of WEATHERS, or None = picked by the seed
    traffic_density: float = 1.0  #: 0 = empty road; 1 = about one vehicle per 130 m per lane
    pedestrian_density: float = 1.0  #: 0 = nobody crosses; scales pedestrians per crossing and walkers
    stopped_per_km: float = 0.0  #: broken-down vehicles standing in the truck's lane, per km of route (0 = none)
    continuous: bool = False  #: False: MultiBinary(4) keys; True: Box (steer, throttle, brake)
    dt: float = DEFAULT_DT  #: seconds simulated per env step (also the frame interval)
    route_length_m: float = 5000.0  #: the episode terminates when this distance is driven
    max_episode_steps: int | None = None  #: truncate after this many steps (None = no limit)
    road_seed: int | None = None  #: None = the road follows the reset seed
    #: None = the road is generated from the seed; a number = a road of this constant curvature
    #: (1/m, + = right; 0 = straight) without zebra crossings, for scripted scenarios
    road_curvature: float | None = None
    window_title: str = "TruckPilot sim"  #: window title in human render mode
    human_scale: float = 1.0  #: window size = frame size x this, in human mode
    fov_deg: float = 62.0  #: horizontal field of view of the cab camera
    camera_height_m: float = 2.6  #: eye height of the driver above the road
    draw_distance_m: float = 180.0  #: nothing further than this is drawn or labelled
    min_box_height_px: float = 4.0  #: ground-truth boxes smaller than this are left out
    min_visible_fraction: float = 0.35  #: boxes with less of their area clear of nearer objects are left out

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 24:
            raise ValueError(f"SimConfig: frame {self.width}x{self.height} is too small; use at least 32x24")
        if self.time_of_day is not None and self.time_of_day not in TIMES_OF_DAY:
            raise ValueError(f"SimConfig: time_of_day={self.time_of_day!r}; use one of {TIMES_OF_DAY} or None")
        if self.weather is not None and self.weather not in WEATHERS:
            raise ValueError(f"SimConfig: weather={self.weather!r}; use one of {WEATHERS} or None")
        if not (0.0 < self.dt <= 0.25):
            raise ValueError(f"SimConfig: dt={self.dt} s is outside (0, 0.25]")
        if self.route_length_m < 50:
            raise ValueError(f"SimConfig: route_length_m={self.route_length_m} is too short; use >= 50")
        if self.traffic_density < 0 or self.pedestrian_density < 0:
            raise ValueError("SimConfig: densities must be >= 0")
        if not self.stopped_per_km >= 0:
            raise ValueError(f"SimConfig: stopped_per_km={self.stopped_per_km}; use >= 0 (0 = none)")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"SimConfig: max_episode_steps={self.max_episode_steps}; use >= 1 or None")

    def with_overrides(self, **overrides) -> "SimConfig":
        """A copy with ``overrides`` applied; unknown names raise a clear error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"SimConfig has no option(s) {unknown}; known options: {sorted(known)}")
        return replace(self, **overrides)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); a clear error otherwise."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None

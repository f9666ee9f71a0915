"""Gymnasium environment ``TruckSim-v0``: the truck seen from its cab.

Observation: the rendered frame, HxWx3 uint8 RGB. Action: keys held,
MultiBinary(4) in (left, right, throttle, brake) order, or with
``continuous=True`` a Box (steer in [-1, 1] negative = left, throttle, brake);
either way a ``sim.truck.TruckControls`` is also taken as it is (the window
app's keys mixed with analog input, ``sim.scs_controls.mix_controls``).
Ground truth for every frame is in ``info`` (see ``TruckSimEnv.step``).

Each ``step`` simulates ``config.dt`` seconds (default 1/15 s: 15 frames per
simulated second). Same seed + same actions -> byte-identical frames.
"""
from __future__ import annotations

import logging
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from .config import RENDER_MODES, TIMES_OF_DAY, WEATHERS, SimConfig
from .expert import Expert
from .labels import CLASSES
from .render import Renderer
from .road import constant_road
from .truck import TruckControls
from .world import World

log = logging.getLogger(__name__)


class TruckSimEnv(gymnasium.Env):
    """The simulator as a Gymnasium env.

    Build with ``TruckSimEnv(render_mode="rgb_array", config=SimConfig(...))``
    or keyword options (any SimConfig field), e.g.
    ``gymnasium.make("TruckSim-v0", width=640, height=480, weather="fog")``.
    ``reset(options={"time_of_day": ..., "weather": ...})`` overrides the
    conditions for one episode.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 15}

    def __init__(self, render_mode: str | None = None, config: SimConfig | None = None, **options: Any):
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"TruckSimEnv: render_mode={render_mode!r}; use one of {RENDER_MODES} or None")
        self.config = (config or SimConfig()).with_overrides(**options)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.config.dt))}
        w, h = self.config.width, self.config.height
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        if self.config.continuous:
            self.action_space = spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32),
                                           dtype=np.float32)
        else:
            self.action_space = spaces.MultiBinary(4)
        self.world: World | None = None
        self.time_of_day: str | None = None
        self.weather: str | None = None
        self._renderer: Renderer | None = None
        self._label_expert = Expert(seed=0, dt=self.config.dt)
        self._frame: np.ndarray | None = None
        self._steps = 0
        self._window = None
        self._clock = None

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        rng = self.np_random
        episode_seed = int(rng.integers(0, 2**31 - 1))
        tod = options.pop("time_of_day", None) or self.config.time_of_day or TIMES_OF_DAY[int(rng.integers(3))]
        weather = options.pop("weather", None) or self.config.weather or WEATHERS[int(rng.integers(3))]
        if options:
            raise ValueError(f"TruckSimEnv.reset: unknown options {sorted(options)}; known: time_of_day, weather")
        if tod not in TIMES_OF_DAY or weather not in WEATHERS:
            raise ValueError(f"TruckSimEnv.reset: conditions {tod!r}/{weather!r}; use {TIMES_OF_DAY} x {WEATHERS}")
        c = self.config
        self.world = World(episode_seed, route_length_m=c.route_length_m, traffic_density=c.traffic_density,
                           pedestrian_density=c.pedestrian_density, road_seed=c.road_seed,
                           stopped_per_km=c.stopped_per_km,
                           road=None if c.road_curvature is None else constant_road(c.road_curvature,
                                                                                    c.route_length_m))
        if self._renderer is None or (self.time_of_day, self.weather) != (tod, weather):
            self._renderer = Renderer(c.width, c.height, tod, weather, fov_deg=c.fov_deg,
                                      camera_height_m=c.camera_height_m, draw_distance_m=c.draw_distance_m,
                                      min_box_height_px=c.min_box_height_px,
                                      min_visible_fraction=c.min_visible_fraction)
        self.time_of_day, self.weather = tod, weather
        self._steps = 0
        self._label_expert.reset()
        obs, info = self._observe(())
        if self.render_mode == "human":
            self._show()
        return obs, info

    def step(self, action):
        """Hold ``action`` for ``config.dt`` seconds; return (frame, reward, terminated, truncated, info).

        info (also after reset):
          direction: "left" | "straight" | "right" -- the expert's intended steer
              (``Expert.intended_steer``, stateless, computed even when someone
              else drives) with a +-0.05 deadband; intended_steer: that value.
          boxes: float32 (N, 4) xyxy pixels of the returned frame, clipped; objects
              under 4 px tall, more than 65% hidden behind nearer objects, or lost
              in fog/darkness are left out. labels: N names from sim.CLASSES;
              object_ids: N ids stable over the episode.
          lateral_offset: m from the centre of the lane the truck's centre is
              nearest to (+ = right); speed: m/s; distance: m along the road.
          events: list of "collision", "off_road" (a truck edge beyond the paved
              shoulder), "lane_departure" (the truck's centre changed lane or left
              the lanes), "oncoming_lane" (centre left of the centreline).
          route_progress: 0..1; road_curvature: 1/m 10 m ahead (+ = right bend);
          heading_error: rad (+ = pointing right of the road); lead_distance: m
              from the truck's front to the nearest vehicle/person ahead in its
              lane, inf if none within 250 m; steer: the truck's steer in [-1, 1];
              time_of_day, weather, step.
        terminated: collision or route done; truncated: ``max_episode_steps`` reached.
        reward: metres advanced / 10, -10 on collision, -0.1 per off-road step.
        """
        if self.world is None:
            raise RuntimeError("TruckSimEnv.step called before reset()")
        controls = self._controls(action)
        before = self.world.distance_m
        events = self.world.step(self.config.dt, controls)
        self._steps += 1
        terminated = "collision" in events or self.world.route_done
        limit = self.config.max_episode_steps
        truncated = bool(limit is not None and self._steps >= limit and not terminated)
        reward = (self.world.distance_m - before) / 10.0
        if "collision" in events:
            reward -= 10.0
        if "off_road" in events:
            reward -= 0.1
        obs, info = self._observe(events)
        if self.render_mode == "human":
            self._show()
        return obs, float(reward), bool(terminated), truncated, info

    def render(self):
        """rgb_array: a copy of the last frame (HxWx3 uint8 RGB). human: shows it in the window."""
        if self._frame is None:
            return None
        if self.render_mode == "human":
            self._show()
            return None
        return self._frame.copy()

    def close(self):
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None

    # ------------------------------------------------------------------ internals
    def _controls(self, action) -> TruckControls:
        if isinstance(action, TruckControls):  # the window's mixed keyboard + analog input, as it is
            return action
        a = np.asarray(action)
        if self.config.continuous:
            if a.shape != (3,):
                raise ValueError(f"TruckSimEnv: continuous action must have shape (3,), got {a.shape}")
            steer, throttle, brake = (float(x) for x in np.clip(a, [-1, 0, 0], [1, 1, 1]))
            return TruckControls(steer, throttle, brake, centring=False)
        if a.shape != (4,):
            raise ValueError(f"TruckSimEnv: key action must have shape (4,) (left, right, throttle, brake), got {a.shape}")
        left, right, throttle, brake = (bool(x) for x in a)
        return TruckControls.from_keys(left, right, throttle, brake)

    def _observe(self, events) -> tuple[np.ndarray, dict]:
        w = self.world
        assert w is not None and self._renderer is not None
        result = self._renderer.render(w, self.np_random)
        frame = result.frame.copy()
        self._frame = frame
        t = w.truck
        steer = self._label_expert.intended_steer(w)
        db = self._label_expert.deadband
        info = {
            "direction": "left" if steer < -db else "right" if steer > db else "straight",
            "intended_steer": steer,
            "boxes": result.boxes,
            "labels": list(result.labels),
            "object_ids": list(result.uids),
            "lateral_offset": w.lateral_offset(),
            "speed": t.v,
            "distance": w.distance_m,
            "events": list(events),
            "route_progress": w.route_progress,
            "road_curvature": w.road.curvature_at(t.s + 10.0),
            "heading_error": t.psi,
            "lead_distance": w.lead_distance(),
            "steer": t.steer,
            "time_of_day": self.time_of_day,
            "weather": self.weather,
            "step": self._steps,
        }
        return frame, info

    def _show(self) -> None:
        import pygame

        if self._window is None:
            pygame.display.init()
            scale = self.config.human_scale
            size = (int(self.config.width * scale), int(self.config.height * scale))
            # caption before and after creating the window: X11 tools then find it by title
            pygame.display.set_caption(self.config.window_title)
            self._window = pygame.display.set_mode(size)
            pygame.display.set_caption(self.config.window_title)
            self._clock = pygame.time.Clock()
            log.info("sim window %dx%d titled %r", size[0], size[1], self.config.window_title)
        pygame.event.pump()
        self._window = pygame.display.get_surface() or self._window  # new after an outside resize
        src = self._renderer.surface
        if src.get_size() != self._window.get_size():
            # scaled into its own surface: the window's pixel format may differ from the renderer's
            self._window.blit(pygame.transform.scale(src, self._window.get_size()), (0, 0))
        else:
            self._window.blit(src, (0, 0))
        pygame.display.flip()


__all__ = ["TruckSimEnv", "CLASSES"]

"""``record_sim``'s parts for the one driving tick (``agent.runtime.loop.run_ticks``).

* ``WindowSource``: the simulator's frames shown in a pygame window at a fixed rate, the
  driving keys a person holds read after each frame was on screen for one tick (arrows / WASD);
  closing the window (or Escape) ends the recording.
* ``AutopilotDecider``: the scripted expert (``sim.expert.Expert``) with optional steering
  perturbations (``sim.perturb.SteeringPerturbation``); a person's held keys take over
  (``Decision.takeover``), or drive alone without an autopilot.
* ``SimSessionRecorder``: each tick's frame (the one the keys were decided on), the keys, and
  the simulator's ground truth (direction, boxes, speed) into a session, provenance "sim".
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from agent.runtime.parts import Decision
from agent.types import KeysHeld, StopReason
from perception.boxes import clip_box_list
from training.sessions.telemetry import EXPERT_STEER_KEY, FrameTelemetry

if TYPE_CHECKING:
    from agent.runtime.loop import KeyResult, Observation, SimSource


class SimWindow:
    """A pygame window that shows frames and reads the driving keys (arrows or WASD)."""

    def __init__(self, width: int, height: int, scale: int, title: str) -> None:
        import pygame

        pygame.display.init()
        self._pg = pygame
        self.scale = scale
        self.screen = pygame.display.set_mode((width * scale, height * scale))
        pygame.display.set_caption(title)
        pygame.font.init()
        self.font = pygame.font.Font(None, 20)

    def poll(self) -> KeysHeld | None:
        """Driving keys held now; None when the window was closed or Escape pressed."""
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE):
                return None
        held = pg.key.get_pressed()
        return KeysHeld(
            left=bool(held[pg.K_LEFT] or held[pg.K_a]), right=bool(held[pg.K_RIGHT] or held[pg.K_d]),
            throttle=bool(held[pg.K_UP] or held[pg.K_w]), brake=bool(held[pg.K_DOWN] or held[pg.K_s]),
        )

    def show(self, image: np.ndarray, frames: int) -> None:
        pg = self._pg
        surface = pg.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
        if self.scale != 1:
            surface = pg.transform.scale(surface, self.screen.get_size())
        self.screen.blit(surface, (0, 0))
        self.screen.blit(self.font.render(f"REC {frames}  (Esc stops)", True, (255, 60, 60)), (8, 8))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()


class WindowSource:
    """``source``'s frames on ``window``: each grab shows the new frame (with the count of frames
    recorded before it), waits for the next tick of ``fps`` (the person looks at it), then reads
    the keys the person holds into ``person``. A closed window ends the drive
    (``ended`` = StopReason.HUD_CLOSED) before that frame is decided or recorded."""

    def __init__(self, source: SimSource, window: SimWindow, fps: float) -> None:
        from agent.io.pacing import RateLimiter

        self.source, self.window = source, window
        self.pacer = RateLimiter(fps)
        self.person: KeysHeld = KeysHeld()
        self._shown = 0

    def grab(self) -> Observation:
        observation = self.source.grab()
        self.window.show(observation.frame.image, self._shown)
        self._shown += 1
        self.pacer.wait()
        person = self.window.poll()
        if person is None:
            return replace(observation, ended=StopReason.HUD_CLOSED)
        self.person = person
        return observation

    def close(self) -> None:
        self.source.close()


class AutopilotDecider:
    """The expert's keys (from the env's world), perturbed when ``perturbation`` says so; a person
    at ``window`` takes over while holding any driving key, or drives alone (``expert`` None).

    env: the TruckSim-v0 env; expert: a sim.expert.Expert or None (a person drives);
    perturbation: a sim.perturb.SteeringPerturbation or None, reset at each new episode;
    window: a WindowSource (its ``person`` keys) or None (headless).
    """

    def __init__(self, env, expert, perturbation=None, window: WindowSource | None = None) -> None:
        if expert is None and window is None:
            raise ValueError("nobody drives: give an expert or a window a person drives in")
        self.env, self.expert, self.perturbation, self.window = env, expert, perturbation, window
        self._episode = 0

    def decide(self, observation: Observation) -> Decision:
        if observation.episode != self._episode:
            self._episode = observation.episode
            if self.perturbation is not None:
                self.perturbation.reset()
        takeover = False
        person = self.window.person if self.window is not None else None
        if person is not None and (self.expert is None or any(person.as_array())):
            keys, takeover = person, self.expert is not None
        else:
            keys = KeysHeld.from_array(self.expert.act(self.env.unwrapped))
        perturbed = False
        if self.perturbation is not None and not takeover:
            action, perturbed = self.perturbation.apply(keys.as_array())
            keys = KeysHeld.from_array(action)
        return Decision(keys=keys, takeover=takeover, perturbed=perturbed)

    def reset(self) -> None:
        pass  # the sim's keys never disengage; the expert keeps its state as it always has


class SimSessionRecorder:
    """Appends each tick to ``writer`` (a training.sessions.SessionWriter): the frame the keys were
    decided on, those keys (and the action they mean), and that frame's ground truth: direction
    (provenance "sim"), boxes clipped to the frame, labels; extra: speed (m/s), episode, sim_step,
    sim_time (s), takeover / perturbed when so, and the ground truth as a game's telemetry would
    give it (``training.sessions.FrameTelemetry``, source "sim": the keys' steering and pedals, the
    truck's wheel angle, its speed), and ``expert_steer``: the expert's intended steer for the frame's
    world, the continuous steering label (``training.sessions.telemetry.EXPERT_STEER_KEY``).
    ``progress``: a callable(writer) after each frame."""

    def __init__(self, writer, progress=None) -> None:
        self.writer, self.progress = writer, progress

    def record(self, observation: Observation, decision: Decision, result: KeyResult, latency_ms: float) -> None:
        from agent.recording.recorder import action_from_keys

        info, image, keys = observation.info, observation.frame.image, result.held
        steer, throttle, brake = action_from_keys(keys)
        extra = {"speed": float(info.get("speed", 0.0)), "episode": observation.episode,
                 "sim_step": observation.frame.index, "sim_time": observation.clock_s,
                 **FrameTelemetry(speed_m_s=float(info.get("speed", 0.0)), steer=steer,
                                  wheel=float(info.get("steer", 0.0)), throttle=throttle, brake=brake,
                                  paused=False, source="sim").to_extra()}
        if info.get("intended_steer") is not None:
            extra[EXPERT_STEER_KEY] = float(info["intended_steer"])
        if decision.takeover:
            extra["takeover"] = True
        if decision.perturbed:
            extra["perturbed"] = True
        self.writer.append(
            image, timestamp=self.writer.elapsed(), keys=keys.as_array(), action=action_from_keys(keys),
            direction=info.get("direction"), direction_source="sim" if info.get("direction") else None,
            boxes=clip_box_list(info.get("boxes", ()), image.shape[:2]),
            labels=list(info.get("labels", [])), boxes_source="sim", extra=extra,
            copy=False,  # the simulator returns a fresh frame array every step
        )
        if self.progress is not None:
            self.progress(self.writer)

"""``record_window``'s parts for the one driving tick (``agent.runtime.loop.run_ticks``).

A person drives the game; the tick captures the window (``agent.runtime.loop.CaptureSource``),
decides nothing (``NobodyDecides``), sends no key and reads the driving keys the person holds
(``PersonKeysOutput``), and stores the frame with those keys (``WindowSessionRecorder``).

What a live window does to a recording (each gets its one log line from the capture):

* moved or resized: the capture follows it; a resized frame is stored at the session's size.
* minimised / unmapped / moved off the screen: no frame is stored while it is hidden; recording
  goes on when it is shown again (the manifest's budget counts stored frames and wall time).
* the picture stops changing (a paused game): the frames are stored, each marked
  ``extra["identical_frames"]`` (how many frames in a row it repeats), so training can leave
  them out.
* destroyed: the recording ends (``stopped_by`` "window_closed").

With the game's SCS Telemetry block (``agent.io.telemetry``) each frame also keeps the game's
speed, the driver's continuous steering and pedals, and whether the game was paused
(``training.sessions.FrameTelemetry``); paused frames are marked and left out of training.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.runtime.parts import Decision
from agent.types import KeysHeld
from training.sessions.telemetry import FrameTelemetry

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from agent.runtime.loop import KeyResult, Observation


class NobodyDecides:
    """No driver of ours: the person at the keyboard drives; the tick's keys are none."""

    def decide(self, observation: Observation) -> Decision:
        return Decision(keys=KeysHeld())

    def reset(self) -> None:
        pass


class PersonKeysOutput:
    """Sends no key (the person drives the game) and reads the driving keys the person holds into
    ``KeyResult.person_keys``, each tick, after the decision (``record_window``; ``drive --shadow``,
    where the model decides beside the person without a key reaching the game).

    reader: an object with ``driving_keys() -> KeysHeld`` and ``close()`` (the X11 keymap, or
    GetAsyncKeyState on Windows: ``agent.recording.recorder.open_key_reader``); closed by ``close``.
    """

    def __init__(self, reader) -> None:
        self.reader = reader

    def send(self, keys: KeysHeld, observation: Observation, axes=None) -> KeyResult:
        from agent.runtime.loop import KeyResult

        return KeyResult(held=KeysHeld(), engaged=False, person_keys=self.reader.driving_keys())

    def release(self) -> None:
        pass  # nothing of ours is ever down

    def close(self) -> None:
        self.reader.close()


def frame_telemetry(reading) -> FrameTelemetry:
    """A session's ``FrameTelemetry`` from the game's ``agent.io.telemetry.TelemetryReading``:
    the plugin's counterclockwise steering (+ = left) becomes the project's + = right."""
    return FrameTelemetry(speed_m_s=float(reading.speed_m_s), steer=0.0 - float(reading.user_steer),
                          wheel=0.0 - float(reading.game_steer), throttle=float(reading.user_throttle),
                          brake=float(reading.user_brake), paused=bool(reading.paused), source="scs")


class WindowSessionRecorder:
    """Appends each captured frame to ``writer`` (a training.sessions.SessionWriter) with the keys
    the person held (``KeyResult.person_keys``, read right after the frame was captured); direction
    from the keys (provenance "keys"), no boxes.

    size: (w, h) of the session's frames; a frame of another size (the window was resized) is
        resized with INTER_AREA and marked ``extra["resized_from"]`` = [w, h].
    extra per frame: ``capture_time`` (s since the first frame, the capture's clock), and
        ``identical_frames`` when the picture repeats the previous one(s) (a paused game).
    Frames of a hidden window (``observation.health.hidden``) are not stored.
    progress: a callable(writer) after each stored frame.
    telemetry: an ``agent.io.telemetry.TelemetrySource`` (the game's SCS Telemetry block) or None:
        read once per stored frame, right after it was captured, into ``extra["telemetry"]``
        (``training.sessions.FrameTelemetry``), and ``extra["paused"]`` while the game is paused
        (training leaves those frames out). A block that stops reading (the game quit) is logged
        once and the recording goes on without it.
    """

    def __init__(self, writer, size: tuple[int, int], capture_t0: float, progress=None, telemetry=None) -> None:
        self.writer, self.size, self.capture_t0, self.progress = writer, size, capture_t0, progress
        self.telemetry = telemetry
        self.paused_frames = 0

    def record(self, observation: Observation, decision: Decision, result: KeyResult, latency_ms: float) -> None:
        import cv2

        from agent.recording.recorder import action_from_keys, direction_from_keys

        health = observation.health
        if health is not None and getattr(health, "hidden", False):
            return
        frame, keys = observation.frame, result.person_keys or KeysHeld()
        image = frame.image
        extra: dict = {"capture_time": frame.timestamp - self.capture_t0}
        identical = getattr(health, "identical_frames", 0) if health is not None else 0
        if identical:
            extra["identical_frames"] = int(identical)
        if self.telemetry is not None:
            from agent.io.telemetry import TelemetryError

            try:
                told = frame_telemetry(self.telemetry.read())
            except TelemetryError as exc:
                log.warning("telemetry stopped (%s): recording goes on without it", exc)
                self.telemetry = None
            else:
                extra.update(told.to_extra())
                self.paused_frames += told.paused
        out_w, out_h = self.size
        if image.shape[:2] != (out_h, out_w):
            extra["resized_from"] = [image.shape[1], image.shape[0]]
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
        self.writer.append(image, timestamp=self.writer.elapsed(), keys=keys.as_array(), action=action_from_keys(keys),
                           direction=direction_from_keys(keys), direction_source="keys", extra=extra)
        if self.progress is not None:
            self.progress(self.writer)

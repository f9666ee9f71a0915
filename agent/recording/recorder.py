"""Record sessions: from the built-in simulator (autopilot or a person) or from a real game window.

- ``record_sim``: the simulator steps, its frame and ground truth (direction,
  boxes, speed) are appended with provenance "sim". Headless autopilot runs as
  fast as the machine allows; with a window a person drives with the arrow
  keys or WASD (or the autopilot drives and a held key takes over).
- ``record_window``: a game window or screen region is captured with mss at a
  fixed rate, together with the driving keys the person holds (X11 keymap, or
  GetAsyncKeyState on Windows); the direction label comes from the keys
  (left -> "left", right -> "right", else "straight"; provenance "keys").

Both show live progress (frames, fps, dropped frames, disk used) and stop on
the frame/time budget, Ctrl+C / SIGTERM, the window closing, or a full disk
(``RecordResult.stopped_by``); everything appended before the stop reads back.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from perception.types import DEFAULT_DETECTION_CLASSES, DIRECTIONS
from training.sessions import SessionDiskFullError, SessionError, SessionWriter
from agent.types import KeysHeld, StopReason

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class RecordResult:
    """How a recording went.

    frames: frames appended (and readable); seconds: wall time recording; fps: frames / seconds;
    dropped: capture ticks missed (window recording) ; disk_bytes: bytes written;
    stopped_by: "frames" | "time" | "user" | "window_closed" | "disk_full" | "error"; message: for people.
    """

    path: str
    frames: int
    seconds: float
    fps: float
    dropped: int
    disk_bytes: int
    stopped_by: str
    message: str


def direction_from_keys(keys: KeysHeld) -> str:
    """The direction label implied by held keys: left only -> "left", right only -> "right", else "straight"."""
    if keys.left and not keys.right:
        return "left"
    if keys.right and not keys.left:
        return "right"
    return "straight"


def action_from_keys(keys: KeysHeld) -> tuple[float, float, float]:
    """(steer, throttle, brake) meant by binary keys: steer -1 left / +1 right."""
    return (float(keys.right) - float(keys.left), float(keys.throttle), float(keys.brake))


class _Stop(Exception):
    """Raised in the main thread by SIGTERM so the recording closes cleanly."""


class _Progress:
    """Live status: a tqdm bar with frames, fps, dropped frames and disk use in its postfix."""

    def __init__(self, total: int | None, enabled: bool, every_s: float = 0.5) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", desc="recording", dynamic_ncols=True, file=sys.stderr)
        self._every_s = every_s
        self._last = 0.0
        self._shown = 0
        self._t0 = time.monotonic()

    def update(self, frames: int, dropped: int, disk_bytes: int, force: bool = False) -> None:
        now = time.monotonic()
        if self._bar is None or (not force and now - self._last < self._every_s):
            return
        self._last = now
        self._bar.update(frames - self._shown)
        self._shown = frames
        fps = frames / max(now - self._t0, 1e-9)
        self._bar.set_postfix(fps=f"{fps:.0f}", dropped=dropped, disk=f"{disk_bytes / 1e6:.1f}MB", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_budget(frames: int | None, seconds: float | None) -> None:
    """ValueError naming a bad frame / time budget (the loop itself stops on them)."""
    if frames is not None and frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"--minutes/--seconds must be > 0, got {seconds}")


def _install_sigterm():
    """Make SIGTERM stop the recording like Ctrl+C (main thread only). Returns the previous handler."""
    def handler(signum, frame):
        raise _Stop()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


@dataclass
class _Outcome:
    """Why a recording loop ended (RecordResult.stopped_by) and a message for people."""

    stopped_by: str = "user"
    message: str = ""


@contextmanager
def _stoppable_recording() -> Iterator[_Outcome]:
    """Run a recording loop inside: Ctrl+C and SIGTERM end it as "user", a full disk as
    "disk_full", another session error as "error"; the loop sets ``stopped_by`` itself when
    it ends for its own reason (budget reached, window closed). The SIGTERM handler is
    restored on the way out."""
    outcome = _Outcome()
    previous = _install_sigterm()
    try:
        yield outcome
    except (KeyboardInterrupt, _Stop):
        outcome.stopped_by = "user"
    except SessionDiskFullError as exc:
        outcome.stopped_by, outcome.message = "disk_full", str(exc)
    except SessionError as exc:
        outcome.stopped_by, outcome.message = "error", str(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _finish(writer: SessionWriter, progress: _Progress, t0: float, stopped_by: str, dropped: int,
            message: str = "") -> RecordResult:
    try:
        writer.close()
    except SessionDiskFullError as exc:
        stopped_by, message = "disk_full", str(exc)
    except SessionError as exc:
        stopped_by, message = "error", str(exc)
    progress.update(writer.frames_written, dropped, writer.bytes_written, force=True)
    progress.close()
    seconds = time.monotonic() - t0
    frames = writer.frames_written
    summary = f"recorded {frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.0f} fps) to {writer.path}"
    message = f"{message}\n{summary}" if message else summary
    return RecordResult(str(writer.path), frames, seconds, frames / max(seconds, 1e-9), dropped,
                        writer.bytes_written, stopped_by, message)


# ----------------------------------------------------------------------------- simulator


def record_sim(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    time_of_day: str | None = None,
    weather: str | None = None,
    width: int = 320,
    height: int = 240,
    autopilot: bool = True,
    headless: bool = True,
    frames: int | None = None,
    seconds: float | None = None,
    fps: float = 15.0,
    scale: int = 2,
    image_format: str = "png",
    progress: bool = True,
    perturb: float = 0.0,
    min_box_height_px: float = 4.0,
    traffic: float = 1.0,
    stopped_per_km: float = 0.0,
    pass_stopped: bool = True,
) -> RecordResult:
    """Record the simulator into a new session at ``out``.

    traffic: traffic density (sim's ``traffic_density``); stopped_per_km: broken-down vehicles standing
    in the truck's lane per km (the autopilot waits behind them and pulls out round them: frames of
    a vehicle standing close ahead, which the autopilot's headway otherwise never shows).
    pass_stopped (autopilot only): False: the autopilot never passes a broken-down vehicle, it brakes and
    stands behind it (``sim.expert.Expert(pass_stopped=False)``): frames of the approach to a vehicle
    standing straight ahead, down to ~7 m, what an agent that brakes for it sees. The labels stay the
    passing expert's: the way round it where the expert has room to pull out, its lane nearer (the
    simulator's truck cannot reverse).

    min_box_height_px: boxes shorter than this many frame pixels are not labelled (the sim's
    default, 4, is meant for 320x240; 8 at 640x480 labels the same objects at twice the pixels).

    perturb (autopilot only): steering disturbances started per simulated second
    (sim.perturb.SteeringPerturbation), so the session holds frames of the truck
    off the lane centre labelled with the expert's way back (extra["perturbed"]).

    headless (autopilot only): as fast as possible, no window; the manifest's fps is 0.
    Otherwise a pygame window (frame x ``scale``) shows the road at ``fps``; a person drives with
    arrows/WASD, or the autopilot drives and any held driving key takes over (extra["takeover"]).
    Labels: direction, boxes and classes from the simulator's ground truth (provenance "sim").
    Episodes that end are reset with the next seed and recording goes on (extra["episode"]).

    The recording runs on the one driving tick (``agent.runtime.loop.run_ticks``): the simulator's
    source and keys (``open_sim``, restarting episodes; in a ``WindowSource`` with a window), the
    ``AutopilotDecider`` and the ``SimSessionRecorder`` (``agent.recording.sim_parts``).
    """
    from agent.recording.sim_parts import AutopilotDecider, SimSessionRecorder, SimWindow, WindowSource
    from agent.runtime.loop import LoopParts, open_sim, run_ticks

    if headless and not autopilot:
        raise ValueError("--headless needs --autopilot: nobody can drive without a window")
    if perturb and not autopilot:
        raise ValueError("--perturb needs --autopilot: it disturbs the autopilot's steering")
    if not min_box_height_px > 0:
        raise ValueError(f"--min-box-height must be > 0 frame pixels, got {min_box_height_px}")
    _check_budget(frames, seconds)
    sim_source, keys_out = open_sim(seed=seed, size=(width, height), time_of_day=time_of_day, weather=weather,
                                    traffic=traffic, route_m=None, restart=True, min_box_height_px=min_box_height_px,
                                    stopped_per_km=stopped_per_km)
    expert = perturbation = None
    if autopilot:
        from sim.expert import Expert

        expert = Expert(pass_stopped=pass_stopped)
    view = None
    try:
        first = sim_source.first()
        obs, info, dt = first.frame.image, first.info, sim_source.dt
        if perturb:
            from sim.perturb import SteeringPerturbation

            perturbation = SteeringPerturbation(perturb, dt, seed=seed)
        source = {
            "kind": "sim", "seed": seed, "time_of_day": info.get("time_of_day", time_of_day),
            "weather": info.get("weather", weather), "driver": "autopilot" if autopilot else "human",
            "headless": headless, "dt": dt, "perturb_per_s": perturb, "min_box_height_px": min_box_height_px,
            "traffic": traffic, "stopped_per_km": stopped_per_km, "pass_stopped": pass_stopped,
        }
        writer = SessionWriter.create(out, source=source, width=obs.shape[1], height=obs.shape[0],
                                      fps=0.0 if headless else fps, classes=DEFAULT_DETECTION_CLASSES,
                                      directions=DIRECTIONS, image_format=image_format)
        frames_source = sim_source
        if not headless:
            view = SimWindow(obs.shape[1], obs.shape[0], scale, f"TruckPilot recording: {Path(out).name}")
            frames_source = WindowSource(sim_source, view, fps)
        bar = _Progress(frames, progress)
        parts = LoopParts(
            frames_source, AutopilotDecider(sim_source.env, expert, perturbation,
                                            frames_source if view is not None else None), keys_out,
            recorder=SimSessionRecorder(writer, lambda w: bar.update(w.frames_written, 0, w.bytes_written)))
        t0 = time.monotonic()
        with _stoppable_recording() as outcome:
            stats = run_ticks(parts, max_steps=frames, max_seconds=seconds)
            outcome.stopped_by = _SIM_STOPS.get(stats.stopped_by, "error")
            if outcome.stopped_by == "error":
                outcome.message = f"the simulator recording stopped: {stats.stopped_by.value}"
        return _finish(writer, bar, t0, outcome.stopped_by, 0, outcome.message)
    finally:
        if view is not None:
            view.close()
        keys_out.close()
        sim_source.close()


#: why record_sim's loop stopped (a StopReason) -> RecordResult.stopped_by
_SIM_STOPS = {StopReason.STEPS: "frames", StopReason.SECONDS: "time", StopReason.USER: "user",
              StopReason.SIGNAL: "user", StopReason.HUD_CLOSED: "window_closed"}


# ----------------------------------------------------------------------------- real game


#: Windows virtual-key codes of the driving keys: (arrows, WASD) per driving key.
WINDOWS_VK = {"left": (0x25, 0x41), "right": (0x27, 0x44), "throttle": (0x26, 0x57), "brake": (0x28, 0x53)}


class WindowsKeyReader:
    """Driving keys held on Windows, via user32.GetAsyncKeyState (arrows or WASD).

    ``get_async_key_state`` is injectable so tests on Linux can check the mapping with a fake.
    """

    def __init__(self, get_async_key_state=None) -> None:
        if get_async_key_state is None:
            import ctypes

            get_async_key_state = ctypes.WinDLL("user32").GetAsyncKeyState  # type: ignore[attr-defined]
        self._state = get_async_key_state

    def driving_keys(self) -> KeysHeld:
        down = {key: any(self._state(vk) & 0x8000 for vk in codes) for key, codes in WINDOWS_VK.items()}
        return KeysHeld(**down)

    def close(self) -> None:
        pass


def open_key_reader(display_name: str | None = None):
    """The platform's held-key reader: an object with ``driving_keys() -> KeysHeld`` and ``close()``."""
    if sys.platform == "win32":
        return WindowsKeyReader()
    from agent.io.keys.x11 import X11KeymapReader

    return X11KeymapReader(display_name)


def record_window(
    out: str | os.PathLike,
    *,
    window_title: str | None = None,
    region: tuple[int, int, int, int] | None = None,
    fps: float = 10.0,
    frames: int | None = None,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
    image_format: str = "jpg",
    progress: bool = True,
    display_name: str | None = None,
    capture=None,
    key_reader=None,
    telemetry: str | os.PathLike | None = "auto",
) -> RecordResult:
    """Record a real game: capture ``window_title`` (or screen ``region`` x, y, w, h) at ``fps``
    with the driving keys the person holds. ``size`` (w, h) resizes frames before saving.

    telemetry: the game's SCS Telemetry block (``agent.io.telemetry``) for per-frame speed,
    continuous steering and pedals, and pause (``extra["telemetry"]``, ``extra["paused"]``):
    "auto" (default) reads it where the plugin puts it when it is there (one log line either way),
    a path reads that block (a missing or unreadable one is an error), None records without.

    Direction label from the keys (provenance "keys"); no boxes (label them later, or draft them
    with a model in ``truckpilot label --draft``). ``capture`` / ``key_reader`` may be injected.

    The recording runs on the one driving tick (``agent.runtime.loop.run_ticks``) with the parts of
    ``agent.recording.window_parts``: the capture (``CaptureSource``), no decider, the person's keys
    read by the key output (which sends none), and the session recorder. While the window is hidden
    (minimised, unmapped, off the screen) nothing is stored and the recording waits for it; a
    destroyed window ends it.
    """
    from agent.io.capture import open_capture
    from agent.io.telemetry import open_game_telemetry
    from agent.recording.window_parts import NobodyDecides, PersonKeysOutput, WindowSessionRecorder
    from agent.runtime.loop import CaptureSource, LoopParts, run_ticks

    if window_title is None and region is None and capture is None:
        raise ValueError("give a window title (--window) or a screen region (--region x,y,w,h)")
    _check_budget(frames, seconds)
    told = open_game_telemetry(telemetry)
    capture = capture or open_capture(window_title=window_title, region=region, fps=fps, display_name=display_name)
    reader = key_reader or open_key_reader(display_name)
    try:
        first = capture.grab()
        h, w = first.image.shape[:2]
        out_w, out_h = size or (w, h)
        source = {"kind": "window" if window_title else "region", "title": window_title,
                  "region": list(region) if region else None, "captured_size": [w, h],
                  "platform": sys.platform, "telemetry": told.path if told is not None else None}
        writer = SessionWriter.create(out, source=source, width=out_w, height=out_h, fps=fps,
                                      classes=DEFAULT_DETECTION_CLASSES, directions=DIRECTIONS, image_format=image_format)
        bar = _Progress(frames, progress)

        def dropped() -> int:
            health = capture.health() if hasattr(capture, "health") else None
            return health.dropped if health is not None else 0

        recorder = WindowSessionRecorder(writer, (out_w, out_h), first.timestamp,
                                         lambda wr: bar.update(wr.frames_written, dropped(), wr.bytes_written),
                                         telemetry=told)
        frames_source = CaptureSource(_FirstFrameAgain(capture, first))
        parts = LoopParts(frames_source, NobodyDecides(), PersonKeysOutput(reader), recorder=recorder,
                          stop_when=(lambda: "frames" if writer.frames_appended >= frames else None)
                          if frames is not None else None)
        t0 = time.monotonic()
        with _stoppable_recording() as outcome:
            stats = run_ticks(parts, max_seconds=seconds)
            outcome.stopped_by = _WINDOW_STOPS.get(stats.stopped_by, "error")
            if stats.stopped_by is StopReason.CAPTURE_LOST:
                outcome.message = "the captured window went away"
            elif outcome.stopped_by == "error":
                outcome.message = f"the window recording stopped: {stats.stopped_by.value}"
        if recorder.paused_frames:
            log.info("%d frames were recorded while the game was paused: marked, and left out of training",
                     recorder.paused_frames)
        return _finish(writer, bar, t0, outcome.stopped_by, dropped(), outcome.message)
    finally:
        capture.close()
        reader.close()
        if told is not None:
            told.close()


#: why record_window's loop stopped (a StopReason) -> RecordResult.stopped_by
_WINDOW_STOPS = {StopReason.REQUESTED: "frames", StopReason.SECONDS: "time", StopReason.USER: "user",
                 StopReason.SIGNAL: "user", StopReason.CAPTURE_LOST: "window_closed"}


class _FirstFrameAgain:
    """``capture`` whose first grab returns ``first`` (already grabbed to size the session), so the
    recording stores it; then the capture's own grabs."""

    def __init__(self, capture, first) -> None:
        self._capture, self._first = capture, first

    def grab(self):
        first, self._first = self._first, None
        return first if first is not None else self._capture.grab()

    def health(self):
        return self._capture.health()

    def close(self) -> None:
        self._capture.close()

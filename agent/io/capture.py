"""Screen capture with mss: a window by title, a region, or a whole monitor.

``open_capture(...)`` returns a ``Capture``; ``grab()`` returns an
``agent.types.Frame`` whose image is HxWx3 uint8 RGB, C-contiguous (mss gives
BGRA; it is converted once here with cv2.cvtColor, measured ~50x faster than
numpy slicing + ascontiguousarray, see ``benchmark_bgra_to_rgb``).

Health: every grab updates a ``CaptureHealth`` (``capture.health()``): frozen
(identical to the previous frames; reported, but not part of ``ok``, see
there), black (mean level below a threshold),
resized or moved window (the capture follows it), dropped ticks of the
fixed-rate pacing.

What a live window does, as typed ``CaptureEvent`` values (in ``CaptureHealth.events`` of the
grab that saw it, and on the one log line each gets: the record's ``capture_event`` attribute):

* MOVED: the window moved; the capture follows it (same size, nothing else changes).
* RESIZED: the window changed size; the capture follows it and frames take the new size (a crop
  that no longer fits raises ``CaptureLost``). The guard disengages on it (keys up, the
  controller starts afresh) and re-engages on fresh frames.
* HIDDEN: the window was unmapped or minimised: ``grab()`` raises ``CaptureHidden`` (a
  ``CaptureLost``) each call while it stays hidden, logging only the first; the Capture stays
  usable and its health has ``hidden`` (so not ``ok``: a guard releases the keys).
* SHOWN: the first frame after the window is viewable again (with the seconds it was hidden).
* LOST: the window was destroyed: ``grab()`` raises ``CaptureLost`` (the drive ends).

A game that pauses keeps showing the same picture: that is ``frozen`` (identical frames), which
the guard treats as a stale capture while it holds keys.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from agent.io.pacing import RateLimiter
from agent.io.timing import percentiles
from agent.types import Frame
from agent.io.window import WindowGeometry, WindowGone, WindowHidden, window_locator

log = logging.getLogger(__name__)


class CaptureLost(RuntimeError):
    """The captured window vanished (destroyed: this class; unmapped, minimised: ``CaptureHidden``)."""


class CaptureHidden(CaptureLost):
    """The captured window is unmapped or minimised; grab again to see whether it is back."""


class CaptureEvent(enum.Enum):
    """What happened to a captured window at a grab (see the module docstring)."""

    MOVED = "moved"
    RESIZED = "resized"
    HIDDEN = "hidden"
    SHOWN = "shown"
    LOST = "lost"


#: ``LogRecord`` attribute carrying the CaptureEvent of a capture log line (``extra=``), for
#: code and tests that look for the event without reading the words.
LOG_EVENT_ATTR = "capture_event"


@dataclass(frozen=True)
class CaptureConfig:
    """Health thresholds of a Capture."""

    frozen_after: int = 5
    """frames identical to their predecessor before the capture counts as frozen"""
    black_level: float = 8.0
    """mean pixel level (0-255) below which a frame counts as black"""
    compare_stride: int = 4
    """pixel stride of the frozen / black checks (cost vs. sensitivity)"""


@dataclass(frozen=True)
class CaptureHealth:
    """State of the capture after the last grab.

    identical_frames: consecutive frames equal to their predecessor.
    frozen: identical_frames >= CaptureConfig.frozen_after.
    black: the last frame's mean level is below CaptureConfig.black_level.
    mean_level: mean pixel level (0-255) of the last frame.
    resized / moved: the window changed size / position at the last grab.
    lost: the window vanished (grab raised CaptureLost).
    hidden: the window is unmapped or minimised (grab raised CaptureHidden; ``lost`` too).
    dropped: ticks skipped by the fixed-rate pacing so far.
    geometry: the captured screen region.
    grab_ms: wall milliseconds of the last grab (mss + colour conversion).
    events: what the last grab saw happen to the window (CaptureEvent values, in order).
    """

    frames: int = 0
    identical_frames: int = 0
    frozen: bool = False
    black: bool = False
    mean_level: float = 0.0
    resized: bool = False
    moved: bool = False
    lost: bool = False
    hidden: bool = False
    dropped: int = 0
    geometry: WindowGeometry | None = None
    grab_ms: float = 0.0
    events: tuple[CaptureEvent, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the last frame is a usable image (a frame exists, not black, not lost).

        ``frozen`` is deliberately not part of it: a truck standing still in a
        static scene gives identical frames too, and refusing to engage there
        would deadlock. The safety guard treats a capture that stays frozen
        *while the agent holds keys* as stale (pressing keys must change the
        picture)."""
        return self.frames > 0 and not (self.black or self.lost)

    def problems(self) -> list[str]:
        out = []
        if self.hidden:
            out.append("window hidden (unmapped or minimised)")
        elif self.lost:
            out.append("window lost")
        if self.frozen:
            out.append(f"frozen ({self.identical_frames} identical frames)")
        if self.black:
            out.append(f"black (mean level {self.mean_level:.1f})")
        return out


def bgra_to_rgb(bgra: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 BGRA -> HxWx3 uint8 RGB, C-contiguous (a new array)."""
    import cv2

    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)


def _open_mss(display_name: str | None):
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 : older
    return factory(display=display_name) if display_name else factory()


class Capture:
    """Grabs frames of one screen region, following a window if given one.

    Use ``open_capture``. Not thread-safe; one Capture per thread.
    """

    def __init__(self, *, region: WindowGeometry, window_id: int | None = None, locator=None,
                 crop: tuple[int, int, int, int] | None = None, fps: float | None = None,
                 display_name: str | None = None, config: CaptureConfig | None = None) -> None:
        self.config = config or CaptureConfig()
        self.window_id = window_id
        self._locator = locator
        self._crop = crop
        self._window_geometry = region if window_id is not None else None
        self.region = self._region_for(region)
        self._mss = _open_mss(display_name)
        self._pacer = RateLimiter(fps) if fps else None
        self._index = 0
        self._previous_probe: np.ndarray | None = None
        self._health = CaptureHealth(geometry=self.region)
        self._warned_offscreen = False
        self._hidden_since: float | None = None
        self._closed = False

    def _region_for(self, window: WindowGeometry) -> WindowGeometry:
        if self._crop is None:
            return window
        x, y, w, h = self._crop
        if self.window_id is not None:
            if x + w > window.width or y + h > window.height or x < 0 or y < 0:
                raise ValueError(f"region {self._crop} does not fit in the window ({window.width}x{window.height})")
            return WindowGeometry(window.x + x, window.y + y, w, h)
        return window

    def _event(self, event: CaptureEvent, message: str, *args, level: int = logging.WARNING) -> None:
        """The one log line of ``event`` (its record carries the enum as ``capture_event``)."""
        log.log(level, message, *args, extra={LOG_EVENT_ATTR: event})

    def _hide(self, how: str, detail: str) -> CaptureHidden:
        """Record that the window is hidden (log the first time) and return the CaptureHidden to raise."""
        if self._hidden_since is None:
            self._hidden_since = time.monotonic()
            self._event(CaptureEvent.HIDDEN, "captured window %#x hidden (%s): pausing until it is shown again",
                        self.window_id, how)
        self._health = replace(self._health, lost=True, hidden=True, events=(CaptureEvent.HIDDEN,))
        return CaptureHidden(detail)

    def _follow_window(self) -> tuple[CaptureEvent, ...]:
        """Re-read the window geometry and follow it; returns the events seen (MOVED, RESIZED).
        Raises CaptureHidden while unmapped / minimised, CaptureLost when destroyed."""
        events: list[CaptureEvent] = []
        try:
            geometry = self._locator.geometry(self.window_id)
        except WindowHidden as exc:
            raise self._hide("unmapped or minimised", str(exc)) from exc
        except WindowGone as exc:
            self._event(CaptureEvent.LOST, "captured window %#x is gone: %s", self.window_id, exc)
            self._health = replace(self._health, lost=True, hidden=False, events=(CaptureEvent.LOST,))
            raise CaptureLost(str(exc)) from exc
        old = self._window_geometry
        moved = (geometry.x, geometry.y) != (old.x, old.y)
        resized = (geometry.width, geometry.height) != (old.width, old.height)
        if moved:
            self._event(CaptureEvent.MOVED, "captured window moved (%d, %d) -> (%d, %d): following it",
                        old.x, old.y, geometry.x, geometry.y)
            events.append(CaptureEvent.MOVED)
        if resized:
            self._event(CaptureEvent.RESIZED, "captured window resized %dx%d -> %dx%d: following it",
                        old.width, old.height, geometry.width, geometry.height)
            events.append(CaptureEvent.RESIZED)
        if moved or resized:
            self._window_geometry = geometry
            try:
                self.region = self._region_for(geometry)
            except ValueError as exc:
                self._health = replace(self._health, lost=True, events=(CaptureEvent.LOST,))
                raise CaptureLost(f"window resized to {geometry.width}x{geometry.height}: {exc}") from exc
        return tuple(events)

    def grab(self) -> Frame:
        """Wait for the next tick (if paced), grab, convert, update health.

        Raises CaptureHidden while the window is unmapped or minimised (grab again later),
        CaptureLost when it is destroyed or the region is off the screen."""
        if self._closed:
            raise RuntimeError("Capture is closed")
        if self._pacer is not None:
            self._pacer.wait()
        start = time.perf_counter()
        events: tuple[CaptureEvent, ...] = ()
        if self.window_id is not None:
            events = self._follow_window()
        image, timestamp = self._grab_region(self.region)
        if self._hidden_since is not None:
            self._event(CaptureEvent.SHOWN, "captured window %#x shown again after %.1f s", self.window_id,
                        time.monotonic() - self._hidden_since)
            self._hidden_since = None
            self._previous_probe = None  # compare frames afresh
            events += (CaptureEvent.SHOWN,)
        grab_ms = (time.perf_counter() - start) * 1e3
        frame = Frame(image=image, timestamp=timestamp, index=self._index)
        self._index += 1
        self._update_health(image, events, grab_ms)
        return frame

    def _grab_region(self, r: WindowGeometry) -> tuple[np.ndarray, float]:
        """RGB image of region ``r``; parts off the screen are black (so the frame
        size stays the window's size); the timestamp is taken right after the grab."""
        screen = self._mss.monitors[0]
        x0, y0 = max(r.x, screen["left"]), max(r.y, screen["top"])
        x1 = min(r.x + r.width, screen["left"] + screen["width"])
        y1 = min(r.y + r.height, screen["top"] + screen["height"])
        if x1 <= x0 or y1 <= y0:
            detail = f"capture region {r} is entirely off the screen ({screen})"
            if self.window_id is not None:  # a window moved off the screen may come back
                raise self._hide("moved off the screen", detail)
            self._health = replace(self._health, lost=True)
            raise CaptureLost(detail)
        shot = self._mss.grab({"left": x0, "top": y0, "width": x1 - x0, "height": y1 - y0})
        timestamp = time.monotonic()
        bgra = np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)
        visible = bgra_to_rgb(bgra)
        if (x0, y0, x1, y1) == (r.x, r.y, r.x + r.width, r.y + r.height):
            return visible, timestamp
        if not self._warned_offscreen:
            log.warning("capture region %s is partly off the screen: the hidden part is black", r)
            self._warned_offscreen = True
        image = np.zeros((r.height, r.width, 3), np.uint8)
        image[y0 - r.y:y1 - r.y, x0 - r.x:x1 - r.x] = visible
        return image, timestamp

    def _update_health(self, image: np.ndarray, events: tuple[CaptureEvent, ...], grab_ms: float) -> None:
        s = self.config.compare_stride
        probe = image[::s, ::s]
        same = (self._previous_probe is not None and probe.shape == self._previous_probe.shape
                and np.array_equal(probe, self._previous_probe))
        identical = self._health.identical_frames + 1 if same else 0
        self._previous_probe = probe.copy()
        mean_level = float(probe.mean())
        self._health = CaptureHealth(
            frames=self._health.frames + 1,
            identical_frames=identical,
            frozen=identical >= self.config.frozen_after,
            black=mean_level < self.config.black_level,
            mean_level=mean_level,
            resized=CaptureEvent.RESIZED in events,
            moved=CaptureEvent.MOVED in events,
            lost=False,
            hidden=False,
            dropped=self._pacer.dropped if self._pacer else 0,
            geometry=self.region,
            grab_ms=grab_ms,
            events=events,
        )

    def health(self) -> CaptureHealth:
        return self._health

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mss.close()
        if self._locator is not None:
            self._locator.close()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _monitor_geometry(display_name: str | None, monitor: int) -> WindowGeometry:
    with _open_mss(display_name) as sct:
        monitors = sct.monitors
        if not 0 <= monitor < len(monitors):
            raise ValueError(f"monitor {monitor} does not exist: mss sees {len(monitors) - 1} "
                             "monitor(s), 1.. (0 = all of them together)")
        m = monitors[monitor]
        return WindowGeometry(m["left"], m["top"], m["width"], m["height"])


def open_capture(window_title: str | None = None, region: tuple[int, int, int, int] | None = None,
                 fps: float | None = None, monitor: int = 1, *, display_name: str | None = None,
                 config: CaptureConfig | None = None) -> Capture:
    """Open a capture.

    window_title: capture the viewable window whose title contains this text,
        following it when it moves; ``region`` is then x, y, w, h inside the
        window's client area (a crop).
    region: without a title, x, y, w, h in screen pixels.
    fps: pace ``grab()`` at this rate (None: grab as fast as called).
    monitor: without title or region, the mss monitor number (1 = first).
    display_name: X display (default $DISPLAY).
    """
    if region is not None:
        x, y, w, h = (int(v) for v in region)
        if w <= 0 or h <= 0:
            raise ValueError(f"region {region} must have positive width and height (x, y, w, h)")
        region = (x, y, w, h)
    if window_title is not None:
        locator = window_locator(display_name)
        try:
            info = locator.find(window_title)
        except Exception:
            locator.close()
            raise
        log.info("capturing window %r id=%#x at %s", info.title, info.window_id, info.geometry)
        return Capture(region=info.geometry, window_id=info.window_id, locator=locator, crop=region,
                       fps=fps, display_name=display_name, config=config)
    if region is not None:
        return Capture(region=WindowGeometry(*region), fps=fps, display_name=display_name, config=config)
    return Capture(region=_monitor_geometry(display_name, monitor), fps=fps,
                   display_name=display_name, config=config)


def benchmark_bgra_to_rgb(width: int = 1280, height: int = 720, repeats: int = 50) -> dict[str, float]:
    """Milliseconds per conversion of a fresh HxWx4 frame: cv2.cvtColor vs numpy slicing."""
    import cv2

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 4), dtype=np.uint8) for _ in range(4)]
    methods = {
        "cv2_cvtColor": lambda a: cv2.cvtColor(a, cv2.COLOR_BGRA2RGB),
        "numpy_slice_contiguous": lambda a: np.ascontiguousarray(a[:, :, 2::-1]),
    }
    out = {}
    for name, fn in methods.items():
        fn(frames[0])
        start = time.perf_counter()
        for i in range(repeats):
            fn(frames[i % len(frames)])
        out[name] = (time.perf_counter() - start) / repeats * 1e3
    return out


def benchmark_capture(window_title: str | None = None, region: tuple[int, int, int, int] | None = None,
                      frames: int = 100, display_name: str | None = None) -> dict[str, float]:
    """Grab ``frames`` frames as fast as possible; wall ms per grab (window follow +
    mss + BGRA->RGB + health), median and 95th percentile (agent.io.timing), and the frame size."""
    with open_capture(window_title, region=region, display_name=display_name) as cap:
        for _ in range(3):
            cap.grab()
        times = []
        for _ in range(frames):
            start = time.perf_counter()
            frame = cap.grab()
            times.append((time.perf_counter() - start) * 1e3)
    p50, p95 = percentiles(times)
    h, w = frame.image.shape[:2]
    return {"width": w, "height": h, "grab_ms_median": p50, "grab_ms_p95": p95}

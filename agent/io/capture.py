"""Screen capture with mss: a window by title, a region, or a whole monitor.

``open_capture(...)`` returns a ``Capture``; ``grab()`` returns an
``agent.types.Frame`` whose image is HxWx3 uint8 RGB, C-contiguous (mss gives
BGRA; it is converted once here with cv2.cvtColor, measured ~50x faster than
numpy slicing + ascontiguousarray, see ``benchmark_bgra_to_rgb``).

Health: every grab updates a ``CaptureHealth`` (``capture.health()``): frozen
(identical to the previous frames; reported, but not part of ``ok``, see
there), black (mean level below a threshold),
resized or moved window (the capture follows it), dropped ticks of the
fixed-rate pacing. A window that is destroyed or unmapped raises
``CaptureLost`` from ``grab()``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from agent.io.pacing import RateLimiter
from agent.io.timing import percentiles
from agent.types import Frame
from agent.io.window import WindowGeometry, WindowGone, window_locator

log = logging.getLogger(__name__)


class CaptureLost(RuntimeError):
    """The captured window vanished (destroyed, unmapped, minimised)."""


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
    dropped: ticks skipped by the fixed-rate pacing so far.
    geometry: the captured screen region.
    grab_ms: wall milliseconds of the last grab (mss + colour conversion).
    """

    frames: int = 0
    identical_frames: int = 0
    frozen: bool = False
    black: bool = False
    mean_level: float = 0.0
    resized: bool = False
    moved: bool = False
    lost: bool = False
    dropped: int = 0
    geometry: WindowGeometry | None = None
    grab_ms: float = 0.0

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
        if self.lost:
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

    def _follow_window(self) -> tuple[bool, bool]:
        """Re-read the window geometry; returns (moved, resized); CaptureLost if gone."""
        try:
            geometry = self._locator.geometry(self.window_id)
        except WindowGone as exc:
            self._health = replace(self._health, lost=True)
            raise CaptureLost(str(exc)) from exc
        old = self._window_geometry
        moved = (geometry.x, geometry.y) != (old.x, old.y)
        resized = (geometry.width, geometry.height) != (old.width, old.height)
        if moved or resized:
            if resized:
                log.warning("captured window resized %dx%d -> %dx%d", old.width, old.height,
                            geometry.width, geometry.height)
            self._window_geometry = geometry
            try:
                self.region = self._region_for(geometry)
            except ValueError as exc:
                self._health = replace(self._health, lost=True)
                raise CaptureLost(f"window resized to {geometry.width}x{geometry.height}: {exc}") from exc
        return moved, resized

    def grab(self) -> Frame:
        """Wait for the next tick (if paced), grab, convert, update health."""
        if self._closed:
            raise RuntimeError("Capture is closed")
        if self._pacer is not None:
            self._pacer.wait()
        start = time.perf_counter()
        moved = resized = False
        if self.window_id is not None:
            moved, resized = self._follow_window()
        image, timestamp = self._grab_region(self.region)
        grab_ms = (time.perf_counter() - start) * 1e3
        frame = Frame(image=image, timestamp=timestamp, index=self._index)
        self._index += 1
        self._update_health(image, moved, resized, grab_ms)
        return frame

    def _grab_region(self, r: WindowGeometry) -> tuple[np.ndarray, float]:
        """RGB image of region ``r``; parts off the screen are black (so the frame
        size stays the window's size); the timestamp is taken right after the grab."""
        screen = self._mss.monitors[0]
        x0, y0 = max(r.x, screen["left"]), max(r.y, screen["top"])
        x1 = min(r.x + r.width, screen["left"] + screen["width"])
        y1 = min(r.y + r.height, screen["top"] + screen["height"])
        if x1 <= x0 or y1 <= y0:
            self._health = replace(self._health, lost=True)
            raise CaptureLost(f"capture region {r} is entirely off the screen ({screen})")
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

    def _update_health(self, image: np.ndarray, moved: bool, resized: bool, grab_ms: float) -> None:
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
            resized=resized,
            moved=moved,
            lost=False,
            dropped=self._pacer.dropped if self._pacer else 0,
            geometry=self.region,
            grab_ms=grab_ms,
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

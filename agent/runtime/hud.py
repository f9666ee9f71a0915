"""Heads-up display of a drive: what the model sees and does, drawn onto the frame.

``draw_hud(frame, perception, keys, stats)`` is a pure function (no window, no
state): it returns a new HxWx3 uint8 RGB image with the detections (boxes,
labels, scores), the direction probabilities as bars, the keys held, the loop
FPS and the per-stage latency. The demo reuses it to make GIFs.
``HudWindow`` shows such images in an OpenCV window (needs a display).
"""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from agent.types import HudStats, KeysHeld
from perception.types import DIRECTIONS, Perception

log = logging.getLogger(__name__)

#: RGB colour per detection class (others: white)
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "car": (255, 80, 80), "truck": (80, 160, 255), "person": (255, 230, 40), "sign": (80, 255, 120),
}
#: stages shown in the latency panel, in order, when present in the stats
HUD_STAGES: tuple[str, ...] = ("capture", "perceive", "control", "keys", "frame_to_key")


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=(255, 255, 255),
          thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _panel(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, alpha: float = 0.55) -> None:
    """Darken a rectangle in place (a translucent backing for text)."""
    h, w = img.shape[:2]
    x1, x2 = max(0, x1), min(w, x2)
    y1, y2 = max(0, y1), min(h, y2)
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = (img[y1:y2, x1:x2].astype(np.float32) * (1 - alpha)).astype(np.uint8)


def draw_hud(frame: np.ndarray, perception: Perception | None, keys: KeysHeld | None, stats=None,
             *, min_width: int = 640) -> np.ndarray:
    """Draw the HUD onto a copy of ``frame``.

    frame: HxWx3 uint8 RGB; perception: its Perception (boxes xyxy in frame pixels) or None;
    keys: the driving keys held or None; stats: agent.types.HudStats or None.
    min_width: frames narrower than this are first enlarged by an integer factor (nearest
    neighbour) so the text stays legible; boxes are scaled with them.
    Returns a new (k*H)x(k*W)x3 uint8 RGB image, k = max(1, ceil(min_width / W)); ``frame`` is untouched.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"draw_hud: frame must be an HxWx3 uint8 RGB array, got "
                         f"{getattr(frame, 'shape', type(frame).__name__)} {getattr(frame, 'dtype', '')}")
    h0, w0 = frame.shape[:2]
    k = max(1, -(-min_width // w0))
    img = cv2.resize(frame, (w0 * k, h0 * k), interpolation=cv2.INTER_NEAREST) if k > 1 else frame.copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(1.0, w / 1100))
    line = int(26 * scale) + 4

    # detections
    if perception is not None:
        for det in perception.detections:
            x1, y1, x2, y2 = (int(round(v * k)) for v in det.box)
            colour = CLASS_COLOURS.get(det.label, (255, 255, 255))
            cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, 2)
            _text(img, f"{det.label} {det.score:.2f}", (x1 + 2, max(line - 8, y1 - 5)), scale * 0.8, colour)

    # direction bars (top left)
    bar_w, bar_h = int(150 * scale), int(16 * scale) + 2
    x0, y0 = 8, 8
    _panel(img, 0, 0, x0 + bar_w + int(90 * scale), y0 + 3 * (bar_h + 6) + 4)
    probs = perception.direction_probs if perception is not None else {}
    chosen = perception.direction if perception is not None else None
    for i, name in enumerate(DIRECTIONS):
        y = y0 + i * (bar_h + 6)
        p = float(probs.get(name, 0.0))
        colour = (60, 255, 60) if name == chosen and probs else (200, 200, 200)
        cv2.rectangle(img, (x0, y), (x0 + bar_w, y + bar_h), (90, 90, 90), 1)
        cv2.rectangle(img, (x0, y), (x0 + int(round(p * bar_w)), y + bar_h), colour, -1)
        label = f"{name[0].upper()} {p:.2f}" if probs else f"{name[0].upper()} -"
        _text(img, label, (x0 + bar_w + 6, y + bar_h - 3), scale * 0.7, colour)

    # keys held (bottom left): an arrow-key cluster, lit when held
    size = int(26 * scale) + 4
    bx, by = 8 + size, h - 8 - 2 * size
    held = keys or KeysHeld()
    cells = {"throttle": (bx, by - size - 2, "^"), "left": (bx - size - 2, by, "<"),
             "brake": (bx, by, "v"), "right": (bx + size + 2, by, ">")}
    _panel(img, 0, by - size - 8, bx + 2 * size + 10, h)
    for name, (cx, cy, glyph) in cells.items():
        on = bool(getattr(held, name))
        fill = {"throttle": (60, 220, 60), "brake": (240, 60, 60)}.get(name, (255, 200, 40)) if on else (60, 60, 60)
        cv2.rectangle(img, (cx, cy), (cx + size, cy + size), fill, -1)
        cv2.rectangle(img, (cx, cy), (cx + size, cy + size), (230, 230, 230), 1)
        _text(img, glyph, (cx + size // 4, cy + int(size * 0.75)), scale * 0.8)

    # FPS, state and latency (top right)
    if stats is not None:
        rows = [f"{getattr(stats, 'fps', 0.0):5.1f} FPS"]
        status = getattr(stats, "status", "")
        speed = getattr(stats, "speed_mps", None)
        if status or speed is not None:
            rows.append(" ".join(s for s in (status, f"{speed * 3.6:.0f} km/h" if speed is not None else "") if s))
        stage_ms = getattr(stats, "stage_ms", {}) or {}
        for name in HUD_STAGES:
            if name in stage_ms:
                rows.append(f"{name:<13}{stage_ms[name]:6.1f} ms")
        width = int(260 * scale)
        _panel(img, w - width - 8, 0, w, 8 + line * len(rows) + 4)
        for i, row in enumerate(rows):
            colour = (255, 255, 255)
            if i == 1 and status:
                colour = (60, 255, 60) if getattr(stats, "engaged", True) else (255, 90, 60)
            _text(img, row, (w - width, 8 + line * (i + 1) - 6), scale * 0.7, colour)
    return img


class HudWindow:
    """An OpenCV window showing ``draw_hud`` images; q or Esc (or closing it) asks to stop.

    Needs a display (X11: $DISPLAY); OpenCV's Qt backend aborts the whole process
    without one, so this checks first and raises a clear error instead.
    """

    def __init__(self, title: str = "TruckPilot HUD", min_width: int = 640) -> None:
        if os.name != "nt" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise RuntimeError("--hud needs a display: DISPLAY is not set (run under X, XWayland or Xvfb), "
                               "or drive without --hud")
        self.title = title
        self.min_width = min_width
        cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        self._open = True
        self.shown = 0

    def show(self, frame, perception, keys, stats) -> bool:
        """Draw and show one tick; returns False when the person asked to stop."""
        img = draw_hud(frame.image if hasattr(frame, "image") else frame, perception, keys, stats,
                       min_width=self.min_width)
        cv2.imshow(self.title, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        self.shown += 1
        key = cv2.waitKey(1) & 0xFF
        if key in (27, ord("q")):
            return False
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return False
        except cv2.error:
            return False
        return True

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass

"""The HUD: ``draw_hud`` as a pure function (pixels checked), and the OpenCV window on a real X server."""
from __future__ import annotations

import numpy as np
import pytest

from agent.runtime.hud import CLASS_COLOURS, HudStats, HudWindow, draw_hud
from agent.types import KeysHeld
from perception.types import Detection, Perception


def road_frame(w: int = 320, h: int = 240) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[: h // 2] = (120, 170, 230)
    frame[h // 2:] = (70, 70, 70)
    return frame


PERCEPTION = Perception("left", {"left": 0.8, "straight": 0.15, "right": 0.05},
                        (Detection((150.0, 130.0, 210.0, 170.0), "car", 0.87),), {"total": 5.0})


def test_draw_hud_is_pure_and_scales_small_frames():
    frame = road_frame()
    before = frame.copy()
    out = draw_hud(frame, PERCEPTION, KeysHeld(left=True, throttle=True), HudStats(fps=14.8))
    assert np.array_equal(frame, before), "draw_hud changed its input"
    assert out.shape == (480, 640, 3) and out.dtype == np.uint8  # 320 wide -> x2 (min_width 640)
    big = road_frame(1280, 720)
    assert draw_hud(big, PERCEPTION, None, None).shape == (720, 1280, 3)
    assert np.array_equal(draw_hud(frame, PERCEPTION, KeysHeld(left=True), HudStats(fps=3.0)),
                          draw_hud(frame, PERCEPTION, KeysHeld(left=True), HudStats(fps=3.0)))


def test_draw_hud_draws_boxes_bars_keys_and_stats_where_they_belong():
    frame = road_frame()
    k = 2
    out = draw_hud(frame, PERCEPTION, KeysHeld(left=True, throttle=True), HudStats(
        fps=14.8, stage_ms={"capture": 2.0, "perceive": 31.0, "frame_to_key": 36.0}, status="ENGAGED",
        speed_mps=12.0))
    # the car's box outline, in the car colour, at the scaled box edge
    x1, y1, x2, y2 = (int(v * k) for v in PERCEPTION.detections[0].box)
    assert tuple(out[(y1 + y2) // 2, x1]) == CLASS_COLOURS["car"]
    assert tuple(out[y2 - 1, (x1 + x2) // 2]) == CLASS_COLOURS["car"]
    # direction bars: "left" (0.8, the argmax, green) filled past its middle; "right" (0.05) is not
    scale = max(0.4, min(1.0, out.shape[1] / 1100))
    bar_w, bar_h = int(150 * scale), int(16 * scale) + 2
    left_mid = out[8 + bar_h // 2, 8 + int(0.5 * bar_w)]
    right_mid = out[8 + 2 * (bar_h + 6) + bar_h // 2, 8 + int(0.5 * bar_w)]
    assert tuple(left_mid) == (60, 255, 60)
    assert tuple(right_mid) != (200, 200, 200) and tuple(right_mid) != (60, 255, 60)
    # keys: the left and throttle cells lit, right and brake dark
    size = int(26 * scale) + 4
    bx, by = 8 + size, out.shape[0] - 8 - 2 * size
    assert tuple(out[by + 3, bx - size - 2 + 3]) == (255, 200, 40)  # left, inside the cell, off the glyph
    assert tuple(out[by - size - 2 + 3, bx + 3]) == (60, 220, 60)  # throttle
    assert tuple(out[by + 3, bx + size + 2 + 3]) == (60, 60, 60)  # right: not held
    assert tuple(out[by + 3, bx + 3]) == (60, 60, 60)  # brake: not held
    # the stats panel changes the top-right corner; without stats it is the plain (scaled) frame
    plain = draw_hud(frame, PERCEPTION, KeysHeld(), None)
    assert not np.array_equal(out[:60, -150:], plain[:60, -150:])
    assert np.array_equal(plain[:60, -150:], np.repeat(np.repeat(frame, 2, 0), 2, 1)[:60, -150:])


def test_draw_hud_without_perception_and_bad_input():
    out = draw_hud(road_frame(), None, None, None)
    assert out.shape == (480, 640, 3)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_hud(np.zeros((10, 10), np.uint8), PERCEPTION, None, None)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_hud(np.zeros((10, 10, 3), np.float32), PERCEPTION, None, None)


def test_hud_window_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="needs a display"):
        HudWindow("no display")


@pytest.mark.x11
def test_hud_window_shows_on_a_real_x_server(xvfb_display):
    from agent.io.window import find_window

    hud = HudWindow("TruckPilot HUD test")
    try:
        for _ in range(3):
            assert hud.show(road_frame(), PERCEPTION, KeysHeld(right=True), HudStats(fps=10.0)) is True
        info = find_window("TruckPilot HUD test")
        assert info.geometry.width >= 640 and info.geometry.height >= 480
        assert hud.shown == 3
    finally:
        hud.close()


@pytest.mark.x11
def test_drive_sim_with_hud_on_a_real_x_server(xvfb_display, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "agent.apps.cli", "drive", "--model", str(ckpt), "--sim", "--hud",
                        "--steps", "8", "--sim-size", "160x120", "--device", "cpu"], cwd=repo, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "8 steps" in r.stdout and "hud" in r.stdout  # the HUD stage is timed like the others

"""perception.preprocess: the resize rule, the normalisation arithmetic, shapes and dtypes.

(Train/serve parity on recorded simulator frames: tests/training/test_training_preprocess_parity.py.)
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from perception.checkpoint import ModelCard
from perception.config import DirectionConfig, TrunkConfig
from perception.direction import DirectionNet
from perception.preprocess import Letterbox, Preprocessor, normalise, preprocess, resize_frame

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("frame_hw, interpolation", [
    ((240, 320), cv2.INTER_AREA),    # a 4:3 frame less than twice the input: one area pass, fills it
    ((180, 240), cv2.INTER_AREA),
    ((120, 160), cv2.INTER_LINEAR),  # smaller than the input: enlarged
])
def test_a_frame_of_the_input_aspect_fills_it_area_when_shrinking_linear_when_enlarging(frame_hw, interpolation):
    frame = _frame(*frame_hw)
    out = resize_frame(frame, (144, 192))
    assert out.shape == (144, 192, 3) and out.dtype == np.uint8
    assert np.array_equal(out, cv2.resize(frame, (192, 144), interpolation=interpolation))
    other = cv2.INTER_LINEAR if interpolation == cv2.INTER_AREA else cv2.INTER_AREA
    assert not np.array_equal(out, cv2.resize(frame, (192, 144), interpolation=other))


@pytest.mark.parametrize("frame_hw, content", [
    ((720, 1280), (0, 18, 192, 108)),   # 16:9 game frames in a 4:3 input: bars above and below
    ((1080, 1920), (0, 18, 192, 108)),
    ((600, 800), (0, 0, 192, 144)),     # 4:3: fills the input
    ((768, 1366), (0, 18, 192, 108)),   # 1366 / 768 is 16:9 to a pixel of rounding
    ((480, 480), (24, 0, 144, 144)),    # square: bars left and right
])
def test_other_aspects_are_letterboxed_not_stretched(frame_hw, content):
    frame = cv2.GaussianBlur(_frame(*frame_hw), (0, 0), 4)  # smooth, like a picture: resize methods agree
    box = Letterbox.fit(frame_hw, (144, 192))
    assert box.content == content
    out = resize_frame(frame, (144, 192))
    x, y, w, h = content
    assert out.shape == (144, 192, 3)
    # the scale is the same along both sides (no stretching), to a pixel of rounding
    assert abs(w / frame_hw[1] - h / frame_hw[0]) * max(frame_hw) <= 1.0
    bars = np.ones((144, 192), bool)
    bars[y:y + h, x:x + w] = False
    assert not out[bars].any()  # black bars
    # the content is the frame scaled by area averaging (within the rounding of the 2x2 halvings)
    reference = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(out[y:y + h, x:x + w].astype(int) - reference).mean() < 1.0


@pytest.mark.parametrize("frame_hw", [(720, 1280), (1080, 1920), (600, 800), (480, 480)])
def test_a_known_box_maps_to_the_input_and_back_to_window_pixels(frame_hw):
    """A white rectangle drawn at a known place in the frame is found in the letterboxed input where
    boxes_to_input says, and boxes_to_frame maps the found box back to the drawn one."""
    fh, fw = frame_hw
    frame = np.zeros((fh, fw, 3), np.uint8)
    drawn = np.array([[0.40 * fw, 0.30 * fh, 0.70 * fw, 0.80 * fh]]).round()
    x1, y1, x2, y2 = drawn[0].astype(int)
    frame[y1:y2, x1:x2] = 255
    frame[: fh // 10] = 60  # something in the frame's own top rows, so the bars are not just "dark"
    box = Letterbox.fit(frame_hw, (144, 192))
    out = resize_frame(frame, (144, 192))
    ys, xs = np.nonzero(out[..., 0] > 127)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)
    expected = box.boxes_to_input(drawn)
    assert np.abs(found - expected).max() <= 1.0  # input px
    back = box.boxes_to_frame(found)
    assert np.abs(back - drawn).max() <= 1.0 * max(fw / box.content[2], fh / box.content[3])  # one input px
    # torch boxes map the same way
    assert torch.allclose(box.boxes_to_frame(torch.tensor(found, dtype=torch.float64)), torch.from_numpy(back))


def test_shrinking_a_large_frame_costs_a_few_ms():
    """The halvings keep a 1920x1080 frame's resize to a few ms (one INTER_AREA pass at a
    non-integer factor measured 7-15 ms on the project's CPU)."""
    import time

    cv2.setNumThreads(1)
    for frame_hw in [(720, 1280), (1080, 1920)]:
        frame = _frame(*frame_hw)
        times = []
        for _ in range(15):
            start = time.perf_counter()
            resize_frame(frame, (144, 192))
            times.append(time.perf_counter() - start)
        assert np.median(times) * 1e3 < 5.0, (frame_hw, np.median(times) * 1e3)


def test_a_frame_of_the_input_size_is_not_copied():
    frame = _frame(144, 192)
    assert resize_frame(frame, (144, 192)) is frame


def test_normalise_is_x_over_255_minus_mean_over_std_for_uint8_and_unit_floats():
    images = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 1, 3).contiguous()
    out = normalise(images, MEAN, STD)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 1, 3)
    for c in range(3):
        expected = (torch.tensor([0.0, 1.0, 128 / 255]) - MEAN[c]) / STD[c]
        assert torch.allclose(out[0, c, 0], expected, atol=1e-6)
    assert torch.equal(normalise(images.float() / 255.0, MEAN, STD), out)  # the 0..1 float path, bit for bit


def test_normalise_refuses_other_layouts_and_dtypes():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normalise(torch.zeros(3, 4, 4, dtype=torch.uint8), MEAN, STD)
    with pytest.raises(ValueError, match="uint8 or floating"):
        normalise(torch.zeros(1, 3, 4, 4, dtype=torch.int32), MEAN, STD)


def test_preprocess_batches_frames_of_any_sizes():
    frames = [_frame(720, 1280, 1), _frame(240, 320, 2), _frame(144, 192, 3)]
    x = preprocess(frames, (144, 192), MEAN, STD)
    assert x.shape == (3, 3, 144, 192) and x.dtype == torch.float32 and x.device.type == "cpu"
    for i, frame in enumerate(frames):
        single = normalise(torch.from_numpy(resize_frame(frame, (144, 192))).permute(2, 0, 1)[None], MEAN, STD)
        assert torch.equal(x[i:i + 1], single)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8), [[0, 0, 0]]])
def test_bad_frames_are_refused(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        preprocess([bad], (144, 192), MEAN, STD)


def test_preprocessor_follows_the_model_card():
    config = DirectionConfig(input_size=(64, 96), mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0),
                             trunk=TrunkConfig(weights="none"))
    card = ModelCard.for_model(DirectionNet(config, init_trunk_weights=False))
    pre = Preprocessor.for_card(card)
    assert pre.key == ((64, 96), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    frame = _frame(240, 320)
    assert torch.equal(pre([frame]), preprocess([frame], (64, 96), card.mean, card.std))
    assert pre.key != Preprocessor((64, 96), MEAN, STD).key


@pytest.mark.parametrize("mean, std", [(MEAN, STD), ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))])
def test_cpu_preprocess_equals_the_torch_normalisation_bit_for_bit_on_every_level(mean, std):
    """On the CPU preprocess normalises in numpy (torch's intra-op threads made it 80-110 ms on a
    loaded 2-core machine); it must give exactly what normalise gives (what training uses)."""
    levels = np.arange(256, dtype=np.uint8)
    frame = np.stack([levels, levels[::-1], np.roll(levels, 7)], axis=-1)[None].repeat(4, axis=0)  # (4, 256, 3)
    x = preprocess([frame], (4, 256), mean, std)
    expected = normalise(torch.from_numpy(frame[None]).permute(0, 3, 1, 2), mean, std)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 4, 256) and x.is_contiguous()
    assert torch.equal(x, expected)

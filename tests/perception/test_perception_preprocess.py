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
from perception.preprocess import Preprocessor, normalise, preprocess, resize_frame

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("frame_hw, interpolation", [
    ((720, 1280), cv2.INTER_AREA),   # game frame: shrinks
    ((120, 160), cv2.INTER_LINEAR),  # smaller than the input: enlarged
    ((120, 400), cv2.INTER_AREA),    # wider but lower: shrinks along one side -> area
])
def test_resize_uses_area_when_shrinking_and_linear_when_enlarging(frame_hw, interpolation):
    frame = _frame(*frame_hw)
    out = resize_frame(frame, (144, 192))
    assert out.shape == (144, 192, 3) and out.dtype == np.uint8
    assert np.array_equal(out, cv2.resize(frame, (192, 144), interpolation=interpolation))
    other = cv2.INTER_LINEAR if interpolation == cv2.INTER_AREA else cv2.INTER_AREA
    assert not np.array_equal(out, cv2.resize(frame, (192, 144), interpolation=other))


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

"""Augmentation: flips mirror boxes and swap left/right, crops drop boxes that leave, seeds reproduce."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from training.config import AugmentConfig, TrainConfig
from training.data.augment import IDENTITY_JITTER, Augmenter, swap_left_right

LEFT, STRAIGHT, RIGHT = 0, 1, 2


def _image(h=40, w=60):
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0, 5:15, 4:20] = 255  # a red block at x 4..20, y 5..15
    return image


def test_swap_left_right():
    assert swap_left_right(LEFT) == RIGHT
    assert swap_left_right(RIGHT) == LEFT
    assert swap_left_right(STRAIGHT) == STRAIGHT


def test_flip_mirrors_image_boxes_and_direction():
    config = AugmentConfig(crop_min_scale=1.0, color_jitter=0.0, flip_p=1.0)
    augment = Augmenter((40, 60), config)
    boxes = torch.tensor([[4.0, 5.0, 20.0, 15.0]])
    image, out_boxes, labels, direction, _ = augment(_image(), boxes, torch.tensor([2]), LEFT, seed=1)
    assert direction == RIGHT
    assert torch.allclose(out_boxes, torch.tensor([[40.0, 5.0, 56.0, 15.0]]))
    assert labels.tolist() == [2]
    assert image[0, 10, 45] == 255 and image[0, 10, 10] == 0  # the block moved to the mirrored place


def test_no_flip_keeps_everything():
    config = AugmentConfig(flip=False, crop_min_scale=1.0, color_jitter=0.0)
    image, boxes, labels, direction, jitter = Augmenter((40, 60), config)(_image(), torch.tensor([[4.0, 5, 20, 15]]),
                                                                  torch.tensor([1]), LEFT, seed=3)
    assert direction == LEFT
    assert jitter.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert torch.equal(image, _image())
    assert torch.allclose(boxes, torch.tensor([[4.0, 5, 20, 15]]))


def test_crop_keeps_boxes_consistent_and_drops_boxes_that_leave():
    torch.set_num_threads(1)
    config = AugmentConfig(flip=False, crop_min_scale=0.2, color_jitter=0.0)
    augment = Augmenter((40, 60), config)
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0], [40.0, 25.0, 58.0, 38.0], [20.0, 10.0, 40.0, 30.0]])
    kept_counts = set()
    for seed in range(60):
        out_img, out_boxes, out_labels, _, _ = augment(image, boxes, torch.tensor([1, 2, 3]), -1, seed)
        assert out_img.shape == (3, 40, 60) and out_img.dtype == torch.uint8
        assert len(out_boxes) == len(out_labels)
        if len(out_boxes):
            assert (out_boxes[:, 0] >= 0).all() and (out_boxes[:, 2] <= 60).all()
            assert (out_boxes[:, 1] >= 0).all() and (out_boxes[:, 3] <= 40).all()
            assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
        kept_counts.add(len(out_boxes))
    assert min(kept_counts) < 3, "small crops must drop boxes that leave the crop"


def test_same_seed_same_result_and_global_rng_untouched():
    augment = Augmenter((40, 60))
    boxes = torch.tensor([[4.0, 5.0, 20.0, 15.0]])
    before = torch.get_rng_state()
    a = augment(_image(), boxes, torch.tensor([1]), LEFT, seed=11)
    b = augment(_image(), boxes, torch.tensor([1]), LEFT, seed=11)
    c = augment(_image(), boxes, torch.tensor([1]), LEFT, seed=12)
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[3] == b[3] and torch.equal(a[4], b[4])
    assert not torch.equal(a[4], c[4])


def test_color_jitter_batch():
    from training.data.augment import IDENTITY_JITTER, color_jitter_batch

    x = torch.rand(3, 3, 8, 8)
    same = color_jitter_batch(x, torch.tensor([IDENTITY_JITTER] * 3))
    assert torch.allclose(same, x, atol=1e-6)
    factors = torch.tensor([[0.5, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.25]])
    out = color_jitter_batch(x, factors)
    assert torch.allclose(out[0], x[0] * 0.5, atol=1e-6)  # brightness
    assert torch.allclose(out[1][0], out[1][1], atol=1e-6) and torch.allclose(out[1][1], out[1][2], atol=1e-6)  # gray
    gray = torch.full((1, 3, 4, 4), 0.4)
    assert torch.allclose(color_jitter_batch(gray, torch.tensor([[1.0, 1.0, 1.0, 0.3]])), gray, atol=1e-5)  # hue
    assert not torch.allclose(out[2], x[2], atol=1e-2)
    assert out.min() >= 0 and out.max() <= 1


def test_crop_ratio_is_relative_to_the_frame_so_a_4_by_3_frame_is_not_stretched():
    # torchvision's RandomResizedCrop ratio is absolute width/height; AugmentConfig's is relative to the
    # input. A full-area crop at ratio 1.0 must give back the 4:3 frame unchanged (it used to be cut to a
    # square and stretched back to 4:3, widening every road angle the direction model learns from).
    h, w = 48, 64
    image = torch.arange(3 * h * w, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, h, w)
    # scale (0.9999, 1): the crop step runs (at (1, 1) it is skipped) and keeps the whole frame
    config = AugmentConfig(flip=False, crop_min_scale=0.9999, color_jitter=0.0, crop_ratio=(1.0, 1.0))
    assert config.crops
    none = (torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64), 1)
    out, *_ = Augmenter((h, w), config)(image, *none, seed=5)
    assert torch.equal(out, image)
    # relative to the input's own aspect, whatever its shape: a square input is kept whole and resized
    square = image[:, :, :h].contiguous()
    out, *_ = Augmenter((h, w), config)(square, *none, seed=5)
    assert torch.equal(out, F.resize(square, [h, w], antialias=True))
    default = Augmenter((h, w))
    for seed in range(40):
        torch.manual_seed(seed)
        params = default._crop_for(h, w).make_params([image])
        aspect = (params["width"] / params["height"]) / (w / h)
        assert 0.85 * 0.9 <= aspect <= 1.18 * 1.1, f"crop aspect {aspect:.2f} x the frame's, outside 0.85-1.18"


def test_train_config_sets_the_crop_and_jitter_strengths():
    h, w = 48, 64
    image = torch.arange(3 * h * w, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, h, w)
    boxes, labels = torch.tensor([[4.0, 6.0, 30.0, 40.0]]), torch.tensor([2])
    off = TrainConfig(augment=AugmentConfig(flip=False, crop_min_scale=1.0, color_jitter=0.0)).augmentation
    assert not off.crops and Augmenter((h, w), off).flip_p == 0.0
    for seed in range(20):  # no flip, no crop, identity jitter: the sample comes back as it went in
        out, out_boxes, out_labels, direction, jitter = Augmenter((h, w), off)(image, boxes, labels, 2, seed)
        assert torch.equal(out, image) and torch.equal(out_boxes, boxes) and torch.equal(out_labels, labels)
        assert direction == 2 and torch.equal(jitter, torch.tensor(IDENTITY_JITTER))
    # resized to the model input when the crop is off and the input has another size
    out, out_boxes, *_ = Augmenter((h // 2, w // 2), off)(image, boxes, labels, 2, 0)
    assert out.shape == (3, h // 2, w // 2) and torch.allclose(out_boxes, boxes / 2)

    # the default: no crop for direction labels (a crop shifts the road sideways; the label does not follow)
    assert not TrainConfig(task="direction").augmentation.crops
    assert not TrainConfig(task="joint").augmentation.crops
    default = TrainConfig(task="detector").augmentation
    assert default.crops and default.crop_scale == (0.6, 1.0) and default.jitter_strengths == (0.3, 0.3, 0.3, 0.03)
    with pytest.raises(ValueError, match="for_task"):  # "auto" needs the task: the Augmenter refuses to guess
        Augmenter((h, w), AugmentConfig())
    changed = [not torch.equal(Augmenter((h, w), default)(image, boxes, labels, 1, seed)[0], image)
               for seed in range(10)]
    assert sum(changed) >= 8
    jitter = torch.stack([Augmenter((h, w), TrainConfig(augment=AugmentConfig(color_jitter=0.1)).augmentation)(
        image, boxes, labels, 1, seed)[4] for seed in range(50)])
    assert (jitter[:, :3] - 1).abs().max() <= 0.1 and jitter[:, 3].abs().max() <= 0.01
    assert (jitter[:, :3] - 1).abs().max() > 0.05


@pytest.mark.parametrize("field, value", [("crop_min_scale", -0.1), ("crop_min_scale", 1.5),
                                          ("color_jitter", -0.1), ("color_jitter", 1.0)])
def test_bad_augmentation_strengths_are_refused_by_name(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=flag):
        AugmentConfig(**{field: value})


def test_training_crop_keeps_the_input_pixel_scale():
    """out_size smaller than input_size: the window is out/input of the frame, so a box comes out as large as
    it is in the full model input, whatever resolution the frame itself is stored at."""
    config = AugmentConfig(flip=False, crop_min_scale=1.0, color_jitter=0.0, crop_ratio=(1.0, 1.0))
    augment = Augmenter((40, 60), config, input_size=(80, 120))  # a 40x60 crop at the scale of an 80x120 input
    assert augment.crops and augment.window_share == pytest.approx(0.25)
    frame = torch.zeros(3, 40, 60, dtype=torch.uint8)  # the frame as recorded: half the input's size
    frame[:, 10:30, 15:45] = 200
    box = torch.tensor([[15.0, 10.0, 45.0, 30.0]])  # 30x20 px here, 60x40 px in the 80x120 input
    sizes = set()
    for seed in range(20):
        image, boxes, labels, _, _ = augment(frame, box, torch.tensor([1]), -1, seed)
        assert image.shape == (3, 40, 60)
        if len(boxes):
            w, h = float(boxes[0, 2] - boxes[0, 0]), float(boxes[0, 3] - boxes[0, 1])
            assert w <= 60.0 + 1e-3 and h <= 40.0 + 1e-3
            if 0 < boxes[0, 0] and boxes[0, 2] < 60 and 0 < boxes[0, 1] and boxes[0, 3] < 40:
                sizes.add((round(w, 3), round(h, 3)))  # wholly inside the crop: its full size
    assert sizes <= {(60.0, 40.0)}
    with pytest.raises(ValueError, match="larger than the model input"):
        Augmenter((40, 60), config, input_size=(30, 60))


def test_crop_on_boxes_places_the_window_over_a_box():
    """A 640x480-like frame whose only object sits in a band, training crops of a quarter of it: windows
    placed anywhere miss the box most of the time; with crop_on_boxes=1 every window holds it whole, at
    the input's pixel scale, and the placement still varies."""
    frame = torch.zeros(3, 96, 128, dtype=torch.uint8)
    frame[:, 40:46, 100:104] = 255
    box, label = torch.tensor([[100.0, 40.0, 104.0, 46.0]]), torch.tensor([3])  # 4x6 px, near the right edge
    base = dict(flip=False, crop_min_scale=1.0, color_jitter=0.0, crop_ratio=(1.0, 1.0))
    anywhere = Augmenter((48, 64), AugmentConfig(**base), input_size=(96, 128))
    on_boxes = Augmenter((48, 64), AugmentConfig(**base, crop_on_boxes=1.0), input_size=(96, 128))
    whole = 0
    lefts = set()
    for seed in range(40):
        _, boxes, _, _, _ = anywhere(frame, box, label, -1, seed)
        whole += len(boxes) == 1 and float(boxes[0, 2] - boxes[0, 0]) == pytest.approx(4.0, abs=0.6)
        _, boxes, labels, _, _ = on_boxes(frame, box, label, -1, seed)
        assert len(boxes) == 1 and labels.tolist() == [3], seed
        w, h = float(boxes[0, 2] - boxes[0, 0]), float(boxes[0, 3] - boxes[0, 1])
        assert w == pytest.approx(4.0, abs=0.6) and h == pytest.approx(6.0, abs=0.6), (seed, w, h)  # whole, same scale
        lefts.add(round(float(boxes[0, 0]), 1))
    assert whole < 30, whole  # placed anywhere, the window misses or cuts the box in many draws
    assert len(lefts) > 5  # not one fixed window
    # no boxes, or a box larger than any window: the drawn window stands, nothing fails
    assert len(on_boxes(frame, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), -1, 0)[1]) == 0
    huge = torch.tensor([[0.0, 0.0, 128.0, 96.0]])
    assert on_boxes(frame, huge, label, -1, 0)[0].shape == (3, 48, 64)
    assert TrainConfig(task="detector", augment=AugmentConfig(crop_on_boxes=0.5)).augmentation.crop_on_boxes == 0.5
    with pytest.raises(ValueError, match="--crop-on-boxes 1.5"):
        AugmentConfig(crop_on_boxes=1.5)
    with pytest.raises(ValueError, match="--crop-on-boxes is a detector option"):
        TrainConfig(task="direction", augment=AugmentConfig(crop_on_boxes=0.5))


def test_training_flips_swap_left_and_right_on_every_flipped_sample_and_only_those():
    """Through the direction dataset the trainer builds (flip on at its default probability, no jitter):
    whenever a sample comes back mirrored its label is the mirrored direction (left <-> right, straight
    stays), and whenever it comes back unmirrored its label is unchanged. A flip that stops swapping
    labels teaches the network that a mirrored left bend is still a left bend; this test catches it."""
    import numpy as np

    from training.data.datasets import DirectionDataset
    from training.data.samples import sample_from_array

    rng = np.random.default_rng(0)
    directions = ("left", "straight", "right")
    images = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in directions]  # not mirror-symmetric
    samples = [sample_from_array(image, d, name=d) for image, d in zip(images, directions)]
    config = TrainConfig(task="direction", augment=AugmentConfig(color_jitter=0.0)).augmentation
    assert config.flip and 0.0 < config.flip_p < 1.0
    dataset = DirectionDataset(samples, (24, 32), directions, augmenter=Augmenter((24, 32), config, directions))
    mirrored_label = {LEFT: RIGHT, STRAIGHT: STRAIGHT, RIGHT: LEFT}
    seen = {True: set(), False: set()}
    for index, label in enumerate((LEFT, STRAIGHT, RIGHT)):
        original = dataset.image(index)
        for seed in range(30):
            image, got, _ = dataset[(index, seed)]
            flipped = torch.equal(image, F.horizontal_flip(original))
            assert flipped or torch.equal(image, original), "a direction sample is neither the frame nor its mirror"
            want = mirrored_label[label] if flipped else label
            assert int(got) == want, (f"{directions[label]} frame, seed {seed}: {'mirrored' if flipped else 'as is'}, "
                                      f"labelled {directions[int(got)]}, expected {directions[want]}")
            seen[flipped].add(label)
    assert seen[True] == seen[False] == {LEFT, STRAIGHT, RIGHT}, "both flipped and unflipped draws of every class"


def test_training_flips_mirror_detection_boxes():
    """Through the detection dataset: a box at x 4..20 of a 60-px-wide frame comes back at x 40..56
    exactly on the draws whose image is mirrored, and unmoved on the others."""
    from training.data.datasets import DetectionDataset
    from training.data.samples import sample_from_array

    image = _image().permute(1, 2, 0).numpy()
    sample = sample_from_array(image, "left", boxes=[(4.0, 5.0, 20.0, 15.0)], labels=["car"])
    config = AugmentConfig(color_jitter=0.0, crop_min_scale=1.0)
    dataset = DetectionDataset([sample], (40, 60), ("car", "truck", "person", "sign"),
                               augmenter=Augmenter((40, 60), config))
    flips = 0
    for seed in range(20):
        out, target, _ = dataset[(0, seed)]
        flipped = torch.equal(out, F.horizontal_flip(_image()))
        want = [[40.0, 5.0, 56.0, 15.0]] if flipped else [[4.0, 5.0, 20.0, 15.0]]
        assert torch.allclose(target["boxes"], torch.tensor(want)), (seed, flipped, target["boxes"])
        flips += flipped
    assert 0 < flips < 20

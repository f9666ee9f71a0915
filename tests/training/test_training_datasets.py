"""Datasets: sim rollouts and recorded sessions become cached model-resolution samples with scaled boxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.labels import CLASSES
from training.data.datasets import DetectionDataset, DirectionDataset, build_frame_cache
from training.data.samples import sample_from_array, samples_from_session, samples_from_sim


def test_sim_rollout_samples_feed_the_detection_dataset():
    samples = samples_from_sim([5, 6], steps=12, every=4, width=160, height=120)
    assert len(samples) == 6 and {s.group for s in samples} == {"sim-5-day-clear", "sim-6-day-clear"}
    assert all(s.size == (120, 160) and s.direction in ("left", "straight", "right") for s in samples)
    dataset = DetectionDataset(samples, (60, 80), CLASSES)
    image, target, jitter = dataset[0]
    assert image.shape == (3, 60, 80) and image.dtype == torch.uint8
    expected = torch.tensor(samples[0].boxes, dtype=torch.float32).reshape(-1, 4) * 0.5
    assert torch.allclose(target["boxes"], expected)
    assert jitter.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_frame_cache_resizes_once_and_matches_per_item_decoding():
    rng = np.random.default_rng(0)
    samples = [sample_from_array(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "left", name=f"f{i}")
               for i in range(5)]
    cache = build_frame_cache(samples, (24, 32), threads=2)
    assert cache.shape == (5, 3, 24, 32) and cache.dtype == torch.uint8
    uncached = DirectionDataset(samples, (24, 32), ("left", "straight", "right"), cache=False)
    assert torch.equal(uncached[3][0], cache[3])


def test_session_samples_keep_labels_and_group(scene_sessions):
    samples = samples_from_session(scene_sessions[0])
    assert len(samples) == 24 and len({s.group for s in samples}) == 1
    assert samples[0].load_image().shape == (72, 96, 3)
    dataset = DirectionDataset(samples, (32, 32), ("left", "straight", "right"))
    assert int(dataset.class_counts().sum()) == 24
    weights = dataset.sample_weights()
    counts = dataset.class_counts().double()
    # each class gets the same total draw weight
    totals = torch.zeros(3, dtype=torch.float64).index_add_(0, dataset.targets, weights)
    assert torch.allclose(totals[counts > 0], torch.ones_like(totals[counts > 0]))


def test_training_crops_decode_frames_at_their_own_size():
    """A detector run whose samples are cropped decodes frames at no more than their recorded size (the crop
    resizes them), and its items come out at the training crop's size with boxes at the input's scale."""
    from training.config import AugmentConfig
    from training.data.datasets import source_size
    from training.tasks import DetectorTask
    from perception.config import DetectorConfig, TrunkConfig

    assert source_size([], (480, 640)) == (480, 640)
    rng = np.random.default_rng(1)
    samples = [sample_from_array(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "left",
                                 boxes=[(10, 12, 20, 20)], labels=["car"], name=f"f{i}") for i in range(4)]
    assert source_size(samples, (96, 128)) == (48, 64)  # never upscaled in the cache
    assert source_size(samples, (24, 32)) == (24, 32)  # shrunk to the input when the frames are larger
    task = DetectorTask(DetectorConfig(input_size=(96, 128), classes=CLASSES, trunk=TrunkConfig(weights="none")))
    config = AugmentConfig(flip=False, crop_min_scale=1.0, crop_ratio=(1.0, 1.0), train_crop_height=48,
                           train_crop_width=64)
    train = task.build_dataset(samples, augment=True, cache=True, seed=0, augment_config=config)
    assert tuple(train.images.shape[-2:]) == (48, 64)
    image, target, _ = train[0]
    assert image.shape == (3, 48, 64)
    val = task.build_dataset(samples, augment=False, cache=True, seed=0)
    assert val[0][0].shape == (3, 96, 128)
    assert torch.allclose(val[0][1]["boxes"], torch.tensor([[20.0, 24.0, 40.0, 40.0]]))
    whole = []  # draws whose crop holds the whole box: it has its 96x128-input size, 20x16 px
    for seed in range(40):
        _, target, _ = train[(0, seed)]
        boxes = target["boxes"]
        if len(boxes) and (boxes[0, :2] > 0).all() and boxes[0, 2] < 64 and boxes[0, 3] < 48:
            whole.append((boxes[0, 2:] - boxes[0, :2]).tolist())
    assert whole and all(w == pytest.approx([20.0, 16.0], abs=1e-3) for w in whole)


def test_size_balancing_draws_every_class_and_height_band_alike():
    """--balance sampler-size: frames weighted by their rarest (class, height band) box, so far walkers
    (few, small) get the same total draw weight as near ones and as cars; plain class balancing lumps
    them together. Heights as fractions of the 96-px image: < 1/30 small, < 1/15 medium, else large."""
    from training.config import DataConfig, TrainConfig

    image = np.zeros((96, 128, 3), dtype=np.uint8)

    def frame(i, height, label):
        return sample_from_array(image, "straight", boxes=[(10, 10, 14, 10 + height)], labels=[label], name=f"f{i}")

    # 2 far walkers (2 px tall), 8 near walkers (20 px), 30 near cars (20 px)
    samples = ([frame(i, 2, "person") for i in range(2)] + [frame(10 + i, 20, "person") for i in range(8)]
               + [frame(20 + i, 20, "car") for i in range(30)])
    dataset = DetectionDataset(samples, (96, 128), CLASSES)
    groups = torch.cat(dataset.box_groups(by_size=True))
    person = CLASSES.index("person")
    assert groups[:2].tolist() == [3 * person] * 2 and groups[2:10].tolist() == [3 * person + 2] * 8
    assert groups[10:].tolist() == [2] * 30  # car, large
    sized = dataset.sample_weights(by_size=True)
    totals = torch.zeros(12, dtype=torch.float64).index_add_(0, groups, sized)
    assert torch.allclose(totals[totals > 0], torch.ones(3, dtype=torch.float64))
    by_class = dataset.sample_weights()
    assert by_class[0] == by_class[2]  # class balancing alone: a far walker is drawn like a near one
    assert sized[0] == 4 * sized[2]
    with pytest.raises(ValueError, match="detector only"):
        TrainConfig(task="direction", data=DataConfig(balance="sampler-size"))


def test_size_balancing_places_crops_on_the_rare_box():
    """With rarity-weighted crops, a crop placed on a box (--crop-on-boxes 1) holds the frame's rare far
    walker far more often than a uniform pick among its boxes does."""
    from training.config import AugmentConfig
    from training.tasks import DetectorTask
    from perception.config import DetectorConfig, TrunkConfig

    image = np.zeros((96, 128, 3), dtype=np.uint8)
    cars = [(4 + 12 * k, 70, 14 + 12 * k, 80) for k in range(5)]  # five cars along the bottom left
    walker = (118, 4, 121, 7)  # one tiny walker in the top right corner: no window holds it and a car
    busy = sample_from_array(image, "straight", boxes=cars + [walker], labels=["car"] * 5 + ["person"], name="busy")
    plain = [sample_from_array(image, "straight", boxes=[(40, 40, 50, 50)], labels=["car"], name=f"c{i}")
             for i in range(20)]
    task = DetectorTask(DetectorConfig(input_size=(96, 128), classes=CLASSES, trunk=TrunkConfig(weights="none")))
    config = AugmentConfig(flip=False, crop_min_scale=1.0, crop_ratio=(1.0, 1.0), train_crop_height=48,
                           train_crop_width=64, crop_on_boxes=1.0)

    def walker_kept(dataset) -> int:
        person = CLASSES.index("person") + 1
        return sum(int((dataset[(0, seed)][1]["labels"] == person).any()) for seed in range(60))

    uniform = task.build_dataset([busy] + plain, augment=True, cache=True, seed=0, augment_config=config)
    weighted = task.build_dataset([busy] + plain, augment=True, cache=True, seed=0, augment_config=config)
    weighted.weight_crops_by_rarity(by_size=True)
    kept_uniform, kept_weighted = walker_kept(uniform), walker_kept(weighted)
    # uniform: the walker is the pick 1 time in 6 (~10 of 60); weighted: 1 / (1 + 5/25), ~50 of 60
    assert kept_uniform < 20 and kept_weighted > 40, (kept_uniform, kept_weighted)

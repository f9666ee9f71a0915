"""Datasets: sim rollouts and recorded sessions become cached model-resolution samples with scaled boxes."""
from __future__ import annotations

import numpy as np
import torch

from training.datasets import DetectionDataset, DirectionDataset, build_frame_cache
from training.samples import sample_from_array, samples_from_session, samples_from_sim

CLASSES = ("car", "truck", "person", "sign")


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

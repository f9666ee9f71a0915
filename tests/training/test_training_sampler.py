"""EpochSampler: resumes mid-epoch exactly, shards like DistributedSampler, balances classes."""
from __future__ import annotations

import torch

from training.data.sampler import EpochSampler
from training.data.samples import sample_from_array, split_by_group

import numpy as np
import pytest


def test_resume_start_continues_the_same_epoch_order():
    full = EpochSampler(20, seed=3)
    full.set_epoch(2)
    whole = list(full)
    part = EpochSampler(20, seed=3)
    part.set_epoch(2, start=8)
    assert list(part) == whole[8:]
    assert len(part) == 12
    other = EpochSampler(20, seed=3)
    other.set_epoch(3)
    assert [i for i, _ in other] != [i for i, _ in whole]


def test_ranks_get_disjoint_shards_covering_the_dataset():
    shards = []
    for rank in range(2):
        s = EpochSampler(11, seed=0, rank=rank, world_size=2)
        s.set_epoch(0)
        shards.append(list(s))
    assert len(shards[0]) == len(shards[1]) == 6
    seeds = [seed for shard in shards for _, seed in shard]
    assert len(set(seeds)) == 12
    assert {i for shard in shards for i, _ in shard} == set(range(11))


def test_weighted_draws_balance_a_skewed_dataset():
    labels = torch.tensor([1] * 90 + [0] * 5 + [2] * 5)  # mostly "straight"
    counts = torch.bincount(labels).double()
    sampler = EpochSampler(100, weights=(1.0 / counts)[labels], seed=1)
    drawn = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn += [int(labels[i]) for i, _ in sampler]
    share = torch.bincount(torch.tensor(drawn), minlength=3).double() / len(drawn)
    assert torch.all((share - 1 / 3).abs() < 0.06), share


def test_epoch_draws_size_an_epoch_independently_of_the_dataset():
    # fewer draws than frames: a shuffled subset, different each epoch, no repeats
    sampler = EpochSampler(100, seed=4, draws=30)
    sampler.set_epoch(0)
    first = [i for i, _ in sampler]
    assert len(first) == len(sampler) == 30 and len(set(first)) == 30
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != first
    # more draws than frames: whole shuffled passes, each frame as often as the others (+-1)
    sampler = EpochSampler(10, seed=4, draws=25)
    sampler.set_epoch(0)
    counts = torch.bincount(torch.tensor([i for i, _ in sampler]), minlength=10)
    assert counts.sum() == 25 and counts.min() >= 2 and counts.max() <= 3
    # weighted: draws with replacement, still resumable mid-epoch
    weighted = EpochSampler(10, weights=torch.ones(10), seed=4, draws=50)
    weighted.set_epoch(2)
    whole = list(weighted)
    weighted.set_epoch(2, start=20)
    assert len(whole) == 50 and list(weighted) == whole[20:]
    # the default is one draw per frame, the order unchanged by the option
    plain, sized = EpochSampler(40, seed=9), EpochSampler(40, seed=9, draws=40)
    plain.set_epoch(1), sized.set_epoch(1)
    assert list(plain) == list(sized)
    with pytest.raises(ValueError, match="draws"):
        EpochSampler(10, draws=0)


def _samples(groups):
    image = np.zeros((8, 8, 3), np.uint8)
    return [sample_from_array(image, "straight", group=g, name=f"{g}/{i}") for g in groups for i in range(5)]


def test_split_holds_out_whole_groups():
    train, val = split_by_group(_samples(["a", "b", "c", "d", "e"]), 0.4, seed=0)
    train_groups, val_groups = {s.group for s in train}, {s.group for s in val}
    assert not train_groups & val_groups
    assert len(val_groups) == 2 and len(train_groups) == 3
    assert len(train) + len(val) == 25


def test_split_of_one_session_says_what_to_do():
    with pytest.raises(ValueError, match="--val-data"):
        split_by_group(_samples(["only"]), 0.2, seed=0)

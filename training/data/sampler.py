"""A resumable, optionally class-weighted, optionally distributed sampler.

It does the work of ``WeightedRandomSampler`` (draws with replacement in
proportion to per-frame weights: class balancing) or of a shuffled
permutation, sharded across processes the way ``DistributedSampler`` does it
(every rank gets ``ceil(N / world)`` draws from one shared epoch order), and
it can start part-way through an epoch, so ``--resume`` continues at the
exact batch where a run stopped.

Each element is ``(frame index, augmentation seed)``; the epoch order and the
seeds depend only on (seed, epoch), never on process state.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, seed) pairs for one rank.

    num_samples: frames in the dataset.
    weights: optional (N,) draw weights (class balancing); None for a permutation.
    draws: draws per epoch over all ranks (None: num_samples). With weights they are drawn with
        replacement; without, they are the first ``draws`` of shuffled passes over the frames.
    seed: run seed; epoch: set with :meth:`set_epoch` before each epoch.
    start: draws of this rank's share already consumed (resume); reset by set_epoch(…, start=0).
    """

    def __init__(self, num_samples: int, weights: torch.Tensor | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True, draws: int | None = None) -> None:
        if num_samples <= 0:
            raise ValueError("EpochSampler needs at least one sample")
        if draws is not None and draws <= 0:
            raise ValueError(f"EpochSampler draws {draws} must be positive")
        self.num_samples = num_samples
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0
        self.draws = num_samples if draws is None else int(draws)
        self.per_rank = math.ceil(self.draws / world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def epoch_order(self) -> torch.Tensor:
        """The full (per_rank * world_size,) index order shared by all ranks this epoch."""
        gen = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        total = self.per_rank * self.world_size
        if self.weights is not None:
            order = torch.multinomial(self.weights, total, replacement=True, generator=gen)
        else:
            passes = math.ceil(self.draws / self.num_samples)
            order = torch.cat([torch.randperm(self.num_samples, generator=gen) if self.shuffle
                               else torch.arange(self.num_samples) for _ in range(passes)])[: self.draws]
        if len(order) < total:  # pad like DistributedSampler
            order = torch.cat([order, order[: total - len(order)]])
        return order

    def __iter__(self):
        order = self.epoch_order()
        mine = order[self.rank::self.world_size]
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for position in range(self.start, len(mine)):
            yield int(mine[position]), base + position * self.world_size + self.rank

    def __len__(self) -> int:
        return self.per_rank - self.start

"""The learning-rate range test (Leslie Smith; fastai's lr_find).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over
``num_steps`` mini-batches of real training (the first phase's set-up: trunk
frozen when --freeze-epochs > 0); the exponentially smoothed loss is recorded
and the test stops once it exceeds ``diverge`` x its minimum. Suggested rate
(:func:`suggest_lr`): where the smoothed loss falls fastest (steepest negative
slope against log10 lr) up to its minimum, the first few points skipped; a
tenth of the minimum's rate when the minimum comes too early for a slope.
``min_loss_lr`` in the result is the rate of the minimum over *all* points
(the skipped ones included); a tenth of it is the other common rule of thumb.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.reports import plot_lr_find
from training.state import atomic_write_json

log = logging.getLogger(__name__)


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The suggested learning rate of a range test's curve.

    lrs: the N rates tried, one per step, increasing (the optimizer's lr units); losses: the N
    smoothed losses at those rates. Returns one rate, in the units of ``lrs``:

    * N < 3: ``lrs[0]`` (1e-3 when N = 0);
    * otherwise the first ``skip = min(10, N // 10)`` points are left out (the smoothing's
      warm-up) and ``stop`` is the index of the lowest loss among the rest (the first on a tie);
      nothing after ``stop`` counts (the blow-up);
    * ``stop - skip < 2`` (no slope to speak of): ``max(lrs[0], lrs[stop] / 10)``, a tenth of
      that minimum's rate, not necessarily one of ``lrs``;
    * else ``lrs[i]`` for the i in ``skip..stop`` (both ends included) where
      ``np.gradient(losses, log10(lrs))`` over those points is most negative (central
      differences inside, one-sided at the two ends; the first i on a tie).

    The result lies in ``[lrs[0], lrs[stop]]``. ``stop`` is the minimum after the skipped points:
    when the curve's lowest point is among the skipped ones, the suggestion can exceed
    ``lr_range_test``'s ``min_loss_lr`` (the rate of the minimum over all N points).
    """
    if len(lrs) < 3:
        return lrs[0] if lrs else 1e-3
    log_lr = np.log10(np.asarray(lrs))
    loss = np.asarray(losses)
    skip = min(10, len(lrs) // 10)
    stop = skip + int(np.argmin(loss[skip:]))
    if stop - skip < 2:
        return float(max(lrs[0], lrs[stop] / 10))
    slopes = np.gradient(loss[skip: stop + 1], log_lr[skip: stop + 1])
    return float(lrs[skip + int(np.argmin(slopes))])


def lr_range_test(trainer, out_dir: Path, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                  beta: float = 0.98, diverge: float = 4.0) -> dict:
    """Runs the test with ``trainer`` (training.engine.Trainer); writes lr_find.png and lr_find.json.

    Returns {"suggested_lr": suggest_lr(lrs, losses), "min_loss_lr": the rate of the lowest loss over
    all steps (None if none ran), "lrs": the rates tried, "losses": the smoothed, bias-corrected
    losses at them, "steps": how many, "phase": "trunk frozen" | "all trainable"}."""
    config = trainer.config
    trainer._enter_phase(trainer.phases[0])
    optimizer = trainer.optimizer
    ratios = [g["max_lr"] / config.optim.lr for g in optimizer.param_groups]
    for group, ratio in zip(optimizer.param_groups, ratios):
        group["lr"] = start_lr * ratio
        group.pop("initial_lr", None)
    growth = (end_lr / start_lr) ** (1.0 / max(1, num_steps - 1))
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: growth ** step)

    lrs, smoothed = [], []
    avg, best = 0.0, math.inf
    it = trainer.endless_batches()
    for step in tqdm(range(num_steps), desc="lr range test", unit="step", disable=not trainer.runtime.is_main):
        lr = optimizer.param_groups[-1]["lr"] / ratios[-1]
        loss = float(trainer.train_step(*next(it)))
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** (step + 1))
        lrs.append(lr)
        smoothed.append(value)
        best = min(best, value)
        if step > 5 and value > diverge * best:
            break
    suggested = suggest_lr(lrs, smoothed)
    result = {"suggested_lr": suggested, "min_loss_lr": lrs[int(np.argmin(smoothed))] if lrs else None, "lrs": lrs, "losses": smoothed, "steps": len(lrs),
              "phase": "trunk frozen" if trainer.phases[0].frozen else "all trainable"}
    if trainer.runtime.is_main:
        out_dir = Path(out_dir)
        plot_lr_find(lrs, smoothed, suggested, out_dir / "lr_find.png")
        atomic_write_json(out_dir / "lr_find.json", result)
        log.info("lr range test: suggested --lr %.2e (plot: %s)", suggested, out_dir / "lr_find.png")
    return result

"""Step time of joint training vs the two separate trainings, measured side by side.

``python -m training.tools.joint_bench --data S1 --val-data S2 --input-height 96 --input-width 128 --batch-size 32``

Builds the three real trainers (``truckpilot train joint|direction|detector`` with the
same sessions, input size and batch size), takes one batch from each one's loader, and
times ``Trainer.train_step`` (normalise + forward + loss + backward + AdamW step,
everything trainable, constant LR) in interleaved rounds: joint, direction, detector,
then the next round in a rotated order. Interleaving matters on a shared machine: a
change in load hits all three alike. Data loading is left out (the frame cache makes
it small; ``truckpilot train ... --benchmark-steps`` measures it).

Prints JSON: per task the median, mean and min seconds per step; ``joint_vs_separate``
= median joint step / (median direction step + median detector step), the same of the
minima, and the median over rounds of each round's joint / (direction + detector).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time

import torch
from tqdm import tqdm

TASK_ORDER = ("joint", "direction", "detector")


def measure_step_times(data: list[str], val_data: list[str], input_size: tuple[int, int], batch_size: int,
                       rounds: int = 6, warmup: int = 1, trunk_weights: str = "none", seed: int = 0) -> dict:
    """Seconds per training step of each task, interleaved; see the module docstring."""
    from training.cli import build_trainer
    from training.config import DataConfig, ModelConfig, OptimConfig, RunConfig, RuntimeConfig, TrainConfig
    from training.runtime import setup_runtime

    runtime = setup_runtime("cpu", "off", "off")
    trainers, batches = {}, {}
    for task in TASK_ORDER:
        config = TrainConfig(
            task=task, data=DataConfig(sessions=tuple(data), val_sessions=tuple(val_data)),
            model=ModelConfig(trunk_weights=trunk_weights, input_height=input_size[0], input_width=input_size[1]),
            optim=OptimConfig(batch_size=batch_size), run=RunConfig(out="/nonexistent-bench"),
            runtime=RuntimeConfig(num_workers=0, device="cpu", amp="off", channels_last="off", seed=seed))
        trainer = build_trainer(config, runtime)
        trainer.prepare_benchmark()
        trainer.sampler.set_epoch(0)
        batches[task] = next(iter(trainer.loader))
        trainers[task] = trainer
    for _ in range(warmup):
        for task in TASK_ORDER:
            trainers[task].train_step(*batches[task])
    times: dict[str, list[float]] = {task: [] for task in TASK_ORDER}
    for r in tqdm(range(rounds), desc="rounds", unit="round"):
        order = TASK_ORDER[r % 3:] + TASK_ORDER[: r % 3]
        for task in order:
            start = time.perf_counter()
            trainers[task].train_step(*batches[task])
            times[task].append(time.perf_counter() - start)
    result = {"input_size": list(input_size), "batch_size": batch_size, "rounds": rounds,
              "torch_threads": torch.get_num_threads(), "seconds": times}
    for task in TASK_ORDER:
        result[task] = {"median_s_per_step": statistics.median(times[task]), "mean_s_per_step":
                        statistics.fmean(times[task]), "min_s_per_step": min(times[task])}
    separate = result["direction"]["median_s_per_step"] + result["detector"]["median_s_per_step"]
    result["joint_vs_separate"] = result["joint"]["median_s_per_step"] / separate
    result["joint_vs_separate_min"] = result["joint"]["min_s_per_step"] / (
        result["direction"]["min_s_per_step"] + result["detector"]["min_s_per_step"])
    # the same ratio within each round (the three steps ran back to back), then the median: drift cancels
    result["joint_vs_separate_per_round_median"] = statistics.median(
        j / (a + b) for j, a, b in zip(times["joint"], times["direction"], times["detector"]))
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tools.joint_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="training session directories")
    parser.add_argument("--val-data", nargs="+", required=True, help="other sessions (the trainers need a val set)")
    parser.add_argument("--input-height", type=int, default=96, help="model input height in px")
    parser.add_argument("--input-width", type=int, default=128, help="model input width in px")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds (one step of each task per round)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure_step_times(args.data, args.val_data, (args.input_height, args.input_width), args.batch_size,
                                args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))

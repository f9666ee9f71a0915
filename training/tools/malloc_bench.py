"""CPU training step time with glibc's default malloc vs ``--cpu-malloc keep``, side by side.

``python -m training.tools.malloc_bench [--input-height 360 --input-width 480 --batch-size 8 --rounds 3]``

The allocator setting is process-wide, so each measurement is a child process: it builds the
product's SSDNet (perception.config.STRIDE4_ANCHORS with ratio 0.3 added, random init) at the input size,
runs the real training step (bf16 autocast, channels_last, SSDNet.loss, backward, AdamW) on a
fixed random batch, ``--warmup`` untimed steps and then ``--steps`` timed ones, and reports
wall seconds per step, the share of its CPU time spent in the kernel, minor page faults per
step and its peak RSS. Children run in interleaved rounds (keep, system, then system, keep, ...)
so a change in machine load hits both alike.

Prints JSON: per mode the median seconds per step over rounds, kernel share, faults per step and
peak RSS (MiB); ``system_vs_keep`` = median system step / median keep step (above 1: keep is
faster), and the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("keep", "system")


def child(mode: str, input_size: tuple[int, int], batch_size: int, warmup: int, steps: int) -> dict:
    """One measurement in this process (``mode`` applied first); see the module docstring."""
    from training.cpu_malloc import apply_cpu_malloc

    applied = apply_cpu_malloc(mode, "cpu")
    import torch

    from perception.config import STRIDE4_ANCHORS, DetectorConfig, TrunkConfig
    from perception.detector import SSDNet

    torch.manual_seed(0)
    anchors = dataclasses.replace(STRIDE4_ANCHORS, aspect_ratios=(1.0, 2.0, 0.5, 0.3))
    config = DetectorConfig(input_size=input_size, anchors=anchors, trunk=TrunkConfig(weights="none"))
    net = SSDNet(config).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    h, w = input_size
    x = torch.randn(batch_size, 3, h, w).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(batch_size):
        centres = torch.rand(6, 2, generator=generator) * torch.tensor([w, h])
        sizes = 4 + torch.rand(6, 2, generator=generator) * 40
        targets.append({"boxes": torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1).clamp(min=0),
                        "labels": torch.randint(1, config.num_classes + 1, (6,), generator=generator)})

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cls_logits, box_deltas = net(x)
        loss = net.loss(cls_logits.float(), box_deltas.float(), targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"mode": mode, "applied": applied, "s_per_step": wall / steps,
            "kernel_share": system / max(user + system, 1e-9), "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "peak_rss_mib": after.ru_maxrss / 1024, "torch_threads": torch.get_num_threads()}


def run_child(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "training.tools.malloc_bench", "--child", mode, "--input-height", str(args.input_height),
           "--input-width", str(args.input_width), "--batch-size", str(args.batch_size),
           "--warmup", str(args.warmup), "--steps", str(args.steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"malloc_bench child ({mode}) failed with code {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Interleaved rounds of both modes; the summary described in the module docstring."""
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            runs[mode].append(run_child(mode, args))
            print(f"round {r + 1}/{args.rounds} {mode}: {runs[mode][-1]['s_per_step']:.2f} s/step", file=sys.stderr)
    result: dict = {"input_size": [args.input_height, args.input_width], "batch_size": args.batch_size,
                    "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup}
    for mode in MODES:
        rows = runs[mode]
        result[mode] = {"applied": rows[0]["applied"], "torch_threads": rows[0]["torch_threads"],
                        "median_s_per_step": statistics.median(r["s_per_step"] for r in rows),
                        "kernel_share": statistics.median(r["kernel_share"] for r in rows),
                        "faults_per_step": statistics.median(r["faults_per_step"] for r in rows),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
                        "s_per_step": [r["s_per_step"] for r in rows]}
    result["system_vs_keep"] = result["system"]["median_s_per_step"] / result["keep"]["median_s_per_step"]
    result["system_vs_keep_per_round_median"] = statistics.median(
        s["s_per_step"] / k["s_per_step"] for s, k in zip(runs["system"], runs["keep"]))
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tools.malloc_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-height", type=int, default=360, help="model input height px")
    parser.add_argument("--input-width", type=int, default=480, help="model input width px")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one child per mode each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per child")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per child")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    for name in ("input_height", "input_width", "batch_size", "rounds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.child:
        print(json.dumps(child(args.child, (args.input_height, args.input_width), args.batch_size,
                               args.warmup, args.steps)))
        return 0
    result = measure(args)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

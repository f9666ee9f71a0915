"""``truckpilot evaluate CHECKPOINT --data SESSION... [--out DIR]``: the training report for any checkpoint.

Direction checkpoints: accuracy, per-class precision/recall, confusion matrix
PNG, top-loss gallery PNG; on frames with a continuous steer label, the steer
head's mean absolute error (``steer_mae``; None for a checkpoint without the
head) beside p(right) - p(left)'s (``steer_mae_expected``) and a constant 0's. Detector checkpoints: mAP@0.5 and mAP@[.5:.95]
overall and per class, PR curves PNG, gallery of misses and false alarms;
``--tta flip`` also runs each frame mirrored and fuses the two passes
(perception.flip_tta; twice the compute). Everything goes to DIR (default:
``eval_<checkpoint name>`` next to the checkpoint) with metrics.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from training.config import EVAL_SCORE_THRESHOLD, RunConfig, RuntimeConfig, add_arguments

log = logging.getLogger("training.evaluate")


def evaluate_checkpoint(checkpoint: Path, sessions: list[str], out_dir: Path, device: str = "auto",
                        batch_size: int = 64, score_threshold: float = EVAL_SCORE_THRESHOLD,
                        tta: str = "none", cpu_malloc: str = "keep") -> dict:
    """Load the checkpoint, read the sessions at its input size, evaluate, write the report to out_dir.

    tta: "none", or "flip" (detector checkpoints only: test-time flip augmentation).
    cpu_malloc: "keep" or "system", as ``truckpilot train --cpu-malloc`` (CPU only; process-wide)."""
    from perception.checkpoint import load_model
    from training.cpu_malloc import apply_cpu_malloc
    from training.runtime import pick_device
    from training.data.samples import samples_from_sessions
    from training.state import atomic_write_json
    from training.tasks import make_task

    dev = pick_device(device)
    if tta not in ("none", "flip"):
        raise ValueError(f"--tta {tta!r}: use none or flip")
    apply_cpu_malloc(cpu_malloc, dev.type)
    model, card = load_model(checkpoint, dev)
    if tta == "flip" and card.kind != "detector":
        raise ValueError(f"--tta flip: {checkpoint} is a {card.kind} checkpoint; flip test-time augmentation "
                         "is for detector checkpoints (drop --tta)")
    task = make_task(card.kind, card.model_config())
    samples = samples_from_sessions(sessions)
    dataset = task.build_dataset(samples, augment=False, cache=True, seed=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    kwargs = {"score_threshold": score_threshold, "flip_tta": tta == "flip"} if card.kind == "detector" else {}
    metrics = task.evaluate(model, dataset, dev, out_dir, batch_size=batch_size, amp_dtype=amp, **kwargs)
    report = {"checkpoint": str(checkpoint), "kind": card.kind, "sessions": list(sessions),
              "sources": sorted({json.dumps(s.meta.get("source", {}), sort_keys=True) for s in samples}),
              "metrics": metrics}
    atomic_write_json(out_dir / "metrics.json", report)
    return report


def headline(report: dict) -> dict:
    """The few numbers worth printing."""
    m = report["metrics"]
    if report["kind"] == "joint":
        return {"joint_score": m["joint_score"],
                **{part: headline({"kind": part, "metrics": m[part]}) for part in ("direction", "detector")}}
    if report["kind"] == "direction":
        return {"frames": m["frames"], "accuracy": m["accuracy"],
                "recall": {k: v["recall"] for k, v in m["per_class"].items()},
                "precision": {k: v["precision"] for k, v in m["per_class"].items()},
                **{k: m[k] for k in ("steer_frames", "steer_mae", "steer_mae_expected", "steer_mae_zero") if k in m}}
    out = {"images": m["images"], "test_time_augmentation": m.get("test_time_augmentation", "none"),
           "map_50": m["map_50"], "map": m["map"],
           "ap_50": {k: v["ap_50"] for k, v in m["per_class"].items()}}
    if "without_tta" in m:
        w = m["without_tta"]
        out["without_tta"] = {"map_50": w["map_50"], "map": w["map"],
                              "ap_50": {k: v["ap_50"] for k, v in w["per_class"].items()}}
    for band, b in m.get("by_height", {}).items():
        out[f"{band}_ap_50"] = {"height_px": b["height_px"], "map_50": b["map_50"],
                                **{k: v["ap_50"] for k, v in b["per_class"].items()}}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``truckpilot evaluate`` parser."""
    parser = argparse.ArgumentParser(prog="truckpilot evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint (direction or detector)")
    parser.add_argument("--data", nargs="+", required=True, help="session directories to evaluate on")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: next to the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--tta", choices=("none", "flip"), default="none",
                        help="detector: test-time augmentation; flip also runs each frame mirrored and fuses "
                             "the two passes' boxes (twice the compute)")
    # the options that mean what they mean for `truckpilot train`: its fields' flags, help and defaults
    add_arguments(parser, RuntimeConfig, flags={"--device", "--cpu-malloc"})
    add_arguments(parser, RunConfig, flags={"--score-threshold"})
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or args.checkpoint.parent / f"eval_{args.checkpoint.stem}"
    from perception.checkpoint import CheckpointError

    try:
        report = evaluate_checkpoint(args.checkpoint, args.data, out, args.device, args.batch_size,
                                     args.score_threshold, args.tta, args.cpu_malloc)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"truckpilot evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"report": str(out), **headline(report)}, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))

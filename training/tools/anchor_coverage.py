"""How well a detector's anchors fit the boxes of recorded sessions, before any training.

    python -m training.tools.anchor_coverage --data sessions/* [--input-height 144 --input-width 192]
        [--anchor-strides 8 16 32 64 128 --anchor-sizes 0.04 0.08 0.2 0.4 0.7] [--anchor-ratios ...]
        [--match-iou 0.3] [--json]

For every labelled box, scaled to the model input: its best IoU with any anchor, and how many
anchors reach ``match_iou`` with it (the positives that ``perception.anchors.match`` gives it
besides the one the bipartite step forces). Reported overall and per class: the share of boxes
with at least one anchor at ``match_iou`` ("covered"), the mean positives per box and the
median best IoU. A box no anchor covers is trained through a single forced anchor that
overlaps it poorly, so a low share predicts a detector that learns those boxes slowly
(YOLOv5's "best possible recall" check is the same idea). Geometry only: no network runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Sequence

import torch

from perception.boxes import iou
from perception.config import DetectorConfig
from perception.detector import detector_anchors
from training.config import ModelConfig, add_arguments, from_arguments
from training.data.datasets import _scaled_boxes
from training.data.samples import FrameSample, samples_from_sessions
from training.tasks import default_model_config


@dataclass(frozen=True)
class CoverageRow:
    """Anchor fit of one group of boxes: boxes, share covered at match_iou, mean positives per box,
    median best IoU."""

    boxes: int
    covered: float
    positives_per_box: float
    median_best_iou: float


def scaled_boxes(samples: Sequence[FrameSample], input_size: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """Every labelled box of the samples in model-input px: ((N, 4) float32 xyxy, N class names)."""
    labelled = [s for s in samples if s.boxes_labelled and s.boxes]
    if not labelled:
        return torch.zeros((0, 4)), []
    return (torch.cat([_scaled_boxes(s, input_size) for s in labelled]),
            [label for s in labelled for label in s.labels])


#: IoU-matrix entries computed at once (box IoU holds a few float32 temporaries of this size)
IOU_CHUNK_ELEMENTS = 1 << 24


def anchor_coverage(boxes: torch.Tensor, labels: Sequence[str], config: DetectorConfig,
                    chunk: int = 0) -> dict[str, CoverageRow]:
    """{"all": row, class name: row} for boxes (N, 4) xyxy model-input px against the anchors of
    an SSDNet built from ``config`` (its match_iou is the threshold).

    chunk: boxes per IoU matrix; 0 = as many as keep the (chunk, A) matrix at IOU_CHUNK_ELEMENTS
    (a 480x360 input with a stride-4 level has ~175k anchors: 4096 boxes at once took > 20 GB).
    """
    anchors = detector_anchors(config)
    if chunk <= 0:
        chunk = max(1, IOU_CHUNK_ELEMENTS // max(1, anchors.shape[0]))
    best, positives = [], []
    for start in range(0, boxes.shape[0], chunk):
        overlaps = iou(boxes[start:start + chunk], anchors)
        best.append(overlaps.max(dim=1).values)
        positives.append((overlaps >= config.match_iou).sum(dim=1))
    best_t = torch.cat(best) if best else torch.zeros(0)
    pos_t = torch.cat(positives).float() if positives else torch.zeros(0)

    def row(mask: torch.Tensor) -> CoverageRow:
        n = int(mask.sum())
        if n == 0:
            return CoverageRow(0, 0.0, 0.0, 0.0)
        return CoverageRow(n, float((best_t[mask] >= config.match_iou).float().mean()), float(pos_t[mask].mean()),
                           float(best_t[mask].median()))

    names = list(labels)
    out = {"all": row(torch.ones(len(names), dtype=torch.bool))}
    for name in sorted(set(names)):
        out[name] = row(torch.tensor([n == name for n in names], dtype=torch.bool))
    return out


#: the options of ``truckpilot train`` (training.config.ModelConfig) this tool takes, with the same meaning
MODEL_FLAGS = ("--input-height", "--input-width", "--anchor-strides", "--anchor-sizes", "--anchor-ratios",
               "--match-iou")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tools.anchor_coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="session directories")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_arguments(parser, ModelConfig, flags=MODEL_FLAGS)  # as truckpilot train
    args = parser.parse_args(argv)
    try:
        model = from_arguments(ModelConfig, args)
        config = default_model_config("detector", "none", model.input_size,
                                      detector_options=model.detector_options())
        samples = samples_from_sessions(args.data)
    except (ValueError, FileNotFoundError) as exc:
        print(f"anchor_coverage: error: {exc}", file=sys.stderr)
        return 1
    boxes, labels = scaled_boxes(samples, tuple(config.input_size))
    rows = anchor_coverage(boxes, labels, config)
    if args.json:
        print(json.dumps({"input_size": list(config.input_size), "anchors": config.anchors.to_dict(),
                          "match_iou": config.match_iou, "rows": {k: vars(v) for k, v in rows.items()}}))
        return 0
    h, w = config.input_size
    print(f"input {w}x{h}, strides {list(config.anchors.feature_strides)}, sizes {list(config.anchors.sizes)}, "
          f"ratios {list(config.anchors.aspect_ratios)}, match IoU {config.match_iou}")
    print(f"{'class':8s} {'boxes':>7s} {'covered':>8s} {'pos/box':>8s} {'median best IoU':>16s}")
    for name, r in rows.items():
        print(f"{name:8s} {r.boxes:7d} {r.covered:8.2f} {r.positives_per_box:8.1f} {r.median_best_iou:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

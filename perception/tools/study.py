"""Design study (not a test): which detector loss and which input size, measured on simulator data.

    .venv/bin/python -m perception.tools.study --losses focal hnm --sizes 224x168 --epochs 12
    .venv/bin/python -m perception.tools.study --losses focal --sizes 224x168 192x144 160x120

Sizes are WxH. Frames come from the simulator driven by its expert (training and
validation drives use different seeds); every configuration trains an SSDNet
from the same random init (trunk weights "none": no ImageNet weights offline)
with Adam + one-cycle, then reports on the validation frames: COCO mAP and
mAP@0.5 (torchmetrics), recall of all and of small objects (box height < 12 px in
the 320x240 frame) at score >= 0.3 and IoU >= 0.5, and precision at that score.
One JSON line per configuration. Runs on CUDA when there is one.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from perception.boxes import iou
from perception.config import AnchorConfig, DetectorConfig, TrunkConfig
from perception.detector import SSDNet
from perception.perceiver import Preprocessor, pick_device
from perception.preprocess import Letterbox
from perception.types import DEFAULT_DETECTION_CLASSES

log = logging.getLogger(__name__)
SMALL_PX = 12.0  # box height in the 320x240 frame below which an object counts as small (distant)

#: anchor sets compared by --anchor-sets
ANCHOR_SETS: dict[str, AnchorConfig] = {
    "default": AnchorConfig(),
    "s16-small": AnchorConfig(feature_strides=(16, 32, 64, 128), sizes=(0.05, 0.15, 0.35, 0.7)),
    "s8": AnchorConfig(feature_strides=(8, 16, 32, 64, 128), sizes=(0.035, 0.08, 0.2, 0.4, 0.7)),
}


def collect_frames(n: int, seed: int, every: int = 3) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n (image HxWx3 uint8, boxes (N,4) xyxy frame px, labels (N,) 1..C) from expert drives
    starting at ``seed`` (a new seeded episode every 600 steps)."""
    import gymnasium
    import sim  # noqa: F401  (registers the env)
    from sim.expert import Expert
    from sim.rollout import expert_policy, rollout

    env = gymnasium.make("TruckSim-v0")
    frames = []
    episode = 0
    with tqdm(total=n, desc=f"sim frames (seed {seed})", leave=False) as bar:
        while len(frames) < n:
            expert = Expert(seed=seed + episode)
            for step in rollout(env, expert_policy(env, expert), 600, seed=seed + episode):
                if step.index % every == 0:
                    info = step.info
                    labels = np.array([DEFAULT_DETECTION_CLASSES.index(c) + 1 for c in info["labels"]], np.int64)
                    frames.append((step.obs.copy(), np.asarray(info["boxes"], np.float32).reshape(-1, 4), labels))
                    bar.update(1)
                    if len(frames) >= n:
                        break
            episode += 1
    env.close()
    return frames


def _prepare(frames, input_size, config: DetectorConfig, device):
    pre = Preprocessor(input_size, config.mean, config.std, "cpu")
    xs = torch.cat([pre([f[0] for f in frames[i:i + 256]]) for i in range(0, len(frames), 256)])
    targets = [
        {"boxes": Letterbox.fit(img.shape[:2], input_size).boxes_to_input(torch.from_numpy(b)).to(device),
         "labels": torch.from_numpy(lab).to(device)}
        for img, b, lab in frames
    ]
    return xs.to(device), targets


def evaluate(model: SSDNet, xs, targets, frames, input_size, batch: int = 128) -> dict[str, float]:
    from torchmetrics.detection import MeanAveragePrecision

    model.eval()
    metric = MeanAveragePrecision(iou_type="bbox")
    found_small = n_small = found_all = n_all = true_pos = n_det = 0
    with torch.inference_mode():
        for i in range(0, len(xs), batch):
            dets = model.detect(*model(xs[i:i + batch]), score_threshold=0.01, top_k=100)
            preds = [{k: v.cpu() for k, v in d.items()} for d in dets]
            gts = [{k: v.cpu() for k, v in t.items()} for t in targets[i:i + batch]]
            metric.update(preds, gts)
            for p, g, frame in zip(preds, gts, frames[i:i + batch]):
                keep = p["scores"] >= 0.3
                boxes, labels = p["boxes"][keep], p["labels"][keep]
                n_det += len(boxes)
                heights = frame[1][:, 3] - frame[1][:, 1]
                hit = torch.zeros(len(g["boxes"]), dtype=torch.bool)
                if len(boxes) and len(g["boxes"]):
                    iou_matrix = iou(g["boxes"], boxes) * (g["labels"][:, None] == labels[None, :])
                    hit = iou_matrix.max(dim=1).values >= 0.5
                    true_pos += int((iou_matrix.max(dim=0).values >= 0.5).sum())
                small = torch.from_numpy(heights < SMALL_PX)
                n_all += len(hit)
                found_all += int(hit.sum())
                n_small += int(small.sum())
                found_small += int((hit & small).sum())
    m = metric.compute()
    return {
        "map": round(float(m["map"]), 4),
        "map50": round(float(m["map_50"]), 4),
        "recall": round(found_all / max(n_all, 1), 4),
        "recall_small": round(found_small / max(n_small, 1), 4),
        "precision": round(true_pos / max(n_det, 1), 4),
        "objects": n_all,
        "small_objects": n_small,
    }


def _calibrate_and_freeze(model: SSDNet, xs: torch.Tensor, batch: int = 256) -> None:
    """Trunk BatchNorm statistics from the training frames (cumulative), then freeze the trunk."""
    for module in model.trunk.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.trunk.train()
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            model.trunk(xs[i:i + batch])
    model.freeze_trunk(True)


def train_and_evaluate(loss: str, input_size, train_frames, val_frames, epochs: int, batch: int,
                       lr: float, device, seed: int = 0, anchor_set: str = "default",
                       frozen_trunk: bool = False) -> dict:
    """Train one SSDNet configuration and evaluate it. frozen_trunk=True (the cheap CPU proxy):
    the random trunk's BN is calibrated on the training frames and frozen, its features are
    computed once, and only the extra blocks and heads train."""
    torch.manual_seed(seed)
    config = DetectorConfig(input_size=input_size, trunk=TrunkConfig(weights="none"), loss=loss,
                            anchors=ANCHOR_SETS[anchor_set])
    model = SSDNet(config).to(device)
    xs, targets = _prepare(train_frames, input_size, config, device)
    vx, vt = _prepare(val_frames, input_size, config, device)
    steps = epochs * (len(xs) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    cached = None
    if frozen_trunk:
        _calibrate_and_freeze(model, xs)
        with torch.no_grad():
            cached = [model.forward_features(xs[i:i + 128]) for i in range(0, len(xs), 128)]
            cached = tuple(torch.cat([c[level] for c in cached]) for level in range(len(cached[0])))
    model.train()
    for _ in tqdm(range(steps), desc=f"{loss} {input_size}", leave=False):
        idx = torch.randint(len(xs), (batch,), generator=gen)
        flip = torch.rand(1, generator=gen).item() < 0.5 and cached is None
        if cached is not None:
            feats = tuple(level[idx.to(level.device)] for level in cached)
        else:
            x = xs[idx.to(xs.device)]
        if flip:  # horizontal flip (not with cached features)
            x = x.flip(-1)
            w = input_size[1]
            tg = [{"boxes": targets[i]["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1], device=xs.device)
                   + torch.tensor([w, 0, w, 0], device=xs.device), "labels": targets[i]["labels"]}
                  for i in idx.tolist()]
        else:
            tg = [targets[i] for i in idx.tolist()]
        out = model.loss(*(model.forward_head(feats) if cached is not None else model(x)), tg)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        schedule.step()
    train_s = time.perf_counter() - t0
    result = {"loss": loss, "anchors": anchor_set, "anchor_count": model.num_anchors, "input_hw": list(input_size), "epochs": epochs, "steps": steps,
              "train_frames": len(xs), "val_frames": len(vx), "train_s": round(train_s, 1),
              "frozen_trunk": frozen_trunk}
    result.update(evaluate(model, vx, vt, val_frames, input_size))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.tools.study", description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["focal", "hnm"], choices=["focal", "hnm"])
    parser.add_argument("--sizes", nargs="+", default=["224x168"], help="model input sizes WxH")
    parser.add_argument("--anchor-sets", nargs="+", default=["default"], choices=sorted(ANCHOR_SETS))
    parser.add_argument("--train-frames", type=int, default=3000)
    parser.add_argument("--val-frames", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--frozen-trunk", action="store_true",
                        help="cheap proxy: calibrate+freeze the random trunk, train only the heads")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train = collect_frames(args.train_frames, seed=1000)
    val = collect_frames(args.val_frames, seed=9000)
    log.info("collected %d + %d frames in %.1f s", len(train), len(val), time.perf_counter() - t0)
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        for anchor_set in args.anchor_sets:
            for loss in args.losses:
                row = train_and_evaluate(loss, (h, w), train, val, args.epochs, args.batch, args.lr, device,
                                         anchor_set=anchor_set, frozen_trunk=args.frozen_trunk)
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())

"""PNG plots and galleries for a run or an evaluation (matplotlib, Agg, no pyplot state).

Every function takes plain data and a path, draws one figure and writes it.
Images given to galleries are (3, H, W) uint8 RGB tensors or HxWx3 arrays;
boxes are xyxy in px of that image.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _hwc(image) -> np.ndarray:
    array = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
        array = array.transpose(1, 2, 0)
    return array


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: Path,
                          title: str = "confusion matrix") -> Path:
    """Rows = true class, columns = predicted; cells show counts and row share."""
    matrix = np.asarray(confusion, dtype=np.float64)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.4 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    return _save(fig, path)


def plot_top_losses(images: Sequence, titles: Sequence[str], path: Path, columns: int = 4) -> Path:
    """A grid of frames, each titled e.g. "true straight / pred left / p=0.91 / loss 2.3"."""
    count = max(1, len(images))
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(3.2 * columns, 2.8 * rows))
    for k, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(_hwc(image))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    if not images:
        fig.text(0.5, 0.5, "no frames", ha="center")
    return _save(fig, path)


def plot_detection_gallery(items: Sequence[dict], classes: Sequence[str], path: Path, columns: int = 4) -> Path:
    """Frames with their errors drawn.

    items: {"image", "title", "gt_boxes" (G,4), "gt_labels" (G,), "missed" (indices of gt),
    "pred_boxes" (P,4), "pred_labels" (P,), "pred_scores" (P,), "false_alarms" (indices of preds)}.
    Green = found ground truth, red dashed = missed ground truth, orange = false alarm.
    """
    count = max(1, len(items))
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(3.4 * columns, 2.9 * rows))
    for k, item in enumerate(items):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.imshow(_hwc(item["image"]))
        missed = set(item.get("missed", ()))
        for g, (box, label) in enumerate(zip(item["gt_boxes"].tolist(), item["gt_labels"].tolist())):
            colour, style = ("red", "--") if g in missed else ("lime", "-")
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor=colour, linestyle=style, linewidth=1.2))
            if g in missed:
                ax.text(box[0], box[1], f"miss {classes[label - 1]}", color="red", fontsize=6, va="bottom")
        for p in item.get("false_alarms", ()):
            box = item["pred_boxes"][p].tolist()
            label = int(item["pred_labels"][p])
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor="orange", linewidth=1.2))
            ax.text(box[0], box[3], f"FA {classes[label - 1]} {float(item['pred_scores'][p]):.2f}",
                    color="orange", fontsize=6, va="top")
        ax.set_title(item.get("title", ""), fontsize=7)
        ax.axis("off")
    if not items:
        fig.text(0.5, 0.5, "no misses or false alarms", ha="center")
    return _save(fig, path)


def plot_pr_curves(curves: dict, path: Path, title: str = "precision-recall at IoU 0.5") -> Path:
    """curves: {"recall": (101,), "precision": {class: (101,)}} as from training.metrics.detection_metrics."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    recall = np.asarray(curves["recall"])
    for name, precision in curves.get("precision", {}).items():
        p = np.asarray(precision, dtype=np.float64)
        p = np.where(p < 0, np.nan, p)
        ax.plot(recall, p, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if curves.get("precision"):
        ax.legend(loc="lower left")
    return _save(fig, path)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], suggested: float, path: Path) -> Path:
    """Smoothed loss against learning rate (log x), with the suggested rate marked."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.axvline(suggested, color="red", linestyle="--", label=f"suggested {suggested:.2e}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_history(history: Sequence[dict], path: Path) -> Path:
    """Train loss and the validation metric per epoch."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h.get("train_loss", np.nan) for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h.get("val_metric", np.nan) for h in history], "s-", color="green", label="val metric")
    ax2.set_ylabel("validation metric")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _save(fig, path)

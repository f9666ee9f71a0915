"""``truckpilot export CHECKPOINT --onnx OUT.onnx``: the ONNX graph the product runs, checked against PyTorch.

The file is perception.onnx_export's graph for the checkpoint, the one ``drive --engine
onnxruntime`` builds in memory and can load from the file (perception.onnx_engine.OnnxNetworks):
input ``input`` (B, 3, H, W) float32, the frames preprocessed by perception.preprocess with the
card's size and mean/std, batch size dynamic. Outputs: direction -> ``direction_logits`` (B, C);
detector -> ``cls_logits`` (B, A, C+1) (index 0 = background) and ``box_deltas`` (B, A, 4)
(SSD-encoded against the card's anchors; decode + NMS stay in Python). The model card travels
in the ONNX metadata (key ``truckpilot_card``).

After writing, the command runs the file with the product's ONNX engine on frames preprocessed
by perception.preprocess (synthetic 1280x720 frames) and fails (exit 1) if any output differs
from PyTorch's by more than the tolerance.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

#: size (H, W) of the synthetic frames the export is checked on: a 720p game frame
CHECK_FRAME_SIZE = (720, 1280)


def export_onnx(checkpoint: Path, out: Path, opset: int = 17) -> Path:
    """Write ``out`` (ONNX, perception.onnx_export.export_checkpoint) atomically; returns the path."""
    from perception.onnx_export import export_checkpoint
    from training.state import atomic_write_bytes

    data, _ = export_checkpoint(checkpoint, opset)
    out = Path(out)
    atomic_write_bytes(out, data)
    return out


def check_frames(n: int, seed: int = 0, size: tuple[int, int] = CHECK_FRAME_SIZE) -> list[np.ndarray]:
    """n synthetic HxWx3 uint8 RGB frames: random colours at 1/16 of ``size``, enlarged (INTER_LINEAR),
    so they span 0..255 with smooth structure that survives the resize to the model input."""
    rng = np.random.default_rng(seed)
    height, width = size
    small = rng.integers(0, 256, size=(n, max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return [cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in small]


def compare_with_torch(checkpoint: Path, onnx_path: Path, batch: int = 3, seed: int = 0,
                       frames: list[np.ndarray] | None = None) -> dict[str, float]:
    """Max absolute difference per output between the ONNX engine running ``onnx_path`` and PyTorch running
    the checkpoint, on ``frames`` (default: ``batch`` :func:`check_frames`) preprocessed for the card."""
    from perception.checkpoint import load_model
    from perception.onnx_engine import OnnxNetworks
    from perception.preprocess import Preprocessor

    model, card = load_model(checkpoint, "cpu")
    frames = check_frames(batch, seed) if frames is None else frames
    x = Preprocessor.for_card(card)(frames)
    with torch.no_grad():
        expected = model(x)
    if card.kind == "direction":
        got = OnnxNetworks.from_files(direction=onnx_path)(x, None)
        pairs = {"direction_logits": (got.direction_logits, expected)}
    else:
        got = OnnxNetworks.from_files(detector=onnx_path)(None, x)
        pairs = {"cls_logits": (got.cls_logits, expected[0]), "box_deltas": (got.box_deltas, expected[1])}
    return {name: float((g - e).abs().max()) for name, (g, e) in pairs.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="truckpilot export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint written by training")
    parser.add_argument("--onnx", type=Path, required=True, help="where to write the ONNX model")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest allowed |onnxruntime - PyTorch| per output element")
    args = parser.parse_args(argv)
    from perception.checkpoint import CheckpointError

    try:
        path = export_onnx(args.checkpoint, args.onnx, args.opset)
        diffs = compare_with_torch(args.checkpoint, path)
    except CheckpointError as exc:
        print(f"truckpilot export: error: {exc}", file=sys.stderr)
        return 1
    ok = all(d <= args.atol for d in diffs.values())
    print(json.dumps({"onnx": str(path), "max_abs_diff": diffs, "atol": args.atol, "match": ok}, indent=2))
    if not ok:
        print(f"truckpilot export: error: onnxruntime outputs differ from PyTorch by more than {args.atol} "
              f"({diffs}); the file {path} should not be used", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))

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

int8 (``--int8 --calib SESSION...``): the float32 graph quantised statically by ONNX Runtime
(perception.quantize: QDQ, int8 per-channel weights, uint8 activations), its activation ranges
calibrated on ``--calib-frames`` frames spread over the user's own sessions. Give a joint run's
direction and detector checkpoints together (one trunk) for the one joint graph drive runs:

    truckpilot export runs/joint/direction.safetensors runs/joint/detector.safetensors --int8 \\
        --calib sessions/day1 sessions/day2 [--check sessions/val1] [--onnx out.onnx]

Without ``--onnx`` the file goes beside the checkpoints (perception.quantize.int8_cache_path),
where ``drive --engine auto`` looks for it. The command then checks it: direction accuracy and
mAP@0.5 of the int8 graph beside the float32 graph (both ONNX Runtime, the Perceiver's decoding
at the evaluation score threshold) on held-out labelled frames: ``--check`` sessions, else the
calibration sessions' frames that calibration did not use. The result is stored in the file
(perception.quantize.Int8Record); ``--engine auto`` runs the file only if it passed (int8 - fp32
within 1 point of direction accuracy and 2 points of mAP@0.5). Exit 1 if it failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from perception.quantize import Int8Record, QuantSettings

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
        expected = model(x, with_steer=True) if card.kind == "direction" else model(x)
    if card.kind == "direction":
        got = OnnxNetworks.from_files(direction=onnx_path)(x, None)
        logits, steer = expected
        pairs = {"direction_logits": (got.direction_logits, logits)}
        if steer is not None:
            if got.steer is None:
                raise ValueError(f"{onnx_path}: no steer output, but {checkpoint} has the steer head; export it again")
            pairs["steer"] = (got.steer, steer)
    else:
        got = OnnxNetworks.from_files(detector=onnx_path)(None, x)
        pairs = {"cls_logits": (got.cls_logits, expected[0]), "box_deltas": (got.box_deltas, expected[1])}
    return {name: float((g - e).abs().max()) for name, (g, e) in pairs.items()}


@dataclass(frozen=True)
class Int8Export:
    """What ``export --int8`` wrote: the int8 graph's path, its record, seconds spent quantising."""

    path: Path
    record: Int8Record
    quantize_s: float


def _int8_models(checkpoints: list[Path]):
    """({kind: checkpoint path}, direction model or None, detector model or None, card) of one checkpoint or
    a direction + detector pair sharing one trunk; card: the first one's (input size, normalisation)."""
    from perception.checkpoint import load_model
    from perception.perceiver import _same_trunk

    loaded = [(path, *load_model(path, "cpu")) for path in checkpoints]
    kinds = sorted(card.kind for _, _, card in loaded)
    if len(loaded) == 2 and kinds != ["detector", "direction"]:
        raise ValueError(f"two checkpoints must be a direction and a detector, got {kinds}")
    paths = {card.kind: path for path, _, card in loaded}
    models = {card.kind: (model, card) for _, model, card in loaded}
    direction, detector = models.get("direction", (None, None))[0], models.get("detector", (None, None))[0]
    if direction is not None and detector is not None:
        dcard, scard = models["direction"][1], models["detector"][1]
        if (dcard.input_size, dcard.mean, dcard.std) != (scard.input_size, scard.mean, scard.std) or \
                not _same_trunk(direction.trunk, detector.trunk):
            raise ValueError("the direction and detector checkpoints do not share one trunk (input size, "
                             "normalisation and trunk weights): export them one at a time")
    return paths, direction, detector, loaded[0][2]


def _spread(counts: list[int], n: int) -> list[set[int]]:
    """Positions of ``n`` frames spread evenly over sessions of ``counts`` frames: one set per session."""
    total = sum(counts)
    chosen = {int(i) for i in np.linspace(0, total - 1, min(n, total))} if total else set()
    out, start = [], 0
    for count in counts:
        out.append({i - start for i in chosen if start <= i < start + count})
        start += count
    return out


def export_int8(checkpoints: list[Path], out: Path | None, calib: list[str], check: list[str] | None = None,
                calib_frames: int = 64, check_frames: int = 600, tolerance_points: dict | None = None,
                settings: QuantSettings | None = None) -> Int8Export:
    """Quantise the graph of ``checkpoints`` (one, or a joint run's direction + detector) to int8, its
    activation ranges calibrated on ``calib_frames`` frames spread evenly over the ``calib`` sessions;
    check it against float32 on held-out labelled frames (``check`` sessions, else the calibration
    sessions' other frames; at most ``check_frames``, spread evenly); write it with its record to
    ``out`` (default: beside the checkpoints). The caller looks at ``record.check.passed``."""
    import time

    from perception.onnx_engine import OnnxNetworks
    from perception.onnx_export import export_networks
    from perception.perceiver import Perceiver
    from perception.preprocess import Preprocessor
    from perception.quantize import Int8Check, checkpoint_digests, int8_cache_path, quantize_graph, with_record
    from training.config import EVAL_SCORE_THRESHOLD
    from training.perceiver_accuracy import accuracy_of, labelled_frames
    from training.sessions import Session
    from training.state import atomic_write_bytes

    settings = settings or QuantSettings()
    paths, direction, detector, card = _int8_models(checkpoints)
    shared = direction is not None and detector is not None
    counts = [len(Session.open(path).records()) for path in calib]
    if sum(counts) == 0:
        raise ValueError(f"the calibration sessions {calib} hold no frames")
    used = _spread(counts, calib_frames)
    picked = [f.image for path, keep in zip(calib, used) for f in labelled_frames([path], keep=keep.__contains__)]
    t0 = time.perf_counter()
    graph = export_networks(direction, detector, card.input_size, shared_trunk=shared)
    int8 = quantize_graph(graph, Preprocessor.for_card(card)(picked).numpy(), settings)
    quantize_s = time.perf_counter() - t0

    if check:
        held_out, check_sessions = "other sessions (--check)", list(check)
        selected = _spread([len(Session.open(path).records()) for path in check], check_frames)
    else:
        held_out, check_sessions = "the calibration sessions' frames calibration did not use", list(calib)
        rest = [sorted(set(range(count)) - chosen) for count, chosen in zip(counts, used)]
        selected = [{rest_i[j] for j in keep} for rest_i, keep in zip(rest, _spread([len(r) for r in rest],
                                                                                     check_frames))]

    def frames():
        return (f for path, keep in zip(check_sessions, selected) for f in labelled_frames([path],
                                                                                           keep=keep.__contains__))

    def figures(graph_bytes: bytes) -> dict:
        networks = (OnnxNetworks(joint_graph=graph_bytes) if shared else
                    OnnxNetworks(graph_bytes if direction is not None else None,
                                 graph_bytes if detector is not None else None))
        perceiver = Perceiver(direction, detector, device="cpu", engine="onnxruntime", networks=networks,
                              score_threshold=EVAL_SCORE_THRESHOLD, top_k=100)
        return accuracy_of(perceiver, frames())

    want, got = figures(graph), figures(int8)
    result = Int8Check.compare(want, got, got["frames"], check_sessions, held_out, tolerance_points)
    record = Int8Record(checkpoint_digests(paths.get("direction"), paths.get("detector")), card.input_size,
                        {"sessions": list(calib), "frames": len(picked), **settings.to_dict()}, result)
    out = Path(out) if out else int8_cache_path(paths.get("direction"), paths.get("detector"))
    atomic_write_bytes(out, with_record(int8, record))
    return Int8Export(out, record, round(quantize_s, 1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="truckpilot export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, nargs="+",
                        help="a .safetensors checkpoint written by training (with --int8: or a joint run's "
                             "direction and detector checkpoints, for the one joint graph drive runs)")
    parser.add_argument("--onnx", type=Path, help="where to write the ONNX model (required without --int8; "
                                                  "with --int8 default: beside the checkpoints)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest allowed |onnxruntime - PyTorch| per output element")
    parser.add_argument("--int8", action="store_true", help="write the int8 graph, statically quantised")
    parser.add_argument("--calib", nargs="+", metavar="SESSION", help="--int8: your sessions to calibrate on")
    parser.add_argument("--calib-frames", type=int, default=64, help="--int8: calibration frames")
    parser.add_argument("--check", nargs="+", metavar="SESSION",
                        help="--int8: held-out labelled sessions for the accuracy check (default: the "
                             "calibration sessions' frames that calibration did not use)")
    parser.add_argument("--check-frames", type=int, default=600, help="--int8: at most this many check frames")
    args = parser.parse_args(argv)
    from perception.checkpoint import CheckpointError

    if args.int8:
        if not args.calib:
            parser.error("--int8 needs --calib SESSION... (frames of your own sessions to calibrate on)")
        if len(args.checkpoint) > 2:
            parser.error("--int8 takes one checkpoint, or a joint run's direction and detector checkpoints")
        try:
            done = export_int8(list(args.checkpoint), args.onnx, list(args.calib), args.check,
                               args.calib_frames, args.check_frames)
        except (CheckpointError, ValueError) as exc:
            print(f"truckpilot export: error: {exc}", file=sys.stderr)
            return 1
        check = done.record.check
        print(json.dumps({"onnx": str(done.path), "int8": True, "quantize_s": done.quantize_s,
                          "calibration": done.record.calibration, "check": check.to_dict()}, indent=2))
        if not check.passed:
            print(f"truckpilot export: error: the int8 graph failed its accuracy check (int8 - fp32 "
                  f"{check.delta_points} points, tolerance {check.tolerance_points}); `drive --engine auto` "
                  f"will run float32", file=sys.stderr)
            return 1
        return 0
    if len(args.checkpoint) != 1 or args.onnx is None:
        parser.error("a float32 export takes one checkpoint and --onnx OUT")
    checkpoint = args.checkpoint[0]
    try:
        path = export_onnx(checkpoint, args.onnx, args.opset)
        diffs = compare_with_torch(checkpoint, path)
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

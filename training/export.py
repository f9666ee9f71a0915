"""``truckpilot export CHECKPOINT --onnx OUT.onnx``: ONNX export checked against PyTorch.

The ONNX graph takes what the PyTorch model takes: ``input`` (B, 3, H, W)
float32, normalised with the card's mean/std, (H, W) = card.input_size, batch
size dynamic. Outputs: direction -> ``logits`` (B, C); detector ->
``cls_logits`` (B, A, C+1) (index 0 = background) and ``box_deltas`` (B, A, 4)
(SSD-encoded against the card's anchors; decode + NMS stay in Python).
The model card travels in the ONNX metadata (key ``truckpilot_card``).

After writing, the command runs the file with onnxruntime on random inputs and
fails (exit 1) if any output differs from PyTorch's by more than the tolerance.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def output_names(kind: str) -> list[str]:
    return ["logits"] if kind == "direction" else ["cls_logits", "box_deltas"]


def export_onnx(checkpoint: Path, out: Path, opset: int = 17) -> Path:
    """Write ``out`` (ONNX) from a perception checkpoint; returns the path."""
    import onnx

    from perception.checkpoint import load_model
    from training.state import atomic_write_bytes

    model, card = load_model(checkpoint, "cpu")
    model.eval()
    height, width = card.input_size
    example = torch.zeros(2, 3, height, width)
    names = output_names(card.kind)
    dynamic = {"input": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.export")
    with torch.no_grad(), warnings.catch_warnings():
        # onnxscript (needed by the dynamo exporter) is not a dependency; the TorchScript exporter is enough here
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    entry = proto.metadata_props.add()
    entry.key, entry.value = "truckpilot_card", card.to_json()
    onnx.checker.check_model(proto)
    atomic_write_bytes(out, proto.SerializeToString())
    return out


def compare_with_torch(checkpoint: Path, onnx_path: Path, batch: int = 3, seed: int = 0) -> dict[str, float]:
    """Max absolute difference per output between onnxruntime and PyTorch on random normal inputs."""
    import onnxruntime as ort

    from perception.checkpoint import load_model

    model, card = load_model(checkpoint, "cpu")
    height, width = card.input_size
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})
    names = output_names(card.kind)
    return {name: float(np.max(np.abs(g - e.numpy()))) for name, g, e in zip(names, got, expected)}


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

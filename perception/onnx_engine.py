"""Run the Perceiver's networks with ONNX Runtime on the CPU (the fast path on small CPUs).

The PyTorch models are exported in memory when the Perceiver is built (a few
seconds, no file written) and run by one ``onnxruntime.InferenceSession`` per
distinct input: with a shared trunk a single graph computes the trunk once and
returns both networks' outputs. Decoding and NMS stay in PyTorch.

Measured on the project's 2-core AVX2 CPU (ResNet34 trunk at 96x128, batch 1,
median of 30): PyTorch eager 42.8 ms on 1 thread / 27.9 ms on 2 threads,
ONNX Runtime 25.7 ms on 1 thread / 30.1 ms on 2 threads. One thread is
therefore the default: as fast as PyTorch on both cores, and the second core
stays free for the game (or the simulator), capture and key output.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

#: output names of the exported graphs
DIRECTION_OUTPUT = "direction_logits"
CLASS_OUTPUT, BOX_OUTPUT = "cls_logits", "box_deltas"


class _Networks(nn.Module):
    """Both networks on one input: (B, 3, H, W) normalised float32 -> their outputs in a fixed order
    (direction logits (B, 3); class logits (B, A, C+1); box deltas (B, A, 4)), trunk once if shared."""

    def __init__(self, direction: nn.Module | None, detector: nn.Module | None, shared_trunk: bool) -> None:
        super().__init__()
        self.direction, self.detector, self.shared_trunk = direction, detector, shared_trunk

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.shared_trunk:
            levels = self.direction.trunk.forward_levels(x)
            return (self.direction.forward_head(levels[-1]), *self.detector.forward_head(levels))
        outputs: list[Tensor] = []
        if self.direction is not None:
            outputs.append(self.direction(x))
        if self.detector is not None:
            outputs.extend(self.detector(x))
        return tuple(outputs)


def _export(module: nn.Module, input_hw: tuple[int, int], names: list[str]) -> bytes:
    example = torch.zeros(1, 3, *input_hw)
    dynamic = {"input": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(module.eval(), (example,), buffer, input_names=["input"], output_names=names,
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class NetworkOutputs:
    """Raw network outputs as CPU float32 tensors (None for a network that is not loaded)."""

    direction_logits: Tensor | None  # (B, n_directions)
    cls_logits: Tensor | None  # (B, A, n_classes + 1), background first
    box_deltas: Tensor | None  # (B, A, 4), encoded against the anchors


class OnnxNetworks:
    """The direction classifier and/or the SSD detector as ONNX Runtime sessions.

    direction / detector: the eval-mode PyTorch models (either may be None); input_hw: the
    model input (H, W) of each ((direction_hw, detector_hw)); shared_trunk: one graph, trunk once.
    threads: ONNX Runtime intra-op threads (1 by default, see the module doc).
    Call with the preprocessed batches (B, 3, H, W) float32 -> NetworkOutputs.
    """

    def __init__(self, direction: nn.Module | None, detector: nn.Module | None, direction_hw, detector_hw,
                 shared_trunk: bool, threads: int = 1) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"ONNX Runtime threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(module: nn.Module, hw, names: list[str]):
            return ort.InferenceSession(_export(module, tuple(hw), names), options,
                                        providers=["CPUExecutionProvider"])

        self.shared_trunk = shared_trunk
        self.threads = threads
        self._joint = self._direction = self._detector = None
        if shared_trunk:
            self._joint = session(_Networks(direction, detector, True), direction_hw,
                                  [DIRECTION_OUTPUT, CLASS_OUTPUT, BOX_OUTPUT])
        else:
            if direction is not None:
                self._direction = session(_Networks(direction, None, False), direction_hw, [DIRECTION_OUTPUT])
            if detector is not None:
                self._detector = session(_Networks(None, detector, False), detector_hw, [CLASS_OUTPUT, BOX_OUTPUT])

    @staticmethod
    def _run(session, x: Tensor) -> list[Tensor]:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return [torch.from_numpy(out) for out in session.run(None, {"input": array})]

    def __call__(self, x_direction: Tensor | None, x_detector: Tensor | None) -> NetworkOutputs:
        if self._joint is not None:
            d, c, b = self._run(self._joint, x_direction)
            return NetworkOutputs(d, c, b)
        d = self._run(self._direction, x_direction)[0] if self._direction is not None else None
        c, b = self._run(self._detector, x_detector) if self._detector is not None else (None, None)
        return NetworkOutputs(d, c, b)

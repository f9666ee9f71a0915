"""The one ONNX exporter: the graphs ``truckpilot export`` writes and ``drive --engine onnxruntime`` runs.

A graph takes ``input`` (B, 3, H, W) float32, the output of perception.preprocess for the
model card (H, W = card.input_size; batch size dynamic), and returns, in this order:

  ``direction_logits``  (B, n_directions)     when it holds the direction classifier
  ``cls_logits``        (B, A, n_classes + 1) when it holds the SSD detector (index 0 = background)
  ``box_deltas``        (B, A, 4)             SSD-encoded against the card's anchors

Decoding and NMS stay in PyTorch (perception.detector.SSDNet.detect). With a shared trunk
(both models, one trunk) one graph computes the trunk once and returns all three outputs.
A file written for a checkpoint also carries its model card in the ONNX metadata (key
``truckpilot_card``, perception.checkpoint.CARD_KEY).

:func:`export_networks` is the exporter; perception.onnx_engine builds its in-memory graphs
with it, and :func:`export_checkpoint` (``truckpilot export``) writes the same graph to a file.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from perception.checkpoint import CARD_KEY, ModelCard, load_model

#: the graph's input name
INPUT_NAME = "input"
#: output names, in graph order
DIRECTION_OUTPUT = "direction_logits"
#: the direction network's continuous steer (B,) in [-1, 1], + = right: only when it has the steer head
STEER_OUTPUT = "steer"
CLASS_OUTPUT, BOX_OUTPUT = "cls_logits", "box_deltas"
#: default ONNX opset
OPSET = 17
#: batch size of the example traced at export (any batch size runs: the batch axis is dynamic)
_EXAMPLE_BATCH = 2


def output_names(direction: bool, detector: bool, steer: bool = False) -> list[str]:
    """The graph's output names, in order, for a graph holding these networks (``steer``: the direction
    network has the continuous steer head, perception.direction)."""
    return (([DIRECTION_OUTPUT] + ([STEER_OUTPUT] if steer else [])) if direction else []) + \
        ([CLASS_OUTPUT, BOX_OUTPUT] if detector else [])


def has_steer(direction: nn.Module | None) -> bool:
    """Whether a graph of ``direction`` has the steer output (its network has the steer head)."""
    return direction is not None and bool(getattr(direction, "has_steer_head", False))


class NetworkGraph(nn.Module):
    """Both networks (either may be None) on one input: (B, 3, H, W) normalised float32 -> their
    outputs in :func:`output_names` order (the steer too when the direction network has its head);
    with ``shared_trunk`` the direction model's trunk runs once and feeds both heads (the two models
    must have identical trunks)."""

    def __init__(self, direction: nn.Module | None, detector: nn.Module | None, shared_trunk: bool = False) -> None:
        super().__init__()
        if direction is None and detector is None:
            raise ValueError("an ONNX graph needs at least one of the direction and detector models")
        if shared_trunk and (direction is None or detector is None):
            raise ValueError("a shared trunk needs both the direction and the detector model")
        self.direction, self.detector, self.shared_trunk = direction, detector, shared_trunk

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        steer = has_steer(self.direction)
        outputs: list[Tensor] = []
        if self.shared_trunk:
            levels = self.direction.trunk.forward_levels(x)
            outputs.extend(self.direction.forward_head(levels[-1], with_steer=True) if steer else
                           (self.direction.forward_head(levels[-1]),))
            return (*outputs, *self.detector.forward_head(levels))
        if self.direction is not None:  # a network without the head may not take with_steer at all
            outputs.extend(self.direction(x, with_steer=True) if steer else (self.direction(x),))
        if self.detector is not None:
            outputs.extend(self.detector(x))
        return tuple(outputs)


def export_networks(direction: nn.Module | None, detector: nn.Module | None, input_hw, shared_trunk: bool = False,
                    opset: int = OPSET) -> bytes:
    """The serialized ONNX model of :class:`NetworkGraph` (eval mode, CPU float32) for input (H, W) =
    ``input_hw``. The models are put in eval mode and must be on the CPU."""
    graph = NetworkGraph(direction, detector, shared_trunk).eval()
    names = output_names(direction is not None, detector is not None, has_steer(direction))
    example = torch.zeros(_EXAMPLE_BATCH, 3, int(input_hw[0]), int(input_hw[1]))
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(graph, (example,), buffer, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    return buffer.getvalue()


def export_checkpoint(checkpoint: str | Path, opset: int = OPSET) -> tuple[bytes, ModelCard]:
    """The ONNX model of one checkpoint (its card in the metadata, ``onnx.checker`` passed) and the card.

    The graph is :func:`export_networks` of the model alone: what perception.onnx_engine runs for
    that checkpoint. Raises perception.checkpoint.CheckpointError for an unusable checkpoint.
    """
    import onnx

    model, card = load_model(checkpoint, "cpu")
    is_direction = card.kind == "direction"
    proto = onnx.load_from_string(export_networks(model if is_direction else None,
                                                  None if is_direction else model, card.input_size, opset=opset))
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), card

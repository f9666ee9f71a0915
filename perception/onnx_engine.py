"""Run the Perceiver's networks with ONNX Runtime on the CPU (the fast path on small CPUs).

The graphs are perception.onnx_export's, the exporter ``truckpilot export`` writes files
with: either built in memory from the PyTorch models when the Perceiver is built (a few
seconds, no file written; :meth:`OnnxNetworks.from_models`), or read from exported files
(:meth:`OnnxNetworks.from_files`). One ``onnxruntime.InferenceSession`` runs per distinct
input: with a shared trunk a single graph computes the trunk once and returns both networks'
outputs. Decoding and NMS stay in PyTorch. A graph may be int8 (perception.quantize writes it,
``truckpilot export --int8``; ``precision`` says which): the same names, the same call.

Measured on the project's 2-core AVX2 CPU (ResNet34 trunk at 96x128, batch 1,
median of 30): PyTorch eager 42.8 ms on 1 thread / 27.9 ms on 2 threads,
ONNX Runtime 25.7 ms on 1 thread / 30.1 ms on 2 threads. One thread is
therefore the default: as fast as PyTorch on both cores, and the second core
stays free for the game (or the simulator), capture and key output.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from perception.onnx_export import (BOX_OUTPUT, CLASS_OUTPUT, DIRECTION_OUTPUT, INPUT_NAME, STEER_OUTPUT,
                                    export_networks, output_names)

#: a graph: serialized ONNX bytes, or the path of an ONNX file
Graph = bytes | str | os.PathLike

__all__ = ["BOX_OUTPUT", "CLASS_OUTPUT", "DIRECTION_OUTPUT", "STEER_OUTPUT", "Graph", "NetworkOutputs", "OnnxNetworks"]


@dataclass(frozen=True)
class NetworkOutputs:
    """Raw network outputs as CPU float32 tensors (None for a network that is not loaded)."""

    direction_logits: Tensor | None  # (B, n_directions)
    cls_logits: Tensor | None  # (B, A, n_classes + 1), background first
    box_deltas: Tensor | None  # (B, A, 4), encoded against the anchors
    steer: Tensor | None = None  # (B,) in [-1, 1], + = right: a direction graph with the steer head


class _Session(NamedTuple):
    """An ONNX Runtime session and its output names, read once (the names key its outputs)."""

    sess: object  # onnxruntime.InferenceSession
    names: tuple[str, ...]


class OnnxNetworks:
    """The direction classifier and/or the SSD detector as ONNX Runtime sessions.

    direction_graph / detector_graph: a graph with that network alone (outputs
    ``direction_logits`` and, when the network has the steer head, ``steer``; ``cls_logits``,
    ``box_deltas``); joint_graph: one graph with both on a shared trunk (all their outputs), instead
    of the other two. A graph without ``steer`` (the classifier alone, or exported before the
    steer output) runs as well; its NetworkOutputs.steer is None. Each graph is ONNX bytes or an
    ONNX file written by ``truckpilot export``; its input and output names are checked.
    threads: ONNX Runtime intra-op threads (1 by default, see the module doc).
    precision: "int8" when the graphs are int8 (perception.quantize made them: their metadata holds
    ``truckpilot_precision`` = "int8", or the Int8Record of a written file), else "fp32".
    Call with the preprocessed batches (B, 3, H, W) float32 (perception.preprocess) -> NetworkOutputs.
    """

    def __init__(self, direction_graph: Graph | None = None, detector_graph: Graph | None = None,
                 joint_graph: Graph | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"ONNX Runtime threads must be >= 1, got {threads}")
        if joint_graph is not None and (direction_graph is not None or detector_graph is not None):
            raise ValueError("give either a joint graph or direction / detector graphs, not both")
        if joint_graph is None and direction_graph is None and detector_graph is None:
            raise ValueError("OnnxNetworks needs at least one graph")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(graph: Graph, direction: bool, detector: bool):
            source = graph if isinstance(graph, bytes) else str(Path(graph))
            sess = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
            inputs = [i.name for i in sess.get_inputs()]
            outputs = [o.name for o in sess.get_outputs()]
            allowed = [output_names(direction, detector, steer) for steer in ((False, True) if direction else (False,))]
            if inputs != [INPUT_NAME] or outputs not in allowed:
                what = "the in-memory graph" if isinstance(graph, bytes) else str(graph)
                raise ValueError(f"{what}: inputs {inputs} / outputs {outputs}; the ONNX engine runs graphs with "
                                 f"input {[INPUT_NAME]} and outputs {' or '.join(map(str, allowed))} (export it "
                                 "with `truckpilot export`)")
            return _Session(sess, tuple(outputs))

        def precision(graph: _Session) -> str:
            from perception.quantize import INT8_KEY, PRECISION_KEY

            metadata = graph.sess.get_modelmeta().custom_metadata_map
            return "int8" if INT8_KEY in metadata else metadata.get(PRECISION_KEY, "fp32")

        self.shared_trunk = joint_graph is not None
        self.threads = threads
        self._joint = session(joint_graph, True, True) if joint_graph is not None else None
        self._direction = session(direction_graph, True, False) if direction_graph is not None else None
        self._detector = session(detector_graph, False, True) if detector_graph is not None else None
        kinds = {precision(s) for s in (self._joint, self._direction, self._detector) if s is not None}
        if len(kinds) != 1:
            raise ValueError(f"the direction and detector graphs must both be float32 or both int8, got {kinds}")
        self.precision = kinds.pop()

    @classmethod
    def from_models(cls, direction: nn.Module | None, detector: nn.Module | None, direction_hw, detector_hw,
                    shared_trunk: bool, threads: int = 1) -> "OnnxNetworks":
        """Graphs exported in memory (perception.onnx_export.export_networks) from the eval-mode CPU
        models (either may be None); input_hw: the model input (H, W) of each; shared_trunk: one graph."""
        if shared_trunk:
            return cls(joint_graph=export_networks(direction, detector, direction_hw, shared_trunk=True),
                       threads=threads)
        return cls(export_networks(direction, None, direction_hw) if direction is not None else None,
                   export_networks(None, detector, detector_hw) if detector is not None else None,
                   threads=threads)

    @classmethod
    def from_files(cls, direction: str | os.PathLike | None = None, detector: str | os.PathLike | None = None,
                   threads: int = 1, joint: str | os.PathLike | None = None) -> "OnnxNetworks":
        """Sessions on files written by ``truckpilot export`` (a direction and/or a detector checkpoint's,
        or ``joint``: one graph of both on a shared trunk, float32 or int8)."""
        return cls(direction, detector, joint, threads=threads)

    @property
    def has_steer(self) -> bool:
        """The direction graph returns the continuous steer (NetworkOutputs.steer is set)."""
        graph = self._joint or self._direction
        return graph is not None and STEER_OUTPUT in graph.names

    @staticmethod
    def _run(graph: _Session, x: Tensor) -> dict[str, Tensor]:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        outputs = graph.sess.run(None, {INPUT_NAME: array})
        return {name: torch.from_numpy(out) for name, out in zip(graph.names, outputs)}

    def __call__(self, x_direction: Tensor | None, x_detector: Tensor | None) -> NetworkOutputs:
        out: dict[str, Tensor] = {}
        if self._joint is not None:
            out = self._run(self._joint, x_direction)
        else:
            if self._direction is not None:
                out.update(self._run(self._direction, x_direction))
            if self._detector is not None:
                out.update(self._run(self._detector, x_detector))
        return NetworkOutputs(out.get(DIRECTION_OUTPUT), out.get(CLASS_OUTPUT), out.get(BOX_OUTPUT),
                              out.get(STEER_OUTPUT))

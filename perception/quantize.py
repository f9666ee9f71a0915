"""int8 static quantisation of the Perceiver's ONNX graphs, and the choice of the CPU engine.

The graph (perception.onnx_export, float32) is quantised by ONNX Runtime's ``quantize_static``:
QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels),
weights int8 symmetric per output channel, activations uint8 asymmetric per tensor (the u8 x s8
products VNNI's ``vpdpbusd`` runs), the activation ranges calibrated (MinMax) on frames from the
user's own sessions, preprocessed by perception.preprocess exactly as at serving time.

An int8 file carries, in its ONNX metadata under :data:`INT8_KEY`, an :class:`Int8Record`: the
SHA-256 of the checkpoint file(s) it was made from, how it was calibrated, and the accuracy check
(int8 beside float32 on held-out labelled frames, training.export runs it). ``drive --engine auto``
(:func:`choose_cpu_engine`) runs it only when the CPU has int8 dot-product instructions
(perception.cpu_features), the file belongs to these very checkpoints, and the check passed;
otherwise it logs one line saying why and runs the float32 graph. The file lives beside the
checkpoint (:func:`int8_cache_path`), where ``truckpilot export CKPT --int8 --calib SESSION...``
writes it when no ``--onnx`` is given.

Graph order with two checkpoints (a joint run's direction and detector, one trunk): one joint
graph, outputs ``direction_logits``, ``cls_logits``, ``box_deltas`` (perception.onnx_export).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perception.cpu_features import CpuFeatures
from perception.onnx_export import INPUT_NAME

log = logging.getLogger(__name__)

#: ONNX metadata key of the Int8Record
INT8_KEY = "truckpilot_int8"
#: ONNX metadata key naming a graph's arithmetic ("int8" in every graph quantize_graph returns)
PRECISION_KEY = "truckpilot_precision"
#: suffix of the int8 graph cached beside its checkpoint(s)
CACHE_SUFFIX = ".int8.onnx"
#: the accuracy check's tolerances, percentage points of int8 - float32 (absolute)
DEFAULT_TOLERANCE_POINTS = {"direction_accuracy": 1.0, "map_50": 2.0}
#: the output layers QuantSettings.float_heads keeps in float32 (node names of perception.onnx_export's graphs,
#: from the module names: SSDNet.heads[i].cls / .box, DirectionNet.head's Linear and its steer_head)
HEAD_NODES = (r"/heads\.\d+/(cls|box)/Conv$", r"/head(/head)?\.\d+/Gemm$", r"/steer_head/Gemm$")
#: the operators quantised: the trunk's and extra blocks' convolutions (ReLU fused), residual adds, the
#: max pool. Not the heads' reshapes / transposes / concatenations: quantised, they would put the float
#: heads' outputs back on an 8-bit grid.
QUANTIZED_OPS = ("Conv", "Add", "MaxPool")
#: engine names (drive --engine): the float32 and the int8 ONNX Runtime graphs
FP32_ENGINE, INT8_ENGINE = "onnxruntime", "onnxruntime-int8"


@dataclass(frozen=True)
class QuantSettings:
    """How a graph is quantised.

    per_channel: int8 weight scales per output channel (else per tensor).
    method: activation range calibration, "minmax", "percentile" or "entropy" (ONNX Runtime's).
    preprocess: run ONNX Runtime's quantisation pre-processing (shape inference, graph
        optimisation) first, as its documentation recommends.
    float_heads: keep the output layers (the detector's class / box convolutions, the direction
        classifier's linear layer: :data:`HEAD_NODES`) in float32, so the logits are not on an 8-bit
        grid. Measured on the 192x144 demo pair (120 validation frames): largest class-probability
        difference to float32 0.06 with float heads, 0.12 without, for ~1 ms more CPU per frame. With
        the head outputs' concatenation quantised too (ONNX Runtime's default operator list) it was
        0.46, 77 background anchors rose over the 0.3 score threshold (none in float32), NMS took
        27 ms instead of 1.5 and the int8 detections matched float32's at mAP@0.5 0.35.
    """

    per_channel: bool = True
    method: str = "minmax"
    preprocess: bool = True
    float_heads: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "format": "QDQ", "weights": "int8 symmetric", "activations": "uint8 asymmetric"}


def _reader(frames: np.ndarray):
    """A CalibrationDataReader feeding (N, 3, H, W) float32 ``frames`` one (1, 3, H, W) batch at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(frames):
                return None
            self.index += 1
            return {INPUT_NAME: np.ascontiguousarray(frames[self.index - 1:self.index], np.float32)}

        def rewind(self) -> None:
            self.index = 0

    return FrameReader()


def quantize_graph(graph: bytes, calibration: np.ndarray, settings: QuantSettings = QuantSettings()) -> bytes:
    """The int8 QDQ graph of a float32 ``graph`` (serialized ONNX with input ``input``), activation
    ranges calibrated on ``calibration``: (N, 3, H, W) float32, frames preprocessed as at serving time
    (perception.preprocess; N of a few dozen frames from the user's sessions is plenty). Metadata of
    the float32 graph (the model card) is kept, and :data:`PRECISION_KEY` says "int8"."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibration = np.asarray(calibration, np.float32)
    if calibration.ndim != 4 or calibration.shape[1] != 3 or len(calibration) == 0:
        raise ValueError(f"calibration frames must be (N, 3, H, W) with N >= 1, got {calibration.shape}")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if settings.method not in methods:
        raise ValueError(f"unknown calibration method {settings.method!r}; use one of {', '.join(methods)}")
    metadata = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
    with tempfile.TemporaryDirectory(prefix="truckpilot-int8-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(graph)
        if settings.preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        excluded = []
        if settings.float_heads:
            import re

            excluded = [n.name for n in onnx.load(str(src)).graph.node
                        if any(re.search(pattern, n.name) for pattern in HEAD_NODES)]
        quantize_static(str(src), str(out), _reader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=settings.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=methods[settings.method],
                        nodes_to_exclude=excluded, op_types_to_quantize=list(QUANTIZED_OPS),
                        extra_options={"CalibTensorRangeSymmetric": False})
        proto = onnx.load(str(out))
    for key, value in {**metadata, PRECISION_KEY: "int8"}.items():
        if not any(p.key == key for p in proto.metadata_props):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    return proto.SerializeToString()


def checkpoint_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a checkpoint file: what ties an int8 graph to the weights it was made from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digests(direction: str | os.PathLike | None, detector: str | os.PathLike | None) -> dict[str, str]:
    """{"direction": sha256, "detector": sha256} of the checkpoints given (None left out)."""
    return {kind: checkpoint_digest(path) for kind, path in (("direction", direction), ("detector", detector))
            if path}


def int8_cache_path(direction: str | os.PathLike | None, detector: str | os.PathLike | None) -> Path:
    """Where the int8 graph of these checkpoints lives: beside them, named after both,
    e.g. ``runs/joint/direction+detector.int8.onnx`` (one checkpoint: ``direction.int8.onnx``)."""
    paths = [Path(p) for p in (direction, detector) if p]
    if not paths:
        raise ValueError("int8_cache_path needs at least one checkpoint")
    return paths[0].parent / ("+".join(p.stem for p in paths) + CACHE_SUFFIX)


@dataclass(frozen=True)
class Int8Check:
    """int8 beside float32 (both ONNX Runtime, same decoding) on held-out labelled frames.

    figures: {"fp32": {"direction_accuracy", "map_50"}, "int8": {...}} on the 0..1 scale;
    delta_points: int8 - fp32, percentage points; tolerance_points: largest |delta| allowed;
    frames: frames measured; sessions: where they came from; held_out: how they were held out.
    """

    figures: dict[str, dict[str, float]]
    delta_points: dict[str, float]
    tolerance_points: dict[str, float]
    frames: int
    sessions: tuple[str, ...]
    held_out: str

    @property
    def passed(self) -> bool:
        return bool(self.delta_points) and all(abs(self.delta_points[k]) <= self.tolerance_points.get(k, 0.0)
                                               for k in self.delta_points)

    @classmethod
    def compare(cls, fp32: dict[str, float], int8: dict[str, float], frames: int, sessions: Sequence[str],
                held_out: str, tolerance_points: dict[str, float] | None = None) -> "Int8Check":
        """The check of two figure sets (keys "direction_accuracy" and/or "map_50", 0..1)."""
        tolerance = dict(DEFAULT_TOLERANCE_POINTS if tolerance_points is None else tolerance_points)
        delta = {k: round(100.0 * (int8[k] - fp32[k]), 2) for k in tolerance if k in fp32 and k in int8}
        return cls({"fp32": dict(fp32), "int8": dict(int8)}, delta, tolerance, int(frames), tuple(sessions),
                   held_out)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sessions": list(self.sessions), "passed": self.passed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Int8Check":
        return cls(d["figures"], d["delta_points"], d["tolerance_points"], d["frames"], tuple(d["sessions"]),
                   d["held_out"])


@dataclass(frozen=True)
class Int8Record:
    """What an int8 graph is: checkpoints {kind: sha256} it was made from; input_size (H, W);
    calibration {"sessions", "frames", settings...}; check: the accuracy check (None: not run)."""

    checkpoints: dict[str, str]
    input_size: tuple[int, int]
    calibration: dict[str, Any]
    check: Int8Check | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = {"checkpoints": self.checkpoints, "input_size": list(self.input_size), "calibration": self.calibration,
             "check": self.check.to_dict() if self.check else None, "extra": self.extra}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Int8Record":
        d = json.loads(text)
        check = Int8Check.from_dict(d["check"]) if d.get("check") else None
        return cls(d["checkpoints"], tuple(d["input_size"]), d["calibration"], check, d.get("extra", {}))


def with_record(graph: bytes, record: Int8Record) -> bytes:
    """``graph`` with ``record`` in its metadata (replacing an earlier one)."""
    import onnx

    proto = onnx.load_from_string(graph)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != INT8_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (INT8_KEY, record.to_json())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def read_record(path: str | os.PathLike) -> Int8Record | None:
    """The Int8Record of an ONNX file (None: a file without one, e.g. a float32 graph)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == INT8_KEY:
            return Int8Record.from_json(entry.value)
    return None


@dataclass(frozen=True)
class EngineChoice:
    """The CPU engine picked for a pair of checkpoints: engine (FP32_ENGINE or INT8_ENGINE), the int8
    graph file when int8 (else None), and reason: one line saying why."""

    engine: str
    int8_graph: Path | None
    reason: str


def choose_cpu_engine(direction: str | os.PathLike | None, detector: str | os.PathLike | None,
                      features: CpuFeatures, int8_graph: str | os.PathLike | None = None) -> EngineChoice:
    """int8 where it pays and was checked, else float32 ONNX Runtime, with the reason.

    int8 needs all of: a CPU with int8 dot-product instructions (``features``, from
    perception.cpu_features.probe_cpu_features or injected); the int8 graph (``int8_graph``, default
    :func:`int8_cache_path` beside the checkpoints) present; its record naming these checkpoints'
    SHA-256; and its accuracy check run and passed. Does not log: the caller logs ``reason`` once.
    """
    path = Path(int8_graph) if int8_graph else int8_cache_path(direction, detector)
    if not features.has_int8_dot:
        return EngineChoice(FP32_ENGINE, None, f"int8 off: the CPU has no int8 dot-product instructions "
                                               f"({features.describe()}); running float32")
    if not path.is_file():
        return EngineChoice(FP32_ENGINE, None, f"int8 off: no calibrated int8 graph at {path} (write one with "
                                               f"`truckpilot export CKPT... --int8 --calib SESSION...`); "
                                               f"running float32")
    try:
        record = read_record(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a reason, not a crash
        return EngineChoice(FP32_ENGINE, None, f"int8 off: {path} unreadable ({type(exc).__name__}: {exc}); "
                                               f"running float32")
    if record is None:
        return EngineChoice(FP32_ENGINE, None, f"int8 off: {path} has no int8 record; running float32")
    want = checkpoint_digests(direction, detector)
    if record.checkpoints != want:
        return EngineChoice(FP32_ENGINE, None, f"int8 off: {path} was calibrated for other checkpoints "
                                               f"(re-export it); running float32")
    if record.check is None:
        return EngineChoice(FP32_ENGINE, None, f"int8 off: {path} has no accuracy check; running float32")
    if not record.check.passed:
        return EngineChoice(FP32_ENGINE, None, f"int8 off: {path} failed its accuracy check (int8 - fp32 "
                                               f"{record.check.delta_points} points, tolerance "
                                               f"{record.check.tolerance_points}); running float32")
    return EngineChoice(INT8_ENGINE, path, f"int8 on: {features.describe()}; {path.name} checked on "
                                           f"{record.check.frames} held-out frames, int8 - fp32 "
                                           f"{record.check.delta_points} points")

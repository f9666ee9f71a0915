"""The Perceiver: frames in (HxWx3 uint8 RGB, any size), plain Perception results out.

Stages, each timed in ``Perception.timings_ms``:
  "preprocess"  perception.preprocess: resize to the model input (uint8), normalise with the card's
                mean/std: the same function training and ``truckpilot export`` use
  "trunk"       only when the trunk is shared (see below): the ResNet trunk, once
  "direction"   the direction classifier (its head only when the trunk is shared)
  "detector"    the SSD (its extra blocks and heads only when the trunk is shared)
  "networks"    instead of the three above with ``engine="onnxruntime"``: both networks in
                ONNX Runtime (one graph when the trunk is shared)
  "decode_nms"  box decoding, score threshold, NMS, mapping boxes to frame pixels (through the
                input's letterbox, perception.preprocess.Letterbox: the bars map outside the frame
                and are clipped)
  "total"       the whole call
For ``perceive_batch`` the figures are the batch's wall time divided by the batch size.

Shared trunk: when both models are given, take the same input size and
normalisation, and have the same trunk object or identical trunk weights, the
trunk runs once per frame and feeds both heads (the speed path: both networks
for the price of one trunk).

A missing model: ``direction_model=None`` gives direction "straight" with
empty ``direction_probs``; ``detector_model=None`` gives no detections.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from perception.boxes import clip_boxes_np
from perception.checkpoint import ModelCard, load_model
from perception.onnx_export import has_steer
from perception.preprocess import Letterbox, Preprocessor
from perception.types import Detection, Perception

log = logging.getLogger(__name__)

#: Inference engines: eager PyTorch (any device) and ONNX Runtime (CPU).
ENGINES = ("torch", "onnxruntime")

#: Direction reported when no direction model is loaded.
NO_DIRECTION = "straight"


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None`` = CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _same_trunk(a: nn.Module, b: nn.Module) -> bool:
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Perceiver:
    """Runs the direction classifier and the SSD detector on frames.

    direction_model / detector_model: a DirectionNet / SSDNet (or None); they are
    moved to ``device`` and put in eval mode (the caller's objects, not copies).
    Cards default to ``ModelCard.for_model``. device: "cpu", "cuda" or None (auto).
    score_threshold, iou_threshold, top_k: detection post-processing.
    bf16: run the networks under ``torch.autocast(dtype=torch.bfloat16)`` (CPUs with
        AVX512-BF16/AMX, and GPUs): ~1.4-1.8x faster trunk on the project's CPU; on the
        overfit test models directions and classes agree with float32 and boxes move by
        < 2 model-input px (measured 1.6). Decoding and NMS stay float32. On CPUs without
        native bf16 (AVX2 only) it is 2-4x slower: measure before using it.
    engine: "torch" (eager PyTorch, any device) or "onnxruntime" (CPU only: the networks are
        exported in memory and run by ONNX Runtime on ``threads`` threads; see
        ``perception.onnx_engine``). ``threads`` is ignored by "torch" (torch.set_num_threads).
    networks: with engine "onnxruntime", ready-made ONNX Runtime networks to run instead of graphs
        exported from the models: e.g. the int8 graph of these checkpoints (perception.quantize); one
        joint graph when the trunk is shared, else one per model. ``precision`` says which ran.
    """

    def __init__(
        self,
        direction_model: nn.Module | None,
        detector_model: nn.Module | None,
        direction_card: ModelCard | None = None,
        detector_card: ModelCard | None = None,
        device: str | torch.device | None = None,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.45,
        top_k: int = 100,
        bf16: bool = False,
        engine: str = "torch",
        threads: int = 1,
        networks=None,
    ) -> None:
        if direction_model is None and detector_model is None:
            raise ValueError("Perceiver needs at least one of direction_model and detector_model")
        if engine not in ENGINES:
            raise ValueError(f"unknown Perceiver engine {engine!r}; use one of {', '.join(ENGINES)}")
        self.device = pick_device(device)
        if engine == "onnxruntime" and (self.device.type != "cpu" or bf16):
            raise ValueError(f"engine 'onnxruntime' runs float32 on the CPU; got device {self.device} and "
                             f"bf16={bf16}: use engine 'torch' for CUDA or bf16")
        self.engine = engine
        self.score_threshold, self.iou_threshold, self.top_k = score_threshold, iou_threshold, top_k
        self.bf16 = bool(bf16)
        self.direction_model = direction_model.to(self.device).eval() if direction_model is not None else None
        # a DirectionNet with the continuous steering head (perception.direction): Perception.steer
        self._steer = has_steer(direction_model)
        self.detector_model = detector_model.to(self.device).eval() if detector_model is not None else None
        if direction_model is not None and direction_card is None:
            direction_card = ModelCard.for_model(direction_model)
        if detector_model is not None and detector_card is None:
            detector_card = ModelCard.for_model(detector_model)
        for card, kind in ((direction_card, "direction"), (detector_card, "detector")):
            if card is not None and card.kind != kind:
                raise ValueError(f"the {kind} model was given a {card.kind!r} model card")
        self.direction_card, self.detector_card = direction_card, detector_card
        self._dir_input = Preprocessor.for_card(direction_card, self.device) if direction_model is not None else None
        self._det_input = Preprocessor.for_card(detector_card, self.device) if detector_model is not None else None
        self.shared_trunk = (
            self._dir_input is not None
            and self._det_input is not None
            and self._dir_input.key == self._det_input.key
            and _same_trunk(self.direction_model.trunk, self.detector_model.trunk)
        )
        self._onnx = None
        if networks is not None and engine != "onnxruntime":
            raise ValueError(f"ready-made ONNX networks run with engine 'onnxruntime', not {engine!r}")
        if networks is not None and networks.shared_trunk != self.shared_trunk:
            raise ValueError(f"the ONNX networks are {'one joint graph' if networks.shared_trunk else 'per model'}"
                             f" but the trunk is {'shared' if self.shared_trunk else 'per model'}")
        if engine == "onnxruntime":
            from perception.onnx_engine import OnnxNetworks

            self._onnx = networks if networks is not None else OnnxNetworks.from_models(
                self.direction_model, self.detector_model,
                direction_card.input_size if direction_card else None,
                detector_card.input_size if detector_card else None, self.shared_trunk, threads)
        log.info("Perceiver on %s (%s); trunk %s", self.device,
                 engine if engine == "torch" else f"onnxruntime {self.precision}, {self._onnx.threads} thread(s)",
                 "shared (runs once)" if self.shared_trunk else "per model")

    @property
    def precision(self) -> str:
        """The networks' arithmetic: "fp32", "bf16" (torch autocast) or "int8" (an int8 ONNX graph)."""
        if self._onnx is not None:
            return self._onnx.precision
        return "bf16" if self.bf16 else "fp32"

    @classmethod
    def from_checkpoints(
        cls,
        direction_path: str | Path | None,
        detector_path: str | Path | None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> "Perceiver":
        """A Perceiver from ``.safetensors`` checkpoints (either path may be None)."""
        dev = pick_device(device)
        direction, direction_card = load_model(direction_path, dev) if direction_path else (None, None)
        detector, detector_card = load_model(detector_path, dev) if detector_path else (None, None)
        return cls(direction, detector, direction_card, detector_card, dev, **kwargs)

    def __call__(self, frame: np.ndarray) -> Perception:
        """One frame (HxWx3 uint8 RGB, any size) -> Perception, boxes in that frame's pixels."""
        return self.perceive_batch([frame])[0]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def perceive_batch(self, frames: list[np.ndarray]) -> list[Perception]:
        """Frames (each HxWx3 uint8 RGB, sizes may differ) -> one Perception each."""
        if len(frames) == 0:
            return []
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                got = f"{type(f).__name__} {getattr(f, 'shape', '')} {getattr(f, 'dtype', '')}"
                raise ValueError(f"frame {i}: expected an HxWx3 uint8 RGB numpy array, got {got}")
            if f.shape[0] < 2 or f.shape[1] < 2:
                raise ValueError(f"frame {i}: image {f.shape[1]}x{f.shape[0]} is too small")
        timings: dict[str, float] = {}
        start = time.perf_counter()

        def lap(name: str, since: float) -> float:
            self._sync()
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + (now - since) * 1000.0
            return now

        t = start
        x_dir = self._dir_input(frames) if self._dir_input is not None else None
        if self._det_input is not None:
            x_det = x_dir if self.shared_trunk else self._det_input(frames)
        t = lap("preprocess", t)

        dir_logits = cls_logits = box_deltas = steer = None
        if self._onnx is not None:  # steer: None from a graph exported without the steer output
            outputs = self._onnx(x_dir, x_det if self._det_input is not None else None)
            dir_logits, cls_logits, box_deltas = outputs.direction_logits, outputs.cls_logits, outputs.box_deltas
            steer = outputs.steer
            t = lap("networks", t)
        else:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                if self.shared_trunk:
                    levels = self.direction_model.trunk.forward_levels(x_dir)
                    t = lap("trunk", t)
                    if self._steer:
                        dir_logits, steer = self.direction_model.forward_head(levels[-1], with_steer=True)
                    else:
                        dir_logits = self.direction_model.forward_head(levels[-1])
                    t = lap("direction", t)
                    cls_logits, box_deltas = self.detector_model.forward_head(levels)
                    t = lap("detector", t)
                else:
                    if self.direction_model is not None:
                        if self._steer:
                            dir_logits, steer = self.direction_model(x_dir, with_steer=True)
                        else:
                            dir_logits = self.direction_model(x_dir)
                        t = lap("direction", t)
                    if self.detector_model is not None:
                        cls_logits, box_deltas = self.detector_model(x_det)
                        t = lap("detector", t)

        probs = torch.softmax(dir_logits.float(), dim=1).cpu().numpy() if dir_logits is not None else None
        steers = steer.float().cpu().tolist() if steer is not None else None
        batch_dets = (
            self.detector_model.detect(cls_logits, box_deltas, self.score_threshold, self.iou_threshold, self.top_k)
            if cls_logits is not None else None
        )
        detections = [self._to_frame(batch_dets[i], frames[i]) if batch_dets else () for i in range(len(frames))]
        t = lap("decode_nms", t)
        timings["total"] = (t - start) * 1000.0
        n = len(frames)
        per_frame = {k: v / n for k, v in timings.items()}
        results = []
        for i in range(n):
            if probs is not None:
                names = self.direction_card.classes
                direction = names[int(np.argmax(probs[i]))]
                direction_probs = {name: float(p) for name, p in zip(names, probs[i])}
            else:
                direction, direction_probs = NO_DIRECTION, {}
            results.append(Perception(direction, direction_probs, detections[i], dict(per_frame),
                                      steer=float(steers[i]) if steers is not None else None))
        return results

    def _to_frame(self, dets: dict[str, torch.Tensor], frame: np.ndarray) -> tuple[Detection, ...]:
        """Model-input boxes -> Detections in the frame's pixels, clipped, empty boxes dropped."""
        h_in, w_in = self.detector_card.input_size
        h, w = frame.shape[:2]
        boxes = dets["boxes"].float().cpu().numpy().astype(np.float64)
        boxes = clip_boxes_np(Letterbox.fit((h, w), (h_in, w_in)).boxes_to_frame(boxes), (h, w))
        scores = dets["scores"].float().cpu().numpy()
        labels = dets["labels"].cpu().numpy()
        names = self.detector_card.classes
        out = []
        for box, score, label in zip(boxes, scores, labels):
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Detection(tuple(float(v) for v in box), names[int(label) - 1], float(score)))
        return tuple(out)

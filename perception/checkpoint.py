"""Checkpoints: ONE ``.safetensors`` file per model, the model card in its header metadata.

Loading never executes code from a file: only the safetensors format is read
(a pickle or zip ``.pt``/``.pth`` is refused before anything parses it), the
card is JSON, and the model is rebuilt from the card's config and loaded strictly.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception.config import AnchorConfig, DetectorConfig, DirectionConfig

#: Header metadata key that holds the model card JSON.
CARD_KEY = "truckpilot_card"
#: Version of the card layout; bump when a field changes meaning.
FORMAT_VERSION = 1
MODEL_KINDS: tuple[str, ...] = ("direction", "detector")
#: Largest safetensors JSON header accepted (the format's own limit is 100 MB).
_MAX_HEADER_BYTES = 100_000_000


class CheckpointError(Exception):
    """A checkpoint file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is and how to feed it.

    kind: "direction" or "detector".
    config: the architecture config dict (DirectionConfig / DetectorConfig.to_dict()).
    classes: output class names (detector: object classes, background excluded).
    input_size: (H, W) of the model input, pixels.
    mean, std: RGB normalisation on the 0..1 scale.
    anchors: AnchorConfig dict (detector) or None.
    provenance: free-form training record (data, epochs, metrics, created, git commit, ...).
    format_version: card layout version (FORMAT_VERSION).
    """

    kind: str
    config: dict[str, Any]
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    anchors: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"ModelCard.kind={self.kind!r}; must be one of {MODEL_KINDS}")
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @classmethod
    def for_model(cls, model: nn.Module, provenance: dict[str, Any] | None = None) -> "ModelCard":
        """The card of a DirectionNet or SSDNet, from its config; ``created`` (UTC ISO time)
        is added to the provenance when missing."""
        config = getattr(model, "config", None)
        if isinstance(config, DirectionConfig):
            kind, anchors = "direction", None
        elif isinstance(config, DetectorConfig):
            kind, anchors = "detector", config.anchors.to_dict()
        else:
            raise TypeError(f"ModelCard.for_model needs a DirectionNet or SSDNet, got {type(model).__name__}")
        prov = dict(provenance or {})
        prov.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return cls(kind, config.to_dict(), config.classes, config.input_size, config.mean, config.std, anchors, prov)

    def model_config(self) -> DirectionConfig | DetectorConfig:
        """The architecture config this card describes."""
        return (DirectionConfig if self.kind == "direction" else DetectorConfig).from_dict(self.config)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("classes", "input_size", "mean", "std"):
            d[key] = list(d[key])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        return cls(**d)


def build_model(card: ModelCard, init_trunk_weights: bool = False) -> nn.Module:
    """An untrained model of the card's architecture (trunk weights not loaded by default)."""
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    config = card.model_config()
    net = DirectionNet if card.kind == "direction" else SSDNet
    return net(config, init_trunk_weights=init_trunk_weights)


def save_model(path: str | os.PathLike, model: nn.Module, card: ModelCard | None = None) -> Path:
    """Write ``model``'s weights and ``card`` (default: ModelCard.for_model(model)) to one
    ``.safetensors`` file, atomically: a temp file in the same folder, flushed and
    fsynced, then renamed over ``path``. Returns the path."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are .safetensors files; name it {path.with_suffix('.safetensors')}")
    card = card if card is not None else ModelCard.for_model(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = save(tensors, metadata={CARD_KEY: card.to_json()})
    return write_atomically(path, payload)


def write_atomically(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` so that a crash leaves the old file or the new one, never a torn
    one: a temp file in the same folder, flushed and fsynced, renamed over ``path``, the folder fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _check_format(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, without parsing it further."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
    looks_safetensors = (header_len is not None and header_len <= _MAX_HEADER_BYTES and 8 + header_len <= size
                         and head[8:9] == b"{")
    if looks_safetensors:
        return
    # only now: a safetensors header length can itself start with byte 0x80 (e.g. 29,824 bytes)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: this is a pickle/zip PyTorch file (torch.save); TruckPilot only loads .safetensors "
            "checkpoints because pickles can run code when loaded. Re-save it with perception.checkpoint.save_model."
        )
    if size < 10:
        raise CheckpointError(f"{path}: file is {size} bytes, too short to be a safetensors checkpoint (truncated?)")
    if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
        raise CheckpointError(
            f"{path}: not a safetensors file or truncated (header says {header_len} bytes, file has {size})"
        )
    raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)")


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of a checkpoint, without loading its weights."""
    path = Path(path)
    _check_format(path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: damaged safetensors file ({exc})") from exc
    return _card_from_metadata(path, metadata)


def _card_from_metadata(path: Path, metadata: dict[str, str]) -> ModelCard:
    if CARD_KEY not in metadata:
        raise CheckpointError(
            f"{path}: no model card ({CARD_KEY!r} missing from the safetensors metadata); "
            "save checkpoints with perception.checkpoint.save_model"
        )
    try:
        card = ModelCard.from_dict(json.loads(metadata[CARD_KEY]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: model card is not valid ({exc})") from exc
    if card.format_version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: card format version {card.format_version} is newer than this TruckPilot "
            f"understands ({FORMAT_VERSION}); update TruckPilot"
        )
    try:
        config = card.model_config()
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the card's config cannot build a model ({exc})") from exc
    problems = []
    if tuple(config.classes) != tuple(card.classes):
        problems.append(f"classes {list(card.classes)} vs config classes {list(config.classes)}")
    if tuple(config.input_size) != tuple(card.input_size):
        problems.append(f"input_size {card.input_size} vs config {config.input_size}")
    if tuple(config.mean) != tuple(card.mean) or tuple(config.std) != tuple(card.std):
        problems.append("mean/std differ from the config's")
    if card.kind == "detector" and card.anchors is not None:
        if AnchorConfig.from_dict(card.anchors) != config.anchors:
            problems.append("anchors differ from the config's")
    if problems:
        raise CheckpointError(f"{path}: inconsistent model card: " + "; ".join(problems))
    return card


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the model a checkpoint describes and load its weights strictly.

    Returns (model in eval mode on ``device``, card). Raises CheckpointError naming
    the file for: a pickle/zip file, a truncated or damaged file, a missing or bad
    card, weights that do not fit the card's architecture (missing/unexpected keys,
    wrong shapes such as a different class count).
    """
    path = Path(path)
    card = read_card(path)
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: damaged safetensors file ({exc})") from exc
    model = build_model(card)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(tensors))
        if tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})")
        if wrong:
            parts.append(f"shape mismatch: {wrong[:3]}")
        raise CheckpointError(
            f"{path}: weights do not match the card's {card.kind} architecture "
            f"({len(card.classes)} classes): " + "; ".join(parts)
        )
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card

"""The published starting pair: one fp16 ``.safetensors`` file holding a joint run's direction and
detector checkpoints with their shared ResNet34 trunk stored once.

Every TruckPilot tool loads a pair of ordinary checkpoints (``perception.checkpoint``: one model,
float32, its card in the header). Two such files repeat the 21.3 M-parameter trunk; the published
file keeps it once and in fp16 (half the bytes), so the pair is ~48 MB instead of ~190 MB.

Layout of the packed file:

* tensors ``trunk.*`` (the shared trunk), ``direction.<key>`` and ``detector.<key>`` (everything
  else of each model, with its own key); floating tensors fp16, integer buffers as they were;
* header metadata ``truckpilot_pair``: JSON ``{"format_version": 1, "cards": {"direction": card,
  "detector": card}, "notes": {...}}`` with each model's card (``ModelCard.to_dict()``).

``unpack_pair`` turns it back into the two ordinary float32 checkpoints, in a folder named by the
file's content digest (once; later calls reuse them), and returns their paths.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from perception.checkpoint import CARD_KEY, CheckpointError, ModelCard, read_card, write_atomically
from perception.quantize import checkpoint_digest

#: header metadata key of the packed pair
PAIR_KEY = "truckpilot_pair"
PAIR_FORMAT_VERSION = 1
PARTS = ("direction", "detector")
_TRUNK = "trunk."
#: where the project publishes its starting pair (see ``truckpilot pretrain``)
PUBLISHED_PAIR = Path(__file__).resolve().parent / "weights" / "start.safetensors"


#: environment variable naming another packed pair to use instead, or "none" for no starting pair
START_ENV = "TRUCKPILOT_START"
#: the unpacked pair's notes (``pack_pair``'s ``notes``), beside its checkpoints
PAIR_NOTES = "pair.json"


def published_pair() -> Path | None:
    """The starting pair the tools default to: ``$TRUCKPILOT_START`` when set ("none": no pair; a
    path: that packed pair, which must exist), else the repository's file when this checkout has it."""
    chosen = os.environ.get(START_ENV, "")
    if chosen == "none":
        return None
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise CheckpointError(f"${START_ENV}={chosen}: no such file; give a packed pair "
                                  f"(`truckpilot pretrain --publish DIR` writes DIR/start.safetensors) or 'none'")
        return path
    return PUBLISHED_PAIR if PUBLISHED_PAIR.is_file() else None


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/truckpilot`` (default ``~/.cache/truckpilot``): where unpacked pairs go."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "truckpilot"


def pack_pair(direction: str | os.PathLike, detector: str | os.PathLike, out: str | os.PathLike,
              notes: dict[str, Any] | None = None) -> Path:
    """Pack two checkpoints of one joint run into ``out`` (fp16, trunk once). Raises CheckpointError
    when the two trunks differ (not one joint run's pair). Written atomically (temp file, rename)."""
    from safetensors.torch import load_file, save

    paths = {"direction": Path(direction), "detector": Path(detector)}
    cards = {part: read_card(p) for part, p in paths.items()}
    for part, card in cards.items():
        if card.kind != part:
            raise CheckpointError(f"{paths[part]}: a {card.kind} checkpoint where the {part} one belongs")
    tensors = {part: load_file(str(p)) for part, p in paths.items()}
    trunk = {k: v for k, v in tensors["direction"].items() if k.startswith(_TRUNK)}
    other = {k: v for k, v in tensors["detector"].items() if k.startswith(_TRUNK)}
    if trunk.keys() != other.keys() or any(not torch.equal(trunk[k], other[k]) for k in trunk):
        raise CheckpointError(f"{paths['direction']} and {paths['detector']} have different trunks: pack the two "
                              "checkpoints of one joint run (RUN/best.direction + RUN/best.detector.safetensors)")
    packed = {k: _half(v) for k, v in trunk.items()}
    for part in PARTS:
        packed.update({f"{part}.{k}": _half(v) for k, v in tensors[part].items() if not k.startswith(_TRUNK)})
    meta = {"format_version": PAIR_FORMAT_VERSION, "cards": {p: cards[p].to_dict() for p in PARTS},
            "notes": notes or {}}
    return write_atomically(Path(out), save(packed, metadata={PAIR_KEY: json.dumps(meta, sort_keys=True)}))


def read_pair_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The packed file's metadata (cards and notes) without loading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: starting pair file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); fetch or re-pack it") from exc
    if PAIR_KEY not in metadata:
        raise CheckpointError(f"{path}: not a packed starting pair ({PAIR_KEY!r} missing from its metadata); "
                              "write one with perception.starting_pair.pack_pair")
    meta = json.loads(metadata[PAIR_KEY])
    if meta.get("format_version", 0) > PAIR_FORMAT_VERSION:
        raise CheckpointError(f"{path}: pair format {meta['format_version']} is newer than this TruckPilot "
                              f"understands ({PAIR_FORMAT_VERSION}); update TruckPilot")
    return meta


def unpack_pair(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The two float32 checkpoints of the packed file at ``path``: {"direction": path, "detector": path}
    in ``cache_dir`` (default ``default_cache_dir()``) / ``start-<digest>/``, written on first use, with
    the pair's notes (its recipe and lineage) beside them in ``pair.json`` (``PAIR_NOTES``): a run that
    continues the pair (``truckpilot pretrain --init``) names its origin from there."""
    from safetensors.torch import load_file, save

    path = Path(path)
    meta = read_pair_meta(path)
    folder = Path(cache_dir or default_cache_dir()) / f"start-{checkpoint_digest(path)[:16]}"
    out = {part: folder / f"best.{part}.safetensors" for part in PARTS}
    notes = folder / PAIR_NOTES
    if all(p.is_file() for p in out.values()):
        if not notes.is_file():
            write_atomically(notes, json.dumps(meta.get("notes") or {}, indent=1).encode())
        return out
    tensors = load_file(str(path))
    trunk = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(_TRUNK)}
    for part in PARTS:
        card = ModelCard.from_dict(meta["cards"][part])
        prefix = f"{part}."
        own = {k[len(prefix):]: v.float() if v.is_floating_point() else v
               for k, v in tensors.items() if k.startswith(prefix)}
        write_atomically(out[part], save({**trunk, **own}, metadata={CARD_KEY: card.to_json()}))
        read_card(out[part])
    write_atomically(notes, json.dumps(meta.get("notes") or {}, indent=1).encode())
    return out


def _half(t: torch.Tensor) -> torch.Tensor:
    return (t.half() if t.is_floating_point() else t).contiguous()

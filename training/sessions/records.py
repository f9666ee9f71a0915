"""The session format's value types, their validation, and the checksummed line codec.

A session is a directory::

    manifest.json      SessionManifest as JSON, written once, atomically (tmp + fsync + rename)
    manifest.backup.json   the same bytes; read when manifest.json is damaged, restored by ``verify``
    frames.jsonl       one FrameRecord per line, append-only; each line is
                       ``<json>\\t<crc32 of the json, 8 hex digits>\\n``
    edits.jsonl        label edits and soft deletes, same line format, append-only,
                       replayed over the frame records on open
    images/pack-NNNNN.bin   append-only image packs: the encoded PNG/JPEG files of frames
                       NNNNN*1000 .. NNNNN*1000+999 back to back; a record names its pack,
                       byte offset, length and CRC-32 (``sessions export`` writes them out
                       as one plain image file per frame)
    quarantine.jsonl   lines that ``verify`` moved out, each with its reason
    quarantine/        image bytes no record points at, moved there by ``verify``
    .lock              held (flock) by the one process writing the session

Why packs and not one file per image: creating a file costs ~0.7 ms of CPU on
this project's ext4 disks against ~7 us for an append (measured, see
training/RESULTS.md, "The session store"), and the >= 300 frames/s budget is ~3 ms per frame.

Ordering makes a crash safe: a frame's image bytes are in its pack before its
record line is written, so a record never points at a half-written image;
a line cut short by a kill is recognised (no newline / bad checksum) and ignored,
and bytes at the end of a pack that no record names are crash debris.

Conventions: boxes are xyxy in pixels of the frame, ``0 <= x1 < x2 <= width``,
``0 <= y1 < y2 <= height``; images are HxWx3 uint8 RGB; timestamps are seconds
since the session started (``SessionManifest.created``).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

FORMAT_NAME = "truckpilot-session"
FORMAT_VERSION = 2  # 1: one image file per frame (early development only); 2: image packs

MANIFEST_FILE = "manifest.json"
MANIFEST_BACKUP_FILE = "manifest.backup.json"  # identical copy: a damaged manifest never costs the session
FRAMES_FILE = "frames.jsonl"
EDITS_FILE = "edits.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"
QUARANTINE_DIR = "quarantine"
IMAGES_DIR = "images"
LOCK_FILE = ".lock"

#: Who produced a label.
LABEL_SOURCES: tuple[str, ...] = ("sim", "keys", "model", "human")
#: Supported image encodings (why the defaults: training/sessions/README.md; measured: training/RESULTS.md).
IMAGE_FORMATS: tuple[str, ...] = ("png", "jpg")
FRAMES_PER_PACK = 1000


class SessionError(Exception):
    """A session on disk cannot be read or written as asked. The message names the path and the fix."""


class SessionDiskFullError(SessionError):
    """The disk filled up while recording; everything appended before it is readable."""


@dataclass(frozen=True)
class SessionManifest:
    """What a session is: written once when the session is created.

    id: unique session id (``YYYYmmddTHHMMSSZ-xxxxxx``).
    created: ISO 8601 UTC time of the session start (timestamps count from here).
    source: where frames came from, e.g. ``{"kind": "sim", "seed": 3, "time_of_day": "day",
        "weather": "clear"}`` or ``{"kind": "window", "title": "TruckSim"}``.
    width, height: frame size in pixels (every image has exactly this size).
    fps: nominal frames per second (0 when frames come as fast as possible).
    versions: software versions (truckpilot, python, numpy, opencv, pygame ...).
    label_schema: ``{"directions": [...], "classes": [...]}``.
    image_format: "png" or "jpg".
    """

    id: str
    created: str
    source: dict
    width: int
    height: int
    fps: float
    versions: dict
    label_schema: dict
    image_format: str

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(self.label_schema.get("directions", ()))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.label_schema.get("classes", ()))

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "id": self.id,
            "created": self.created,
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "versions": self.versions,
            "label_schema": self.label_schema,
            "image_format": self.image_format,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SessionManifest":
        """Validate a parsed manifest; ``where`` (the file path) is named in errors."""
        fix = "the manifest is damaged; restore it from a copy, or re-record the session"
        if not isinstance(data, dict):
            raise SessionError(f"{where}: manifest is not a JSON object; {fix}")
        if data.get("format") != FORMAT_NAME:
            raise SessionError(f"{where}: not a TruckPilot session manifest (format={data.get('format')!r}); {fix}")
        if data.get("format_version") != FORMAT_VERSION:
            raise SessionError(
                f"{where}: session format version {data.get('format_version')!r} is not supported "
                f"(this TruckPilot reads version {FORMAT_VERSION}); "
                + ("re-record it: version 1 came from an early development build"
                   if data.get("format_version") == 1 else "upgrade TruckPilot")
            )
        try:
            manifest = cls(
                id=str(data["id"]),
                created=str(data["created"]),
                source=dict(data["source"]),
                width=int(data["width"]),
                height=int(data["height"]),
                fps=float(data["fps"]),
                versions=dict(data["versions"]),
                label_schema=dict(data["label_schema"]),
                image_format=str(data["image_format"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionError(f"{where}: manifest field missing or of the wrong type ({exc!r}); {fix}") from None
        if manifest.width <= 0 or manifest.height <= 0:
            raise SessionError(f"{where}: frame size {manifest.width}x{manifest.height} is not positive; {fix}")
        if manifest.image_format not in IMAGE_FORMATS:
            raise SessionError(f"{where}: image_format {manifest.image_format!r} is not one of {IMAGE_FORMATS}; {fix}")
        if not manifest.directions or not all(isinstance(d, str) for d in manifest.directions):
            raise SessionError(f"{where}: label_schema.directions must be a non-empty list of names; {fix}")
        if not all(isinstance(c, str) for c in manifest.classes):
            raise SessionError(f"{where}: label_schema.classes must be a list of names; {fix}")
        return manifest


@dataclass(frozen=True)
class FrameRecord:
    """One recorded frame and its labels (label edits already applied when read through Session).

    index: 0-based frame number, unique in the session.
    timestamp: seconds since the session start.
    image: path (relative to the session directory) of the pack file that holds the frame's encoded
        image, at byte ``image_offset``, ``image_bytes`` long (use ``Session.load_image``).
    keys: (left, right, throttle, brake) held.
    action: (steer in [-1, 1], throttle in [0, 1], brake in [0, 1]) if known.
    direction / direction_source: label and who gave it ("sim" | "keys" | "model" | "human").
    boxes: xyxy in pixels of this frame; labels: one class name per box; boxes_source: who gave them.
    extra: free-form per-frame data, e.g. {"speed": 12.3, "model_direction": "left"}.
    deleted: soft-deleted (hidden from ``Session.records()`` unless asked).
    image_offset, image_bytes, image_crc: where in the pack, how long, CRC-32 (checked by ``verify``).
        The record ``SessionWriter.append`` returns has them 0: they are known once it is written.
    """

    index: int
    timestamp: float
    image: str
    keys: tuple[bool, bool, bool, bool]
    action: tuple[float, float, float] | None = None
    direction: str | None = None
    direction_source: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[str, ...] = ()
    boxes_source: str | None = None
    extra: dict = field(default_factory=dict)
    deleted: bool = False
    image_bytes: int = 0
    image_crc: int = 0
    image_offset: int = 0

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "t": self.timestamp,
            "image": self.image,
            "image_offset": self.image_offset,
            "image_bytes": self.image_bytes,
            "image_crc": self.image_crc,
            "keys": [int(k) for k in self.keys],
            "action": None if self.action is None else list(self.action),
            "direction": self.direction,
            "direction_source": self.direction_source,
            "boxes": [list(b) for b in self.boxes],
            "labels": list(self.labels),
            "boxes_source": self.boxes_source,
            "extra": self.extra,
        }


def pack_relpath(index: int) -> str:
    """The pack holding frame ``index``'s image, relative to the session directory."""
    return f"{IMAGES_DIR}/pack-{index // FRAMES_PER_PACK:05d}.bin"


# ----------------------------------------------------------------------------- line codec


def encode_line(obj: dict) -> bytes:
    """``<compact json>\\t<crc32 8 hex>\\n`` as UTF-8. JSON never contains a raw tab or newline."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    body = text.encode("utf-8")
    return body + b"\t" + f"{zlib.crc32(body):08x}".encode("ascii") + b"\n"


def decode_line(line: bytes) -> dict:
    """Inverse of encode_line for one line without its newline; raises ValueError with the reason."""
    body, sep, crc = line.rpartition(b"\t")
    if not sep:
        raise ValueError("no checksum field (line cut short or not written by TruckPilot)")
    try:
        expected = int(crc, 16)
    except ValueError:
        raise ValueError("checksum field is not hex (line damaged)") from None
    if len(crc) != 8 or zlib.crc32(body) != expected:
        raise ValueError("checksum mismatch (line damaged)")
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def split_lines(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split a log into complete lines (byte offset, line without newline) and the torn tail after the last newline."""
    lines: list[tuple[int, bytes]] = []
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return lines, data[start:]
        lines.append((start, data[start:end]))
        start = end + 1


# ----------------------------------------------------------------------------- validation


def check_direction(direction: Any, source: Any, manifest: SessionManifest) -> None:
    """Raise ValueError unless (direction, source) is a valid label pair for this session."""
    if direction is None:
        if source is not None:
            raise ValueError(f"direction_source {source!r} given without a direction")
        return
    if direction not in manifest.directions:
        raise ValueError(f"unknown direction {direction!r}; this session's directions are {list(manifest.directions)}")
    if source not in LABEL_SOURCES:
        raise ValueError(f"direction_source {source!r} is not one of {list(LABEL_SOURCES)}")


def check_boxes(boxes: Any, labels: Any, source: Any, manifest: SessionManifest) -> tuple[tuple, tuple]:
    """Validate boxes (xyxy, inside the frame, x1 < x2, y1 < y2, finite) and their class names.

    Returns (boxes as tuple of 4-float tuples, labels as tuple of str); raises ValueError naming the fault.
    """
    try:
        boxes_t = tuple(tuple(float(v) for v in box) for box in boxes)
    except (TypeError, ValueError):
        raise ValueError(f"boxes must be a sequence of (x1, y1, x2, y2) numbers, got {boxes!r}") from None
    labels_t = tuple(labels)
    if len(boxes_t) != len(labels_t):
        raise ValueError(f"{len(boxes_t)} boxes but {len(labels_t)} labels; give one class name per box")
    w, h = manifest.width, manifest.height
    for box, label in zip(boxes_t, labels_t):
        if len(box) != 4:
            raise ValueError(f"box {box} does not have 4 coordinates (x1, y1, x2, y2)")
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"box {box} has a NaN or infinite coordinate")
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(
                f"box {box} is outside the {w}x{h} frame or empty; need 0 <= x1 < x2 <= {w}, 0 <= y1 < y2 <= {h}"
            )
        if label not in manifest.classes:
            raise ValueError(f"unknown class {label!r}; this session's classes are {list(manifest.classes)}")
    if boxes_t and source not in LABEL_SOURCES:
        raise ValueError(f"boxes_source {source!r} is not one of {list(LABEL_SOURCES)}")
    if source is not None and source not in LABEL_SOURCES:
        raise ValueError(f"boxes_source {source!r} is not one of {list(LABEL_SOURCES)}")
    return boxes_t, labels_t


def record_from_json(obj: dict, manifest: SessionManifest) -> FrameRecord:
    """Build and validate a FrameRecord from its JSON form; raises ValueError with the reason."""
    try:
        index = obj["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"index {index!r} is not a non-negative integer")
        timestamp = float(obj["t"])
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp {timestamp!r} is not finite")
        image = obj["image"]
        if not isinstance(image, str) or image.startswith("/") or ".." in image.split("/"):
            raise ValueError(f"image path {image!r} is not a path inside the session")
        keys = tuple(bool(k) for k in obj["keys"])
        if len(keys) != 4:
            raise ValueError(f"keys {obj['keys']!r} must have 4 entries (left, right, throttle, brake)")
        action = obj.get("action")
        if action is not None:
            action = tuple(float(a) for a in action)
            if len(action) != 3 or not all(math.isfinite(a) for a in action):
                raise ValueError(f"action {obj['action']!r} must be 3 finite numbers (steer, throttle, brake)")
        direction, direction_source = obj.get("direction"), obj.get("direction_source")
        check_direction(direction, direction_source, manifest)
        boxes, labels = check_boxes(obj.get("boxes", ()), obj.get("labels", ()), obj.get("boxes_source"), manifest)
        image_offset, image_bytes = obj.get("image_offset", -1), obj.get("image_bytes", 0)
        if not (isinstance(image_offset, int) and image_offset >= 0 and isinstance(image_bytes, int) and image_bytes > 0):
            raise ValueError(f"image location offset={image_offset!r} bytes={image_bytes!r} is not valid")
        extra = obj.get("extra") or {}
        if not isinstance(extra, dict):
            raise ValueError(f"extra {extra!r} is not an object")
        return FrameRecord(
            index=index,
            timestamp=timestamp,
            image=image,
            keys=keys,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
            direction=direction,
            direction_source=direction_source,
            boxes=boxes,
            labels=labels,
            boxes_source=obj.get("boxes_source"),
            extra=extra,
            image_bytes=image_bytes,
            image_crc=int(obj.get("image_crc", 0)),
            image_offset=image_offset,
        )
    except KeyError as exc:
        raise ValueError(f"field {exc.args[0]!r} missing") from None
    except TypeError as exc:
        raise ValueError(f"field of the wrong type ({exc})") from None

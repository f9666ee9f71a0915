"""Export a session to plain formats other tools read, in one folder::

    OUT/images/000000123.png     every frame's image as its own file (the recorded bytes, unchanged)
    OUT/labels_directions.csv    "image,direction" rows, like the source article's labels file
                                 (its DirectionsDataset reads column 0 as the image name under
                                 root_dir=OUT/images and column 1 as the label); names keep their extension
    OUT/labels_controls.csv      the continuous labels, one row per frame that has any: "image, steer_label,
                                 speed_m_s, steer, wheel, throttle, brake, paused, source" (steer_label:
                                 ``telemetry.steer_label``, the continuous steering a model learns; the rest the
                                 frame's ``FrameTelemetry``: the game's SCS telemetry or the simulator's ground
                                 truth; steer and wheel + = right; empty cells where a frame lacks a value).
                                 Written only when some frame has telemetry or a steering label
    OUT/coco.json                the boxes as COCO instances JSON (bbox [x, y, width, height] pixels,
                                 category ids from 1 in label_schema order); every frame with a box label
                                 is an image entry, also when that label is "no objects"

Soft-deleted frames are left out.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .store import Session
from .telemetry import FrameTelemetry, steer_label
from .writer import write_file_atomic

#: the columns of labels_controls.csv
CONTROLS_COLUMNS = ("image", "steer_label", "speed_m_s", "steer", "wheel", "throttle", "brake", "paused", "source")


@dataclass(frozen=True)
class ExportResult:
    """What was written: image files, CSV rows (frames with a direction), COCO images and annotations."""

    out: str
    images: int
    csv_rows: int
    coco_images: int
    coco_annotations: int
    controls_rows: int = 0  #: rows of labels_controls.csv (0: not written)


def image_name(index: int, image_format: str) -> str:
    return f"{index:09d}.{image_format}"


def directions_csv(session: Session) -> tuple[str, int]:
    """The CSV text (header ``image,direction``) and its row count."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "direction"])
    rows = 0
    for r in session.records():
        if r.direction is not None:
            writer.writerow([image_name(r.index, session.manifest.image_format), r.direction])
            rows += 1
    return buf.getvalue(), rows


def controls_csv(session: Session) -> tuple[str, int]:
    """The CSV text of the continuous labels (header ``CONTROLS_COLUMNS``) and its row count (0: no
    frame has telemetry or a steering label)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CONTROLS_COLUMNS)
    rows = 0
    for r in session.records():
        told = FrameTelemetry.from_extra(r.extra)
        label = steer_label(r.extra)
        if told is None and label is None:
            continue
        values = ["" if told is None else getattr(told, name) for name in CONTROLS_COLUMNS[2:]]
        writer.writerow([image_name(r.index, session.manifest.image_format), "" if label is None else label, *values])
        rows += 1
    return buf.getvalue(), rows


def coco_dict(session: Session) -> dict:
    """The session's boxes as a COCO instances dict (file names relative to OUT/images)."""
    m = session.manifest
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(m.classes)]
    category_id = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for r in session.records():
        if r.boxes_source is None:
            continue
        images.append({"id": r.index, "file_name": image_name(r.index, m.image_format), "width": m.width,
                       "height": m.height, "timestamp": r.timestamp})
        for (x1, y1, x2, y2), label in zip(r.boxes, r.labels):
            annotations.append({
                "id": len(annotations) + 1, "image_id": r.index, "category_id": category_id[label],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                "source": r.boxes_source,
            })
    return {
        "info": {"description": f"TruckPilot session {m.id}", "date_created": m.created, "source": m.source},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def export_session(session: Session, out: str | os.PathLike, *, progress: bool = False) -> ExportResult:
    """Write OUT/images/*, OUT/labels_directions.csv, OUT/labels_controls.csv (when there are continuous
    labels) and OUT/coco.json (see the module docstring)."""
    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records = session.records()
    iterator = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc="export images", unit="frame")
    for r in iterator:
        target = images_dir / image_name(r.index, session.manifest.image_format)
        data = session.image_bytes(r)
        if not (target.exists() and target.stat().st_size == len(data)):
            target.write_bytes(data)
    text, rows = directions_csv(session)
    write_file_atomic(out / "labels_directions.csv", text.encode("utf-8"))
    controls, controls_rows = controls_csv(session)
    if controls_rows:
        write_file_atomic(out / "labels_controls.csv", controls.encode("utf-8"))
    coco = coco_dict(session)
    write_file_atomic(out / "coco.json", json.dumps(coco).encode("utf-8"))
    return ExportResult(str(out), len(records), rows, len(coco["images"]), len(coco["annotations"]), controls_rows)

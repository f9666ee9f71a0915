"""Export a session to plain formats other tools read, in one folder::

    OUT/images/000000123.png     every frame's image as its own file (the recorded bytes, unchanged)
    OUT/labels_directions.csv    "image,direction" rows, like the source article's labels file
                                 (its DirectionsDataset reads column 0 as the image name under
                                 root_dir=OUT/images and column 1 as the label); names keep their extension
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
from .writer import write_file_atomic


@dataclass(frozen=True)
class ExportResult:
    """What was written: image files, CSV rows (frames with a direction), COCO images and annotations."""

    out: str
    images: int
    csv_rows: int
    coco_images: int
    coco_annotations: int


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
    """Write OUT/images/*, OUT/labels_directions.csv and OUT/coco.json (see the module docstring)."""
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
    coco = coco_dict(session)
    write_file_atomic(out / "coco.json", json.dumps(coco).encode("utf-8"))
    return ExportResult(str(out), len(records), rows, len(coco["images"]), len(coco["annotations"]))

"""Summaries of sessions: frame, label and class counts, provenance, interventions, disk use."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .interventions import Intervention, session_interventions
from .store import Session


@dataclass(frozen=True)
class SessionSummary:
    """Counts over one session's frames (soft-deleted frames excluded except in ``deleted``).

    directions: label -> frames; direction_sources: provenance -> frames;
    classes: class -> boxes; boxes_sources: provenance -> frames with a box label;
    unlabelled: frames with neither a direction nor a box label; without_boxes_label: frames nobody boxed; duration_s: last - first timestamp.
    interventions: a person's takeovers during a recorded drive (``training.sessions.interventions``; soft-deleted
    frames count, a person drove them); takeover_frames: frames in them.
    """

    path: str
    id: str
    created: str
    source: dict
    width: int
    height: int
    image_format: str
    frames: int
    deleted: int
    quarantined: int
    duration_s: float
    directions: dict
    direction_sources: dict
    classes: dict
    boxes_sources: dict
    frames_with_boxes: int
    unlabelled: int
    without_boxes_label: int
    disk_bytes: int
    interventions: tuple[Intervention, ...] = ()
    takeover_frames: int = 0


def summarize(session: Session) -> SessionSummary:
    everything = session.records(include_deleted=True)
    records = [r for r in everything if not r.deleted]
    directions = Counter(r.direction or "(none)" for r in records)
    direction_sources = Counter(r.direction_source or "(none)" for r in records)
    classes = Counter(label for r in records for label in r.labels)
    boxes_sources = Counter(r.boxes_source or "(none)" for r in records)
    m = session.manifest
    marks = tuple(session_interventions(session))
    return SessionSummary(
        path=str(session.path),
        id=m.id,
        created=m.created,
        source=m.source,
        width=m.width,
        height=m.height,
        image_format=m.image_format,
        frames=len(records),
        deleted=len(everything) - len(records),
        quarantined=sum(1 for p in session.quarantined if not p.torn_tail),
        duration_s=(records[-1].timestamp - records[0].timestamp) if records else 0.0,
        directions=dict(sorted(directions.items())),
        direction_sources=dict(sorted(direction_sources.items())),
        classes={c: classes.get(c, 0) for c in m.classes} | {c: n for c, n in classes.items() if c not in m.classes},
        boxes_sources=dict(sorted(boxes_sources.items())),
        frames_with_boxes=sum(1 for r in records if r.boxes),
        unlabelled=sum(1 for r in records if r.direction is None and r.boxes_source is None),
        without_boxes_label=sum(1 for r in records if r.boxes_source is None),
        disk_bytes=disk_usage(session.path),
        interventions=marks,
        takeover_frames=sum(mark.frames for mark in marks),
    )


def disk_usage(path: str | os.PathLike) -> int:
    """Bytes used by the files under ``path``."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _balance(counts: dict) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    return ", ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in counts.items())


def format_summary(s: SessionSummary) -> str:
    source = ", ".join(f"{k}={v}" for k, v in s.source.items())
    return "\n".join([
        f"session {s.id}  ({s.path})",
        f"  created      {s.created}",
        f"  source       {source}",
        f"  frames       {s.frames} ({s.deleted} deleted, {s.quarantined} quarantined), {s.duration_s:.1f} s, "
        f"{s.width}x{s.height} {s.image_format}, {s.disk_bytes / 1e6:.1f} MB",
        f"  directions   {_balance(s.directions)}",
        f"    labelled by {_balance(s.direction_sources)}",
        f"  boxes        {sum(s.classes.values())} in {s.frames_with_boxes} frames: {_balance(s.classes)}",
        f"    labelled by {_balance(s.boxes_sources)}",
        f"  unlabelled   {s.unlabelled} frames (no label at all); {s.without_boxes_label} frames have no box label",
        f"  takeovers    {len(s.interventions)} ({s.takeover_frames} frames driven by a person)",
        *(f"    {i + 1}. {mark.describe()}" for i, mark in enumerate(s.interventions)),
    ])


def format_table(summaries: list[SessionSummary]) -> str:
    header = (f"{'session':<28} {'frames':>7} {'secs':>7} {'left':>6} {'straight':>8} {'right':>6} {'boxes':>6} "
              f"{'takeovers':>9} {'MB':>7}  path")
    rows = [header]
    for s in summaries:
        rows.append(
            f"{s.id:<28} {s.frames:>7} {s.duration_s:>7.1f} {s.directions.get('left', 0):>6} "
            f"{s.directions.get('straight', 0):>8} {s.directions.get('right', 0):>6} {sum(s.classes.values()):>6} "
            f"{len(s.interventions):>9} {s.disk_bytes / 1e6:>7.1f}  {Path(s.path)}"
        )
    return "\n".join(rows)

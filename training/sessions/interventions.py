"""Interventions: where a person took the wheel from the model during a recorded drive.

``truckpilot drive --record`` writes every frame of a takeover with ``extra["takeover"] = True``
and the person's keys as the frame's keys. An intervention is one contiguous run of such frames
(in record order). Marks are derived from the frame records, never stored apart from them:
``frames.jsonl`` is append-only, so a recording killed mid-takeover still holds every mark up to
its last whole line (that last run counts, with ``ended`` False).

    from training.sessions import Session
    from training.sessions.interventions import interventions

    for mark in interventions(Session.open("sessions/d1").records(include_deleted=True)):
        print(mark.describe())
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .records import FrameRecord

#: the order of ``FrameRecord.keys``
KEY_NAMES: tuple[str, ...] = ("left", "right", "throttle", "brake")


def is_takeover(record: FrameRecord) -> bool:
    """Whether a person drove this frame (``extra["takeover"]`` set by the drive recorder)."""
    return bool(record.extra.get("takeover"))


@dataclass(frozen=True)
class Intervention:
    """One takeover: a contiguous run of takeover frames.

    start_index: index of the run's first frame; frames: how many frames it holds.
    start_s: its first frame's timestamp, seconds since the session start.
    duration_s: from its first frame to the first frame after it (the agent's again); for a run
        still open when the session ended (``ended`` False: the drive stopped, or was killed, while
        the person drove) to its last frame plus one frame period (1 / the session's fps).
    ended: whether a frame without takeover followed it.
    model_index: the frame whose model output is given: the one just before the takeover (what the
        model was doing when the person stepped in), or the run's first frame when none precedes it.
    model_direction / model_probs: the direction model's output on that frame (None / {} when the
        drive ran without a direction model).
    person_keys: the driving keys the person held in any frame of the run, in (left, right,
        throttle, brake) order; key_frames: frames each of them was held.
    """

    start_index: int
    frames: int
    start_s: float
    duration_s: float
    ended: bool
    model_index: int
    model_direction: str | None
    model_probs: dict
    person_keys: tuple[str, ...]
    key_frames: dict

    def describe(self) -> str:
        """One line for people: where, how long, the model's output, the person's keys."""
        probs = ", ".join(f"{k} {v:.2f}" for k, v in self.model_probs.items())
        model = f"{self.model_direction} ({probs})" if self.model_direction else "no direction model"
        keys = "+".join(self.person_keys) or "no driving key"
        return (f"frame {self.start_index} at {self.start_s:.2f} s, {self.duration_s:.2f} s ({self.frames} frames"
                f"{'' if self.ended else ', open at the end of the session'}): person {keys}; model said {model}")

    def to_json(self) -> dict:
        return {"start_index": self.start_index, "frames": self.frames, "start_s": round(self.start_s, 4),
                "duration_s": round(self.duration_s, 4), "ended": self.ended, "model_index": self.model_index,
                "model_direction": self.model_direction, "model_probs": dict(self.model_probs),
                "person_keys": list(self.person_keys), "key_frames": dict(self.key_frames)}


class InterventionMarker:
    """Marks interventions one record at a time (a live recorder) or over a whole session.

    ``add(record)`` returns the intervention that record ended (the first frame after a takeover),
    else None; ``finish()`` returns the one still open, if any. Records come in index order.
    """

    def __init__(self, fps: float = 0.0) -> None:
        self.frame_s = 1.0 / fps if fps and fps > 0 else 0.0
        self._previous: FrameRecord | None = None
        self._run: list[FrameRecord] = []
        self._before: FrameRecord | None = None  # the record just before the open run

    def add(self, record: FrameRecord) -> Intervention | None:
        done = None
        if is_takeover(record):
            if not self._run:
                self._before = self._previous
            self._run.append(record)
        elif self._run:
            done = self._mark(end=record)
        self._previous = record
        return done

    def finish(self) -> Intervention | None:
        return self._mark(end=None) if self._run else None

    def _mark(self, end: FrameRecord | None) -> Intervention:
        run, before = self._run, self._before
        self._run, self._before = [], None
        first, last = run[0], run[-1]
        model = before if before is not None else first
        key_frames = {name: sum(1 for r in run if r.keys[i]) for i, name in enumerate(KEY_NAMES)}
        duration = (end.timestamp - first.timestamp) if end is not None else (last.timestamp - first.timestamp
                                                                              + self.frame_s)
        return Intervention(
            start_index=first.index, frames=len(run), start_s=float(first.timestamp), duration_s=float(duration),
            ended=end is not None, model_index=model.index, model_direction=model.extra.get("model_direction"),
            model_probs=dict(model.extra.get("model_probs") or {}),
            person_keys=tuple(name for name in KEY_NAMES if key_frames[name]),
            key_frames={name: n for name, n in key_frames.items() if n},
        )


def interventions(records: Iterable[FrameRecord], fps: float = 0.0) -> list[Intervention]:
    """Every intervention in ``records`` (a session's records in index order; pass
    ``include_deleted=True`` records: a frame hidden from training was still driven by the person).
    ``fps``: the session's, for the length of a run still open at the end."""
    marker = InterventionMarker(fps)
    marks = [mark for record in records if (mark := marker.add(record)) is not None]
    last = marker.finish()
    return marks + ([last] if last is not None else [])


def session_interventions(session) -> list[Intervention]:
    """:func:`interventions` of an open ``Session`` (all its records, soft-deleted ones too)."""
    return interventions(session.records(include_deleted=True), session.manifest.fps)

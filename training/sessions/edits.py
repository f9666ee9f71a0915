"""Label edits and soft deletes, stored append-only in ``edits.jsonl`` and replayed on open.

Each edit is one checksummed line (see records.encode_line), fsynced as it is
made, so an edit is either fully on disk or not at all, and the frame records
are never rewritten. Undo appends the edit that restores the earlier value.

Edit lines::

    {"seq": 7, "time": "...Z", "index": 12, "op": "direction", "direction": "left", "source": "human"}
    {"seq": 8, "time": "...Z", "index": 12, "op": "boxes", "boxes": [[x1,y1,x2,y2],...], "labels": [...], "source": "human"}
    {"seq": 9, "time": "...Z", "index": 12, "op": "delete"}         # soft delete; "restore" undoes it
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import logging
import os
from pathlib import Path

from .records import EDITS_FILE, LOCK_FILE, FrameRecord, SessionError, encode_line
from .store import Session, apply_edit

log = logging.getLogger(__name__)


class SessionEditor:
    """Edits one session's labels. Holds the session's lock while open (no recorder or verify meanwhile).

    ``editor.record(index)`` gives the current state; every change is written at once.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.path = session.path
        self._state: dict[int, FrameRecord] = {r.index: r for r in session.records(include_deleted=True)}
        self._undo: list[list[dict]] = []
        self._seq = 0
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SessionError(f"{self.path}: another process (a recorder, labeller or verify) holds this session; "
                               "wait for it to finish") from None
        self._fd = os.open(self.path / EDITS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._ensure_line_start()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "SessionEditor":
        return cls(Session.open(path))

    def __enter__(self) -> "SessionEditor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = -1

    # ------------------------------------------------------------------ reading

    @property
    def indices(self) -> list[int]:
        return sorted(self._state)

    def record(self, index: int) -> FrameRecord:
        return self._state[index]

    def records(self, include_deleted: bool = False) -> list[FrameRecord]:
        return [self._state[i] for i in self.indices if include_deleted or not self._state[i].deleted]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    # ------------------------------------------------------------------ editing

    def set_direction(self, index: int, direction: str | None, source: str | None = "human", *,
                      undoable: bool = True) -> FrameRecord:
        """Set (or clear, with None) the frame's direction label. ``undoable=False`` for model drafts."""
        if direction is None:
            source = None
        return self._change(index, [{"op": "direction", "direction": direction, "source": source}], undoable)

    def set_boxes(self, index: int, boxes, labels, source: str | None = "human", *,
                  undoable: bool = True) -> FrameRecord:
        """Replace the frame's boxes (xyxy pixels) and their class names; an empty list means "no objects"."""
        boxes = [list(map(float, b)) for b in boxes]
        edit = {"op": "boxes", "boxes": boxes, "labels": list(labels), "source": source}
        return self._change(index, [edit], undoable)

    def confirm(self, index: int) -> FrameRecord:
        """A person checked the frame: its direction and boxes become provenance "human"."""
        r = self._state[index]
        edits = []
        if r.direction is not None and r.direction_source != "human":
            edits.append({"op": "direction", "direction": r.direction, "source": "human"})
        if r.boxes_source != "human":
            edits.append({"op": "boxes", "boxes": [list(b) for b in r.boxes], "labels": list(r.labels), "source": "human"})
        return self._change(index, edits) if edits else r

    def delete(self, index: int) -> FrameRecord:
        return self._change(index, [{"op": "delete"}])

    def restore(self, index: int) -> FrameRecord:
        return self._change(index, [{"op": "restore"}])

    def undo(self) -> int | None:
        """Revert the last change (by appending its inverse); returns the frame index it touched, or None."""
        if not self._undo:
            return None
        inverse = self._undo.pop()
        index = inverse[0]["index"]
        self._apply(index, inverse, record_undo=False)
        return index

    # ------------------------------------------------------------------ internals

    def _change(self, index: int, edits: list[dict], undoable: bool = True) -> FrameRecord:
        if index not in self._state:
            raise KeyError(f"{self.path}: no frame {index}")
        return self._apply(index, [dict(e, index=index) for e in edits], record_undo=undoable)

    def _apply(self, index: int, edits: list[dict], record_undo: bool) -> FrameRecord:
        before = self._state[index]
        after = before
        for edit in edits:
            after = apply_edit(after, edit, self.session.manifest)  # ValueError before anything is written
        if after == before:
            return before
        inverse = _inverse(before, edits, index)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        lines = []
        for edit in edits:
            self._seq += 1
            lines.append(encode_line({"seq": self._seq, "time": now, **edit}))
        data = b"".join(lines)
        written = os.write(self._fd, data)
        if written != len(data):  # a short write on a nearly-full disk: the torn line is ignored on open
            raise SessionError(f"{self.path / EDITS_FILE}: disk full while saving an edit; free space and redo it")
        os.fsync(self._fd)
        self._state[index] = after
        if record_undo:
            self._undo.append(inverse)
        return after

    def _ensure_line_start(self) -> None:
        """If a previous run was killed mid-line, start on a fresh line so the next edit is not glued to junk."""
        file = self.path / EDITS_FILE
        size = file.stat().st_size
        if size:
            with open(file, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")


def _inverse(before: FrameRecord, edits: list[dict], index: int) -> list[dict]:
    inverse = []
    for op in {e["op"] for e in edits}:
        if op == "direction":
            inverse.append({"op": "direction", "index": index, "direction": before.direction,
                            "source": before.direction_source})
        elif op == "boxes":
            inverse.append({"op": "boxes", "index": index, "boxes": [list(b) for b in before.boxes],
                            "labels": list(before.labels), "source": before.boxes_source})
        elif op in ("delete", "restore"):
            inverse.append({"op": "delete" if before.deleted else "restore", "index": index})
    return inverse


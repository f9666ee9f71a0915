"""Session: read a recorded session (frame records with label edits applied) and its images.

Opening never modifies anything on disk and never gives up on a whole session
because of one bad part: a line cut short by a crash is ignored, and a record
that is damaged or invalid (bad checksum, NaN or out-of-frame box, unknown
class, duplicate index, missing image) is quarantined in memory with its
reason (``Session.quarantined``); ``truckpilot sessions verify`` moves such
lines out on disk. Only a missing or damaged manifest makes a session unreadable.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import (
    EDITS_FILE,
    FRAMES_FILE,
    MANIFEST_BACKUP_FILE,
    MANIFEST_FILE,
    FrameRecord,
    SessionError,
    SessionManifest,
    check_boxes,
    check_direction,
    decode_line,
    record_from_json,
    split_lines,
)
from .writer import SessionWriter  # noqa: F401  (re-exported: the store API lives here)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One thing that was wrong while reading a session log.

    file: "frames.jsonl" or "edits.jsonl"; offset: byte offset of the line (or torn tail);
    line: 1-based line number; reason: why it was set aside; raw: the line's bytes.
    """

    file: str
    offset: int
    line: int
    reason: str
    raw: bytes
    torn_tail: bool = False


EDIT_OPS = ("direction", "boxes", "delete", "restore")


def _read_manifest_file(mpath: Path) -> SessionManifest:
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise SessionError(
            f"{mpath}: missing, so {mpath.parent} is not a session (or its recording was killed before it started); "
            "give the directory that `truckpilot record --out` made"
        ) from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionError(
            f"{mpath}: not valid JSON ({exc}); the manifest is damaged: restore it from a copy, or re-record the session"
        ) from None
    return SessionManifest.from_json(data, str(mpath))


def read_manifest(path: Path) -> tuple[SessionManifest, str | None]:
    """Read and validate ``path/manifest.json``, falling back to ``manifest.backup.json``.

    Returns (manifest, problem): problem says why the backup was used (None when the manifest is fine).
    SessionError naming the file and the fix when neither is usable.
    """
    if not path.exists():
        raise SessionError(f"{path}: no such session directory; give the directory that `truckpilot record --out` made")
    if not path.is_dir():
        raise SessionError(f"{path}: is a file, not a session directory; give the directory that `truckpilot record --out` made")
    try:
        return _read_manifest_file(path / MANIFEST_FILE), None
    except SessionError as exc:
        primary_error = exc
    try:
        backup = _read_manifest_file(path / MANIFEST_BACKUP_FILE)
    except SessionError:
        raise primary_error from None
    problem = f"{primary_error}; read {MANIFEST_BACKUP_FILE} instead (`truckpilot sessions verify` restores the manifest)"
    log.warning("%s", problem)
    return backup, problem


def read_log(path: Path) -> tuple[list[tuple[int, int, bytes, dict | None, str | None]], bytes, int]:
    """Read a checksummed log: ([(offset, line_no, raw, obj or None, reason or None)], torn tail, tail offset)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], b"", 0
    lines, tail = split_lines(data)
    out = []
    for number, (offset, raw) in enumerate(lines, start=1):
        try:
            out.append((offset, number, raw, decode_line(raw), None))
        except ValueError as exc:
            out.append((offset, number, raw, None, str(exc)))
    return out, tail, len(data) - len(tail)


def apply_edit(record: FrameRecord, edit: dict, manifest: SessionManifest) -> FrameRecord:
    """The record after one edit from ``edits.jsonl``; ValueError with the reason if the edit is invalid."""
    op = edit.get("op")
    if op == "direction":
        direction, source = edit.get("direction"), edit.get("source")
        check_direction(direction, source, manifest)
        return dataclasses.replace(record, direction=direction, direction_source=source)
    if op == "boxes":
        source = edit.get("source")
        boxes, labels = check_boxes(edit.get("boxes", ()), edit.get("labels", ()), source, manifest)
        return dataclasses.replace(record, boxes=boxes, labels=labels, boxes_source=source)
    if op == "delete":
        return dataclasses.replace(record, deleted=True)
    if op == "restore":
        return dataclasses.replace(record, deleted=False)
    raise ValueError(f"unknown edit op {op!r}; expected one of {EDIT_OPS}")


class Session:
    """A recorded session, read-only. ``Session.open(path)``.

    manifest: the SessionManifest.
    quarantined: Problems set aside while reading (damaged/invalid lines, torn tails).
    manifest_problem: why manifest.backup.json was read instead of manifest.json (None normally).
    """

    def __init__(self, path: Path, manifest: SessionManifest, records: list[FrameRecord], problems: list[Problem]):
        self.path = path
        self.manifest = manifest
        self._records = records
        self._by_index: dict[int, FrameRecord] | None = None
        self.quarantined = problems
        self.manifest_problem: str | None = None  # set when manifest.json was damaged and the backup was read

    @classmethod
    def open(cls, path: str | os.PathLike, *, check_images: str = "exists") -> "Session":
        """Open a session directory.

        check_images: "none" (fastest), "exists" (default: each record's image bytes are in its pack;
        one stat per pack), or "crc" (read every image and compare its CRC-32; what ``verify`` does).
        Raises SessionError naming the path and the fix if the manifest is missing or damaged.
        """
        if check_images not in ("none", "exists", "crc"):
            raise ValueError(f"check_images must be 'none', 'exists' or 'crc', got {check_images!r}")
        path = Path(path)
        manifest, manifest_problem = read_manifest(path)
        problems: list[Problem] = []
        by_index: dict[int, FrameRecord] = {}
        order: list[int] = []
        lines, tail, tail_offset = read_log(path / FRAMES_FILE)
        checker = _ImageChecker(path, check_images) if check_images != "none" else None
        for offset, number, raw, obj, reason in lines:
            record = None
            if reason is None:
                try:
                    record = record_from_json(obj, manifest)  # type: ignore[arg-type]
                except ValueError as exc:
                    reason = f"invalid record: {exc}"
            if record is not None and record.index in by_index:
                reason = f"duplicate index {record.index} (first at an earlier line); kept the first"
                record = None
            if record is not None and checker is not None:
                reason = checker.problem(record)
                if reason is not None:
                    record = None
            if record is None:
                problems.append(Problem(FRAMES_FILE, offset, number, reason or "unreadable", raw))
                continue
            by_index[record.index] = record
            order.append(record.index)
        if checker is not None:
            checker.close()
        if tail:
            problems.append(
                Problem(FRAMES_FILE, tail_offset, len(lines) + 1,
                        "torn tail: last record incomplete (process stopped mid-write)", tail, torn_tail=True)
            )
        edit_lines, edit_tail, edit_tail_offset = read_log(path / EDITS_FILE)
        for offset, number, raw, obj, reason in edit_lines:
            if reason is None:
                index = obj.get("index")  # type: ignore[union-attr]
                if index not in by_index:
                    reason = f"edit for frame {index!r}, which is not in the session"
                else:
                    try:
                        by_index[index] = apply_edit(by_index[index], obj, manifest)  # type: ignore[arg-type]
                    except ValueError as exc:
                        reason = f"invalid edit: {exc}"
            if reason is not None:
                problems.append(Problem(EDITS_FILE, offset, number, reason, raw))
        if edit_tail:
            problems.append(
                Problem(EDITS_FILE, edit_tail_offset, len(edit_lines) + 1,
                        "torn tail: last edit incomplete (process stopped mid-write)", edit_tail, torn_tail=True)
            )
        shown = [p for p in problems if not p.torn_tail]
        for problem in shown[:5]:
            log.warning("%s/%s line %d quarantined: %s", path, problem.file, problem.line, problem.reason)
        if len(shown) > 5:
            log.warning("%s: %d more lines quarantined (Session.quarantined, or `truckpilot sessions verify`)",
                        path, len(shown) - 5)
        records = sorted((by_index[i] for i in order), key=lambda r: r.index)
        session = cls(path, manifest, records, problems)
        session.manifest_problem = manifest_problem
        return session

    def records(self, include_deleted: bool = False) -> list[FrameRecord]:
        """Frame records in index order, label edits applied; soft-deleted ones only if asked."""
        if include_deleted:
            return list(self._records)
        return [r for r in self._records if not r.deleted]

    def record(self, index: int) -> FrameRecord:
        """The record of frame ``index`` (soft-deleted or not); KeyError if there is none."""
        if self._by_index is None:
            self._by_index = {r.index: r for r in self._records}
        try:
            return self._by_index[index]
        except KeyError:
            raise KeyError(f"{self.path}: no frame {index}") from None

    def __len__(self) -> int:
        """Number of frames not soft-deleted."""
        return sum(1 for r in self._records if not r.deleted)

    def image_bytes(self, record: FrameRecord) -> bytes:
        """The frame's encoded image file (PNG or JPEG bytes, as recorded), checksum-verified."""
        file = self.path / record.image
        try:
            with open(file, "rb") as fh:
                fh.seek(record.image_offset)
                data = fh.read(record.image_bytes)
        except FileNotFoundError:
            raise SessionError(f"{file}: image pack missing; run `truckpilot sessions verify {self.path}`") from None
        if len(data) != record.image_bytes or zlib.crc32(data) != record.image_crc:
            raise SessionError(f"{file}: image of frame {record.index} damaged (size/checksum differ); "
                               f"run `truckpilot sessions verify {self.path}`")
        return data

    def load_image(self, record: FrameRecord) -> np.ndarray:
        """The frame's image as HxWx3 uint8 RGB. SessionError (naming the file and the fix) if unreadable."""
        import cv2

        data = self.image_bytes(record)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        file = self.path / record.image
        if bgr is None:
            raise SessionError(f"{file}: image of frame {record.index} is not decodable; "
                               f"run `truckpilot sessions verify {self.path}`")
        m = self.manifest
        if bgr.shape != (m.height, m.width, 3):
            raise SessionError(f"{file}: image of frame {record.index} is {bgr.shape[1]}x{bgr.shape[0]}, "
                               f"the session is {m.width}x{m.height}")
        return np.ascontiguousarray(bgr[:, :, ::-1])

    def __getstate__(self) -> dict:  # pickled into DataLoader workers: the index is rebuilt there
        return {**self.__dict__, "_by_index": None}


class _ImageChecker:
    """Checks records' image locations against their packs: "exists" (the bytes are there) or "crc"."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode
        self._sizes: dict[str, int | None] = {}
        self._maps: dict[str, object] = {}

    def problem(self, record: FrameRecord) -> str | None:
        rel = record.image
        if rel not in self._sizes:
            try:
                self._sizes[rel] = (self.path / rel).stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                self._sizes[rel] = None
        size = self._sizes[rel]
        if size is None:
            return f"image pack {rel} missing"
        end = record.image_offset + record.image_bytes
        if end > size:
            return f"image truncated: {rel} has {size} bytes, the frame's image ends at byte {end}"
        if self.mode == "crc":
            data = self._map(rel)[record.image_offset:end]
            if zlib.crc32(data) != record.image_crc:
                return f"image damaged: checksum of bytes {record.image_offset}..{end} of {rel} differs"
        return None

    def _map(self, rel: str):
        if rel not in self._maps:
            import mmap

            with open(self.path / rel, "rb") as fh:
                self._maps[rel] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if self._sizes[rel] else b""
        return self._maps[rel]

    def close(self) -> None:
        for m in self._maps.values():
            if hasattr(m, "close"):
                m.close()
        self._maps.clear()


def list_sessions(root: str | os.PathLike) -> list[Path]:
    """Session directories (those with a manifest or its backup) at ``root`` or directly below it, sorted by path.

    ``root`` itself counts if it is a session. Raises SessionError if ``root`` does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise SessionError(f"{root}: no such directory; give a folder of sessions (each made by `truckpilot record --out`)")
    if is_session_dir(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_session_dir(p))


def is_session_dir(path: Path) -> bool:
    """Whether ``path`` looks like a session (has a manifest or its backup)."""
    return (path / MANIFEST_FILE).exists() or (path / MANIFEST_BACKUP_FILE).exists()

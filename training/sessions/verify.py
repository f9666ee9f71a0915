"""Check a session end to end and repair it to its verified part.

``verify(path)`` reads every record, edit and image (CRC-32 checked) and says:

- clean: nothing wrong;
- repaired: only what a crash leaves behind was found and tidied: a torn last
  line, and images of the last moments whose records were never written
  (at most one second's worth); every complete record is intact;
- lossy: complete records or edits were damaged or invalid (bad checksum,
  NaN/out-of-frame box, unknown class, duplicate index, missing or damaged
  image) or more than a second of images lost their records; they are moved
  to quarantine, with their reasons, and the rest is kept;
- error: the session cannot be read at all (no or damaged manifest); the
  message names the file and the fix.

Repair never deletes: bad lines go to ``quarantine.jsonl`` (raw bytes and
reason), image bytes without a good record go to ``quarantine/``; the logs are replaced
atomically by their verified lines (the longest verified prefix when the
damage is a truncation).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .records import (
    EDITS_FILE,
    FRAMES_FILE,
    IMAGES_DIR,
    LOCK_FILE,
    MANIFEST_BACKUP_FILE,
    MANIFEST_FILE,
    QUARANTINE_DIR,
    QUARANTINE_FILE,
    SessionError,
)
from .store import Problem, Session, read_log
from .writer import write_file_atomic


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found (and did, if ``repaired_on_disk``)."""

    path: str
    status: str  # "clean" | "repaired" | "lossy" | "error"
    records_ok: int = 0
    records_quarantined: int = 0
    torn_tail_bytes: int = 0
    edits_ok: int = 0
    edits_quarantined: int = 0
    orphan_image_bytes: int = 0
    reasons: tuple[str, ...] = ()
    error: str | None = None
    repaired_on_disk: bool = False
    details: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.status == "error":
            return f"{self.path}: error: {self.error}"
        parts = [f"{self.records_ok} records ok"]
        if self.records_quarantined:
            parts.append(f"{self.records_quarantined} records quarantined")
        if self.torn_tail_bytes:
            parts.append(f"torn tail of {self.torn_tail_bytes} bytes dropped")
        if self.edits_ok or self.edits_quarantined:
            parts.append(f"{self.edits_ok} edits ok")
        if self.edits_quarantined:
            parts.append(f"{self.edits_quarantined} edits quarantined")
        if self.orphan_image_bytes:
            where = f"moved to {QUARANTINE_DIR}/" if self.repaired_on_disk else "no record points at"
            parts.append(f"{self.orphan_image_bytes} bytes of images {where}")
        verb = "" if self.repaired_on_disk or self.status == "clean" else " (not repaired: dry run)"
        lines = [f"{self.path}: {self.status}{verb}: " + ", ".join(parts)]
        lines += [f"  - {r}" for r in self.reasons[:20]]
        if len(self.reasons) > 20:
            lines.append(f"  - ... and {len(self.reasons) - 20} more (see {QUARANTINE_FILE})")
        return "\n".join(lines)


def verify(path: str | os.PathLike, *, repair: bool = True) -> VerifyReport:
    """Verify (and by default repair) the session at ``path``. Never raises for a damaged session."""
    path = Path(path)
    try:
        session = Session.open(path, check_images="crc")
    except SessionError as exc:
        return VerifyReport(str(path), "error", error=str(exc))
    except OSError as exc:
        return VerifyReport(str(path), "error", error=f"{exc}; check the session directory's permissions")

    problems = session.quarantined
    records = session.records(include_deleted=True)
    manifest_fix = _manifest_fix(path, session)
    frame_problems = [p for p in problems if p.file == FRAMES_FILE]
    edit_problems = [p for p in problems if p.file == EDITS_FILE]
    torn = sum(len(p.raw) for p in problems if p.torn_tail)
    bad_records = [p for p in frame_problems if not p.torn_tail]
    bad_edits = [p for p in edit_problems if not p.torn_tail]
    edit_lines, _, _ = read_log(path / EDITS_FILE)
    edits_ok = len(edit_lines) - len(bad_edits)

    # Image bytes past the end of the last good record of each pack: debris of a stop (or of lost records).
    good_end: dict[str, int] = {}
    for r in records:
        good_end[r.image] = max(good_end.get(r.image, 0), r.image_offset + r.image_bytes)
    named_end = dict(good_end)  # also counting the images that quarantined (but readable) lines name
    for p in bad_records:
        loc = _image_of(p)
        if loc is not None:
            named_end[loc[0]] = max(named_end.get(loc[0], 0), loc[1])
    tails: dict[str, tuple[int, int]] = {}  # pack -> (verified end, size)
    debris = 0
    for f in _pack_files(path):
        rel = f.relative_to(path).as_posix()
        size = f.stat().st_size
        if size > good_end.get(rel, 0):
            tails[rel] = (good_end.get(rel, 0), size)
            debris += max(0, size - max(named_end.get(rel, 0), good_end.get(rel, 0)))
    mean_image = sum(r.image_bytes for r in records) / len(records) if records else 0
    one_second = max(1.0, session.manifest.fps or 300.0)
    reasons = [f"{p.file} line {p.line}: {p.reason}" for p in problems]
    if manifest_fix is not None:
        reasons.insert(0, manifest_fix[2])
    if debris:
        reasons.append(f"{debris} bytes of image data at the end of the image packs have no record "
                       "(frames being written when the recording stopped, or whose records were lost)")
    if bad_records or bad_edits or (mean_image and debris > one_second * mean_image):
        status = "lossy"
    elif torn or tails or manifest_fix is not None:
        status = "repaired"
    else:
        status = "clean"
    report = dict(
        path=str(path), status=status, records_ok=len(records), records_quarantined=len(bad_records),
        torn_tail_bytes=torn, edits_ok=edits_ok, edits_quarantined=len(bad_edits),
        orphan_image_bytes=debris, reasons=tuple(reasons),
    )
    if status == "clean" or not repair:
        return VerifyReport(**report)
    try:
        _repair(path, problems, tails, manifest_fix)
    except SessionError as exc:
        return VerifyReport(**{**report, "status": "error", "error": str(exc)})
    except OSError as exc:
        return VerifyReport(**{**report, "status": "error",
                               "error": f"repair failed: {exc}; free space or fix permissions and rerun verify"})
    return VerifyReport(**report, repaired_on_disk=True)


def _manifest_fix(path: Path, session: Session) -> tuple[str, bytes, str] | None:
    """(file to rewrite, its bytes, reason) when the manifest or its backup is damaged or missing."""
    backup = path / MANIFEST_BACKUP_FILE
    if session.manifest_problem is not None:
        return MANIFEST_FILE, backup.read_bytes(), f"{MANIFEST_FILE} damaged: restored from {MANIFEST_BACKUP_FILE}"
    good = (path / MANIFEST_FILE).read_bytes()
    try:
        copy = backup.read_bytes()
    except FileNotFoundError:
        copy = None
    if copy != good:
        state = "missing" if copy is None else "damaged"
        return MANIFEST_BACKUP_FILE, good, f"{MANIFEST_BACKUP_FILE} {state}: rewritten from {MANIFEST_FILE}"
    return None


def _image_of(problem: Problem) -> tuple[str, int] | None:
    """(pack, end byte) of the image a quarantined record line names, if the line can still be read."""
    try:
        obj = json.loads(problem.raw.rpartition(b"\t")[0])
        image, offset, size = obj["image"], int(obj["image_offset"]), int(obj["image_bytes"])
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return (image, offset + size) if isinstance(image, str) else None


def _pack_files(path: Path) -> list[Path]:
    root = path / IMAGES_DIR
    if not root.is_dir():
        return []
    return sorted(f for f in root.rglob("*") if f.is_file())


def _repair(path: Path, problems: list[Problem], tails: dict[str, tuple[int, int]],
            manifest_fix: tuple[str, bytes, str] | None) -> None:
    lock_fd = os.open(path / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SessionError(f"{path}: a recorder or labeller is using this session; verify it when they finish") from None
        # 0. A damaged manifest (or backup) is replaced by its intact twin.
        if manifest_fix is not None:
            write_file_atomic(path / manifest_fix[0], manifest_fix[1])
        # 1. Save every set-aside line with its reason (append-only, fsynced) before touching the logs.
        if problems:
            entries = b"".join(
                json.dumps({
                    "file": p.file, "line": p.line, "offset": p.offset, "reason": p.reason,
                    "raw_base64": base64.b64encode(p.raw).decode("ascii"),
                }).encode() + b"\n"
                for p in problems
            )
            fd = os.open(path / QUARANTINE_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, entries)
                os.fsync(fd)
            finally:
                os.close(fd)
        # 2. Replace each damaged log by its verified lines, atomically.
        for name in (FRAMES_FILE, EDITS_FILE):
            bad_offsets = {p.offset for p in problems if p.file == name}
            if not bad_offsets:
                continue
            lines, _tail, _ = read_log(path / name)
            kept = b"".join(raw + b"\n" for offset, _n, raw, _obj, _r in lines if offset not in bad_offsets)
            write_file_atomic(path / name, kept)
        # 3. Move the image bytes past each pack's last good record aside, then cut the pack there.
        for rel, (end, size) in sorted(tails.items()):
            pack = path / rel
            target = path / QUARANTINE_DIR / f"{rel}.from-{end}"
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(pack, "rb") as fh:
                fh.seek(end)
                write_file_atomic(target, fh.read(size - end))
            with open(pack, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
    finally:
        os.close(lock_fd)

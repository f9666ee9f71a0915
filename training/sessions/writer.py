"""SessionWriter: append frames to a new session from a recorder, crash-safe and fast.

``append`` validates the frame, copies the image and hands it to one writer
thread (bounded queue, so the writer is never more than ``max_lag_s`` behind);
the thread encodes the image, appends it to the current image pack, and only
then appends the record's line to ``frames.jsonl``. Lines are written in small batches at least
every ``flush_every_s``; every ``fsync_every_s`` the pack and then the log are
fdatasynced (in that order, so after a power cut too a record points at bytes on disk). A kill
at any moment therefore loses at most ``max_lag_s + flush_every_s`` of frames
(0.35 s with the defaults), and a record never points at an unfinished image.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import platform
import queue
import secrets
from typing import NamedTuple
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from .records import (
    EDITS_FILE,
    FRAMES_FILE,
    IMAGE_FORMATS,
    LOCK_FILE,
    MANIFEST_BACKUP_FILE,
    MANIFEST_FILE,
    FrameRecord,
    SessionDiskFullError,
    SessionError,
    SessionManifest,
    check_boxes,
    check_direction,
    encode_line,
    pack_relpath,
)

log = logging.getLogger(__name__)

_STOP = object()


class _Pending(NamedTuple):
    """A frame whose image is in its pack and whose record line is not yet in the log."""

    line: bytes
    pack: str  #: the pack's path relative to the session
    offset: int  #: where the frame's image starts in the pack


def software_versions() -> dict:
    """Versions of the software that produced a session (stored in its manifest)."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("truckpilot", "numpy", "opencv-python", "pygame", "torch", "mss"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def new_session_id(now: _dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_unstarted(path: Path) -> bool:
    """Empty, or left by a writer killed before its manifest was in place (only .lock / a temp manifest)."""
    return all(p.name == LOCK_FILE or p.name.startswith((MANIFEST_FILE + ".tmp-", MANIFEST_BACKUP_FILE))
               for p in path.iterdir()) and not (path / MANIFEST_FILE).exists()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    """HxWx3 uint8 RGB -> PNG bytes (zlib level 1, "up" filter: lossless, ~0.5 ms at 320x240)
    or JPEG bytes (quality 95, 4:4:4 chroma, so colour edges keep their colour)."""
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image_format == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11; ~4x faster than the adaptive default
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
        ok, buf = cv2.imencode(".png", bgr, params)
    else:
        ok, buf = cv2.imencode(
            ".jpg",
            bgr,
            [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
        )
    if not ok:
        raise SessionError(f"OpenCV could not encode a {image.shape} image as {image_format}")
    return buf.tobytes()


class SessionWriter:
    """Writes one new session directory. Use as a context manager, or call ``close()``.

    Create with ``SessionWriter.create(path, source=..., width=..., height=..., fps=...,
    classes=..., directions=...)``. ``path`` must not exist or be an empty directory.
    Only one writer may hold a session (an flock on ``.lock``; released even on kill -9).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        manifest: SessionManifest,
        *,
        max_lag_s: float = 0.25,
        flush_every_s: float = 0.1,
        fsync_every_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._flush_every_s = flush_every_s
        self._fsync_every_s = fsync_every_s
        self._t0 = time.monotonic()
        self._next_index = 0
        self._closed = False
        self._error: BaseException | None = None
        self.frames_written = 0  # records durable in frames.jsonl (written by the thread)
        self.bytes_written = 0  # image + record bytes written so far

        if self.path.exists() and (not self.path.is_dir() or not _is_unstarted(self.path)):
            raise SessionError(f"{self.path}: already exists and is not an empty directory; choose a new --out path")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SessionError(f"{self.path}: another process is writing this session") from None
        try:
            manifest_bytes = json.dumps(manifest.to_json(), indent=2).encode()
            write_file_atomic(self.path / MANIFEST_FILE, manifest_bytes)
            write_file_atomic(self.path / MANIFEST_BACKUP_FILE, manifest_bytes)
            self._log_fd = os.open(self.path / FRAMES_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            (self.path / EDITS_FILE).touch()
        except OSError as exc:
            os.close(self._lock_fd)
            raise self._os_error(exc, "creating the session") from None
        # The queue holds max_lag_s worth of frames at the nominal rate (512/s when fps is 0), 4..128 frames.
        depth = int(max(4, min(128, max_lag_s * (manifest.fps or 512.0))))
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._pack_fd, self._pack_rel, self._pack_size = -1, "", 0
        self._thread = threading.Thread(target=self._run, name=f"session-writer-{manifest.id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        source: dict,
        width: int,
        height: int,
        fps: float,
        classes: tuple[str, ...] | list[str],
        directions: tuple[str, ...] | list[str] = ("left", "straight", "right"),
        image_format: str = "png",
        **writer_options,
    ) -> "SessionWriter":
        """Start a new session at ``path`` (created; must not exist or be empty)."""
        if image_format not in IMAGE_FORMATS:
            raise SessionError(f"image format {image_format!r} is not one of {IMAGE_FORMATS}")
        if width <= 0 or height <= 0:
            raise SessionError(f"frame size {width}x{height} is not positive")
        now = _dt.datetime.now(_dt.timezone.utc)
        manifest = SessionManifest(
            id=new_session_id(now),
            created=now.isoformat(timespec="microseconds"),
            source=dict(source),
            width=int(width),
            height=int(height),
            fps=float(fps),
            versions=software_versions(),
            label_schema={"directions": list(directions), "classes": list(classes)},
            image_format=image_format,
        )
        return cls(path, manifest, **writer_options)

    def __enter__(self) -> "SessionWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ public API

    def elapsed(self) -> float:
        """Seconds since the session started: the timestamp to give ``append`` for a frame taken now."""
        return time.monotonic() - self._t0

    @property
    def frames_appended(self) -> int:
        return self._next_index

    def append(
        self,
        image: np.ndarray,
        *,
        timestamp: float,
        keys,
        action=None,
        direction: str | None = None,
        direction_source: str | None = None,
        boxes=(),
        labels=(),
        boxes_source: str | None = None,
        extra: dict | None = None,
        copy: bool = True,
    ) -> FrameRecord:
        """Queue one frame; returns its record. Raises ValueError on bad input (nothing is written),
        SessionDiskFullError / SessionError if writing failed earlier (everything before is readable).

        copy=False hands the image array over without copying it: only when the caller never
        writes to that array again (e.g. a simulator that returns a fresh frame every step).
        """
        if self._closed:
            raise SessionError(f"{self.path}: writer is closed")
        if self._error is not None:
            raise self._error
        m = self.manifest
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (m.height, m.width, 3)):
            got = f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}"
            raise ValueError(f"image must be {m.height}x{m.width}x3 uint8 RGB for session {m.id}, got {got}")
        keys_t = tuple(bool(k) for k in keys)
        if len(keys_t) != 4:
            raise ValueError(f"keys must be 4 booleans (left, right, throttle, brake), got {keys!r}")
        action_t = None
        if action is not None:
            action_t = tuple(float(a) for a in action)
            if len(action_t) != 3 or not all(np.isfinite(action_t)):
                raise ValueError(f"action must be 3 finite numbers (steer, throttle, brake), got {action!r}")
        if not np.isfinite(timestamp):
            raise ValueError(f"timestamp {timestamp!r} is not finite")
        check_direction(direction, direction_source, m)
        if boxes_source is None and len(boxes) == 0:
            boxes_t, labels_t = (), ()
        else:
            boxes_t, labels_t = check_boxes(boxes, labels, boxes_source, m)
        extra = dict(extra or {})
        try:
            json.dumps(extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra must be JSON-serialisable without NaN: {exc}") from None
        index = self._next_index
        record = FrameRecord(
            index=index,
            timestamp=float(timestamp),
            image=pack_relpath(index),
            keys=keys_t,  # type: ignore[arg-type]
            action=action_t,  # type: ignore[arg-type]
            direction=direction,
            direction_source=direction_source,
            boxes=boxes_t,
            labels=labels_t,
            boxes_source=boxes_source,
            extra=extra,
        )
        pixels = np.array(image, copy=True, order="C") if copy else np.ascontiguousarray(image)
        while True:  # block while the writer is behind (bounded lag), but notice if it died
            try:
                self._queue.put((record, pixels), timeout=0.5)
                break
            except queue.Full:
                if self._error is not None:
                    raise self._error from None
        self._next_index += 1
        return record

    def close(self) -> None:
        """Write everything queued, fsync, release the session. Raises the writer's error if it had one."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self._pack_fd >= 0:  # still open only when the writer stopped on an error
            os.close(self._pack_fd)
            self._pack_fd = -1
        try:
            os.fsync(self._log_fd)
        except OSError:
            pass
        os.close(self._log_fd)
        os.close(self._lock_fd)
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------------ writer thread

    def _os_error(self, exc: OSError, doing: str) -> SessionError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return SessionDiskFullError(
                f"{self.path}: disk full while {doing}; recording stopped after {self.frames_written} frames, "
                f"all of which read back. Free space or record to another disk."
            )
        return SessionError(f"{self.path}: {exc.strerror} while {doing} ({exc.filename or ''}); recording stopped "
                            f"after {self.frames_written} frames, all of which read back.")

    def _run(self) -> None:
        pending: list[_Pending] = []
        last_flush = last_fsync = time.monotonic()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._flush_every_s)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    try:
                        self._flush(pending)
                    except OSError:
                        self._flush_what_fits(pending)
                        raise
                    self._close_pack()
                    return
                if item is not None:
                    record, pixels = item
                    try:
                        pending.append(self._write_image(record, pixels))
                    except OSError:
                        # Disk full (or similar) on an image: its record is dropped, and the frames
                        # before it keep their record lines, as many as there is room for.
                        try:
                            self._flush_what_fits(pending)
                        except OSError:
                            pass
                        pending = []
                        raise
                now = time.monotonic()
                if pending and (item is None or now - last_flush >= self._flush_every_s or self._queue.empty()):
                    try:
                        self._flush(pending)
                    except OSError:
                        self._flush_what_fits(pending)  # keep what fits, then report the error
                        raise
                    pending = []
                    last_flush = now
                if now - last_fsync >= self._fsync_every_s:
                    if self._pack_fd >= 0:
                        os.fdatasync(self._pack_fd)
                    os.fdatasync(self._log_fd)
                    last_fsync = now
        except OSError as exc:
            self._error = self._os_error(exc, "writing frames")
            log.error("%s", self._error)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller on its next append/close
            self._error = SessionError(f"{self.path}: session writer failed: {exc!r}")
            log.exception("session writer failed")
        # Drain so a blocked append() wakes up and sees the error.
        while True:
            try:
                if self._queue.get_nowait() is _STOP:
                    return
            except queue.Empty:
                if self._closed:
                    return
                time.sleep(0.01)

    def _write_image(self, record: FrameRecord, pixels: np.ndarray) -> bytes:
        """Encode, append to the frame's pack, return the record line (not yet written)."""
        data = encode_image(pixels, self.manifest.image_format)
        if record.image != self._pack_rel:
            self._close_pack()
            (self.path / record.image).parent.mkdir(parents=True, exist_ok=True)
            self._pack_fd = os.open(self.path / record.image, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._pack_rel, self._pack_size = record.image, 0
        offset = self._pack_size
        try:
            _write_all(self._pack_fd, data)
        except OSError:
            os.ftruncate(self._pack_fd, offset)  # give back the torn tail's space (no record points at it)
            raise
        self._pack_size += len(data)
        obj = record.to_json()
        obj["image_offset"] = offset
        obj["image_bytes"] = len(data)
        obj["image_crc"] = zlib.crc32(data)
        line = encode_line(obj)
        self.bytes_written += len(data) + len(line)
        return _Pending(line, record.image, offset)

    def _close_pack(self) -> None:
        if self._pack_fd >= 0:
            fd, self._pack_fd = self._pack_fd, -1
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def _flush(self, pending: list["_Pending"]) -> None:
        """Append the record lines of ``pending`` frames (whose images are written); all or none."""
        if not pending:
            return
        start = os.lseek(self._log_fd, 0, os.SEEK_END)
        try:
            _write_all(self._log_fd, b"".join(p.line for p in pending))
        except OSError:
            os.ftruncate(self._log_fd, start)  # no torn record line
            raise
        self.frames_written += len(pending)

    def _flush_what_fits(self, pending: list["_Pending"]) -> None:
        """After a full disk: keep the oldest pending frames whose record lines fit, giving back the
        newest frames' image bytes (the pack is truncated) until they do."""
        pending = list(pending)
        while pending:
            try:
                self._flush(pending)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                newest = pending.pop()
                if newest.pack == self._pack_rel and self._pack_fd >= 0:
                    os.ftruncate(self._pack_fd, newest.offset)
                    self._pack_size = newest.offset

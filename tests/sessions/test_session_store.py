"""The session store: round trip, validation, corrupt input, truncation, edits, export, CLI."""
from __future__ import annotations

import json
import math
import random
import shutil
import zlib

import numpy as np
import pytest

from training.sessions import Session, SessionError, SessionWriter
from training.sessions.edits import SessionEditor
from training.sessions.records import encode_line
from training.sessions.verify import verify

from sessionkit import CLASSES, H, W, frame_image, make_session


def test_round_trip_png_is_exact(tmp_path):
    path = make_session(tmp_path / "s", n=25)
    session = Session.open(path)
    assert len(session) == 25 and session.quarantined == []
    m = session.manifest
    assert (m.width, m.height, m.fps, m.image_format) == (W, H, 10.0, "png")
    assert m.label_schema == {"directions": ["left", "straight", "right"], "classes": list(CLASSES)}
    assert m.created.endswith("+00:00") and "python" in m.versions
    for r in session.records():
        assert r.direction == ("left", "straight", "right")[r.index % 3] and r.direction_source == "sim"
        assert r.boxes == (((1.0, 2.0, 20.5, 30.0),) if r.index % 2 else ())
        assert r.extra == {"speed": float(r.index)} and r.timestamp == pytest.approx(r.index / 10)
        assert r.keys == (r.index % 3 == 0, r.index % 3 == 2, True, False)
        np.testing.assert_array_equal(session.load_image(r), frame_image(r.index))
    assert verify(path).status == "clean"


def test_round_trip_jpeg_is_close(tmp_path):
    session = Session.open(make_session(tmp_path / "s", n=3, image_format="jpg"))
    for r in session.records():
        diff = np.abs(session.load_image(r).astype(int) - frame_image(r.index))
        assert session.image_bytes(r)[:3] == b"\xff\xd8\xff" and diff.mean() < 2.0  # JPEG bytes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=[(math.nan, 0, 5, 5)], labels=["car"], boxes_source="human"), "NaN"),
        (dict(boxes=[(0, 0, W + 5, 5)], labels=["car"], boxes_source="human"), "outside"),
        (dict(boxes=[(5, 5, 2, 8)], labels=["car"], boxes_source="human"), "outside"),
        (dict(boxes=[(0, 0, 5, 5)], labels=["bus"], boxes_source="human"), "unknown class"),
        (dict(boxes=[(0, 0, 5, 5)], labels=[], boxes_source="human"), "labels"),
        (dict(direction="up", direction_source="human"), "unknown direction"),
        (dict(direction="left", direction_source="guess"), "direction_source"),
    ],
)
def test_append_rejects_bad_labels_and_writes_nothing(tmp_path, kwargs, message):
    with SessionWriter.create(tmp_path / "s", source={"kind": "test"}, width=W, height=H, fps=10, classes=CLASSES) as w:
        with pytest.raises(ValueError, match=message):
            w.append(frame_image(0), timestamp=0.0, keys=(0, 0, 0, 0), **kwargs)
        with pytest.raises(ValueError, match="64x3 uint8"):
            w.append(np.zeros((10, 10, 3), np.uint8), timestamp=0.0, keys=(0, 0, 0, 0))
        w.append(frame_image(1), timestamp=0.1, keys=(0, 0, 0, 0))
    records = Session.open(tmp_path / "s").records()
    assert [r.index for r in records] == [0]


def test_writer_refuses_existing_session(tmp_path):
    make_session(tmp_path / "s", n=1)
    with pytest.raises(SessionError, match="already exists"):
        SessionWriter.create(tmp_path / "s", source={}, width=W, height=H, fps=1, classes=CLASSES)


def test_open_bad_paths_and_garbage_manifest_give_clear_errors(tmp_path):
    with pytest.raises(SessionError, match="no such session directory"):
        Session.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match="manifest.json: missing"):
        Session.open(tmp_path / "empty")
    path = make_session(tmp_path / "s", n=2)
    (path / "manifest.json").write_bytes(b"\x00garbage{")  # the backup copy keeps the session readable
    session = Session.open(path)
    assert len(session) == 2 and "manifest.json: not valid JSON" in session.manifest_problem
    report = verify(path)
    assert report.status == "repaired" and "restored from manifest.backup.json" in report.reasons[0]
    assert Session.open(path).manifest_problem is None and verify(path).status == "clean"
    (path / "manifest.backup.json").write_text("{")
    assert verify(path).status == "repaired" and verify(path).status == "clean"  # backup rewritten
    for name in ("manifest.json", "manifest.backup.json"):  # both damaged: a clear error
        (path / name).write_bytes(b"\x00garbage{")
    with pytest.raises(SessionError, match=r"manifest.json: not valid JSON"):
        Session.open(path)
    for name in ("manifest.json", "manifest.backup.json"):
        (path / name).write_text(json.dumps({"format": "truckpilot-session", "format_version": 2, "id": "x"}))
    with pytest.raises(SessionError, match="field missing"):
        Session.open(path)
    report = verify(path)
    assert report.status == "error" and "manifest.json" in report.error


def _append_raw_record(path, obj):
    with open(path / "frames.jsonl", "ab") as fh:
        fh.write(encode_line(obj))


def test_corrupt_records_are_quarantined_with_reasons_and_the_rest_kept(tmp_path):
    path = make_session(tmp_path / "s", n=6)
    good = json.loads((path / "frames.jsonl").read_bytes().splitlines()[1].rpartition(b"\t")[0])
    _append_raw_record(path, {**good, "index": 6, "boxes": [[1e9, 1, 2, 3]], "labels": ["car"]})  # out of frame
    _append_raw_record(path, {**good, "index": 7, "labels": ["spaceship"]})
    _append_raw_record(path, {**good, "index": 2})  # duplicate index
    _append_raw_record(path, {**good, "index": 8, "image": "images/pack-00099.bin"})  # missing image pack
    _append_raw_record(path, {**good, "index": 11, "image_offset": 10**6})  # image past the end of its pack
    with open(path / "frames.jsonl", "ab") as fh:  # a NaN written by a foreign tool, valid checksum
        body = json.dumps({**good, "index": 9, "boxes": [[float("nan"), 1, 2, 3]]}).encode()
        fh.write(body + b"\t" + f"{zlib.crc32(body):08x}".encode() + b"\n")
        fh.write(b'{"index": 10, "garbage": tru\tdeadbeef\n')  # damaged line
    fifth = Session.open(path).record(5)
    with open(path / fifth.image, "r+b") as fh:  # flip bytes inside frame 5's image
        fh.seek(fifth.image_offset + 40)
        fh.write(b"\xff\x00\xff\x00")
    with pytest.raises(SessionError, match="image of frame 5 damaged"):
        Session.open(path).load_image(fifth)
    session = Session.open(path, check_images="crc")
    assert [r.index for r in session.records()] == [0, 1, 2, 3, 4]
    reasons = [p.reason for p in session.quarantined]
    assert any("outside" in r for r in reasons)
    assert any("unknown class 'spaceship'" in r for r in reasons)
    assert any("duplicate index 2" in r for r in reasons)
    assert any("image pack images/pack-00099.bin missing" in r for r in reasons)
    assert any("image truncated" in r for r in reasons)
    assert any("NaN" in r for r in reasons)
    assert any("checksum" in r for r in reasons)
    assert any("image damaged: checksum" in r for r in reasons)
    assert len(reasons) == 8

    report = verify(path)
    assert report.status == "lossy" and report.records_ok == 5 and report.records_quarantined == 8
    quarantine = [json.loads(line) for line in (path / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 8 and all(q["reason"] and q["raw_base64"] for q in quarantine)
    again = verify(path)
    assert again.status == "clean" and again.records_ok == 5


def test_truncation_at_200_random_offsets_never_crashes_verify(tmp_path):
    original = make_session(tmp_path / "orig", n=12)
    with SessionEditor.open(original) as editor:
        for i in range(0, 12, 2):
            editor.set_direction(i, "left")
        editor.set_boxes(3, [(2, 2, 30, 30)], ["truck"])
        editor.delete(5)
    expected = {r.index: r for r in Session.open(original).records(include_deleted=True)}
    files = sorted(p for p in original.rglob("*") if p.is_file() and p.name != ".lock")
    rng = random.Random(1234)
    statuses = {}
    for trial in range(200):
        victim = rng.choice(files)
        copy = tmp_path / f"t{trial % 4}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(original, copy)
        target = copy / victim.relative_to(original)
        size = target.stat().st_size
        offset = rng.randrange(0, size) if size else 0
        with open(target, "r+b") as fh:
            fh.truncate(offset)
        report = verify(copy)  # must never raise
        statuses[report.status] = statuses.get(report.status, 0) + 1
        assert report.status != "error", f"trial {trial}: {report.error}"  # the manifest has a backup copy
        after = Session.open(copy)
        assert verify(copy).status == "clean", f"trial {trial}: second verify not clean ({victim.name}@{offset})"
        got = after.records(include_deleted=True)
        if victim.name == "frames.jsonl":  # the longest verified prefix
            assert [r.index for r in got] == list(range(len(got)))
        for r in got:
            if victim.name != "edits.jsonl":
                assert r == expected[r.index]
            np.testing.assert_array_equal(after.load_image(r), frame_image(r.index))
    assert statuses.get("lossy", 0) > 0 and statuses.get("repaired", 0) > 0 and "error" not in statuses


def test_editor_applies_undoes_and_survives_torn_edit_line(tmp_path):
    path = make_session(tmp_path / "s", n=5)
    with SessionEditor.open(path) as editor:
        editor.set_direction(1, "right")
        editor.set_boxes(1, [(3, 4, 10, 12)], ["person"])
        editor.set_direction(2, "left")
        assert editor.undo() == 2
        editor.delete(4)
        with pytest.raises(ValueError, match="unknown class"):
            editor.set_boxes(0, [(1, 1, 5, 5)], ["unicorn"])
        with pytest.raises(SessionError, match="holds this session"):
            SessionEditor.open(path)
    with open(path / "edits.jsonl", "ab") as fh:
        fh.write(b'{"seq": 99, "index": 0, "op": "dire')  # killed mid-write
    session = Session.open(path)
    r1, r2 = session.record(1), session.record(2)
    assert (r1.direction, r1.direction_source) == ("right", "human")
    assert r1.boxes == ((3.0, 4.0, 10.0, 12.0),) and r1.labels == ("person",) and r1.boxes_source == "human"
    assert (r2.direction, r2.direction_source) == ("right", "sim")  # undone back to the recorded label
    assert len(session) == 4 and session.record(4).deleted
    with SessionEditor.open(path) as editor:  # a new edit after the torn line still lands
        editor.restore(4)
    assert len(Session.open(path)) == 5


def test_export_images_csv_and_coco(tmp_path):
    import cv2
    from pycocotools.coco import COCO

    from training.sessions.export import export_session

    path = make_session(tmp_path / "s", n=6)
    with SessionEditor.open(path) as editor:
        editor.delete(0)
    result = export_session(Session.open(path), tmp_path / "out")
    assert (result.images, result.csv_rows, result.coco_images, result.coco_annotations) == (5, 5, 5, 3)
    lines = (tmp_path / "out" / "labels_directions.csv").read_text().splitlines()
    assert lines[0] == "image,direction" and lines[1] == "000000001.png,straight"
    image = cv2.imread(str(tmp_path / "out" / "images" / "000000001.png"))[:, :, ::-1]
    np.testing.assert_array_equal(image, frame_image(1))
    coco = COCO(str(tmp_path / "out" / "coco.json"))
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert ann["bbox"] == [1.0, 2.0, 19.5, 28.0] and coco.loadCats(ann["category_id"])[0]["name"] == "car"
    assert coco.loadImgs([1])[0]["file_name"] == "000000001.png"


def test_sessions_cli(tmp_path, capsys):
    from agent.apps.cli import main

    make_session(tmp_path / "root" / "a", n=4)
    make_session(tmp_path / "root" / "b", n=3)
    (tmp_path / "root" / "broken").mkdir()
    (tmp_path / "root" / "broken" / "manifest.json").write_text("{")
    assert main(["sessions", "ls", str(tmp_path / "root")]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 3 and "unreadable" in out.err
    assert main(["sessions", "show", str(tmp_path / "root" / "a")]) == 0
    assert "left 2 (50%)" in capsys.readouterr().out
    with open(tmp_path / "root" / "a" / "frames.jsonl", "ab") as fh:
        fh.write(b'{"index": 4, "t"')
    assert main(["sessions", "verify", str(tmp_path / "root" / "a")]) == 0
    assert "repaired" in capsys.readouterr().out
    assert main(["sessions", "verify", str(tmp_path / "root" / "broken")]) == 2
    assert main(["sessions", "export", str(tmp_path / "root" / "b"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "labels_directions.csv").read_text().count("\n") == 4
    assert len(list((tmp_path / "b" / "images").iterdir())) == 3

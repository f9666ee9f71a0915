"""Checkpoints: one .safetensors file with the card; loading refuses pickles and damaged files."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from perception.checkpoint import CARD_KEY, CheckpointError, ModelCard, load_model, read_card, save_model
from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet

SMALL = (64, 96)
REPO = Path(__file__).resolve().parents[2]


def _direction():
    torch.manual_seed(0)
    return DirectionNet(DirectionConfig(input_size=SMALL, trunk=TrunkConfig(weights="none")))


def _detector(classes=("car", "truck", "person", "sign")):
    torch.manual_seed(0)
    return SSDNet(DetectorConfig(classes=classes, input_size=SMALL, trunk=TrunkConfig(weights="none")))


class _CreateSentinel:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_direction_and_detector(tmp_path):
    x = torch.randn(2, 3, *SMALL)
    for model in (_direction(), _detector()):
        card = ModelCard.for_model(model, provenance={"data": "unit test", "epochs": 0})
        path = save_model(tmp_path / f"{model.kind}.safetensors", model, card)
        loaded, loaded_card = load_model(path)
        assert loaded_card == card and loaded_card.provenance["data"] == "unit test"
        assert "created" in loaded_card.provenance
        assert type(loaded) is type(model) and not loaded.training
        assert loaded.config == model.config
        model.eval()
        with torch.no_grad():
            a, b = model(x), loaded(x)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(u, v)
        assert read_card(path) == card
        header = json.loads(read_card(path).to_json())
        assert header["kind"] == model.kind and header["format_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.safetensors", "direction.safetensors"]


def test_card_fields_describe_the_model():
    card = ModelCard.for_model(_detector())
    assert card.kind == "detector" and card.classes == ("car", "truck", "person", "sign")
    assert card.input_size == SMALL and card.anchors["feature_strides"] == [8, 16, 32, 64, 128]
    assert ModelCard.from_dict(json.loads(card.to_json())) == card


def test_a_header_length_starting_with_byte_0x80_is_not_taken_for_a_pickle(tmp_path):
    # a safetensors file starts with its header length (little-endian u64): a length of 0x..80 bytes
    # begins with 0x80, the pickle protocol's first byte; a real detector checkpoint had one
    model = _direction()
    # each padding char lengthens the header by one byte (before safetensors aligns it to 8): try the
    # paddings nearest the one that should give 0x..80 first, so a full ResNet34 is saved a few times,
    # not up to 256 (64 s on a 2-core CPU)
    first = save_model(tmp_path / "d.safetensors", model, ModelCard.for_model(model, provenance={"data": ""}))
    predicted = (0x80 - int.from_bytes(first.read_bytes()[:8], "little")) % 256
    for pad in sorted(range(256), key=lambda p: (abs(p - predicted), p)):
        card = ModelCard.for_model(model, provenance={"data": "x" * pad})
        path = save_model(tmp_path / "d.safetensors", model, card)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    loaded, loaded_card = load_model(path)
    assert loaded_card == card and read_card(path) == card


@pytest.mark.parametrize("suffix, use_torch_save", [(".pth", False), (".pt", True), (".safetensors", False)])
def test_pickle_payload_is_refused_without_running_it(tmp_path, suffix, use_torch_save):
    # the payload is live: unpickling it really creates its sentinel
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_CreateSentinel(str(proof))))
    assert proof.exists()

    sentinel = tmp_path / "sentinel"
    path = tmp_path / f"evil{suffix}"
    payload = {"state_dict": _CreateSentinel(str(sentinel))}
    if use_torch_save:
        torch.save(payload, path)  # zip container with a pickle inside
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=4)
    with pytest.raises(CheckpointError, match="pickle") as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert not sentinel.exists()


def test_truncated_file_is_refused(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _direction())
    data = path.read_bytes()
    for cut in (4, 200, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as err:
            load_model(bad)
        assert str(bad) in str(err.value)


def test_garbage_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="g.safetensors"):
        load_model(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing.safetensors")


def test_missing_card_is_refused(tmp_path):
    model = _direction()
    path = tmp_path / "nocard.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="no model card"):
        load_model(path)


def _rewrite(src: Path, dst: Path, tensors=None, card: dict | None = None) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(str(src)) if tensors is None else tensors
    if card is not None:
        metadata[CARD_KEY] = json.dumps(card)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def test_card_weights_mismatch_is_refused(tmp_path):
    path = save_model(tmp_path / "det.safetensors", _detector())
    card = read_card(path).to_dict()
    # the card claims 3 classes, the weights have 4 + background outputs
    card["classes"] = ["car", "truck", "person"]
    card["config"]["classes"] = ["car", "truck", "person"]
    wrong_classes = _rewrite(path, tmp_path / "classes.safetensors", card=card)
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        load_model(wrong_classes)
    assert "classes.safetensors" in str(err.value)
    # a weight tensor missing
    tensors = load_file(str(path))
    tensors.pop("trunk.layer1.0.conv1.weight")
    missing = _rewrite(path, tmp_path / "missing.safetensors", tensors=tensors)
    with pytest.raises(CheckpointError, match="missing"):
        load_model(missing)
    # a card that contradicts itself
    card = read_card(path).to_dict()
    card["classes"] = ["a", "b", "c", "d"]
    inconsistent = _rewrite(path, tmp_path / "inconsistent.safetensors", card=card)
    with pytest.raises(CheckpointError, match="inconsistent"):
        load_model(inconsistent)
    # a card that is not JSON
    bad_json = tmp_path / "badjson.safetensors"
    save_file(load_file(str(path)), str(bad_json), metadata={CARD_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="not valid"):
        load_model(bad_json)


def test_save_refuses_other_suffixes(tmp_path):
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_model(tmp_path / "m.pt", _direction())


def test_save_is_atomic_when_killed_mid_write(tmp_path):
    """A process saving in a loop is killed with SIGKILL; the file on disk is always whole."""
    path = tmp_path / "live.safetensors"
    save_model(path, _direction())
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        torch.set_num_threads(1)
        from perception.checkpoint import save_model
        from perception.config import DirectionConfig, TrunkConfig
        from perception.direction import DirectionNet
        model = DirectionNet(DirectionConfig(input_size=(64, 96), trunk=TrunkConfig(weights="none")))
        print("ready", flush=True)
        while True:
            with torch.no_grad():
                model.head[-1].bias.add_(1.0)
            save_model({str(path)!r}, model)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # several saves of ~85 MB each
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    model, card = load_model(path)  # whole, never half-written
    assert card.kind == "direction"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "live.safetensors"]
    # a temp file may remain from the killed write, but never under the checkpoint's name
    assert all(name.startswith(".live.safetensors.") and name.endswith(".tmp") for name in leftovers), leftovers

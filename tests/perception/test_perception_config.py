"""Configs: JSON round trips, validation, and the three kinds of trunk weights."""
from __future__ import annotations

import json
import logging

import pytest
import torch
from torchvision.models import resnet34

from perception.config import (
    ARTICLE_ANCHORS,
    AnchorConfig,
    DetectorConfig,
    DirectionConfig,
    TrunkConfig,
)
from perception.trunk import ResNetTrunk


@pytest.mark.parametrize("config", [
    TrunkConfig(), TrunkConfig(weights="/some/file.pth"), AnchorConfig(), ARTICLE_ANCHORS,
    DirectionConfig(), DirectionConfig(input_size=(120, 160), dropout=0.0, trunk=TrunkConfig(weights="none")),
    DetectorConfig(), DetectorConfig(layout="article", input_size=(224, 224), loss="hnm", classes=("car",)),
])
def test_to_dict_from_dict_round_trip_through_json(config):
    d = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(d) == config


def test_layout_picks_its_anchors():
    assert DetectorConfig(layout="article").anchors == ARTICLE_ANCHORS
    assert DetectorConfig().anchors.feature_strides[0] == 8
    assert DetectorConfig().match_iou == 0.3 and DetectorConfig(layout="article").match_iou == 0.5
    # anchors given as a dict (JSON) become an AnchorConfig, with or without match_iou
    small = AnchorConfig(feature_strides=(16, 32), sizes=(0.1, 0.3))
    for extra in ({}, {"match_iou": 0.4}):
        assert DetectorConfig(anchors=small.to_dict(), **extra).anchors == small
    assert ARTICLE_ANCHORS.anchors_per_cell == 9


@pytest.mark.parametrize("make, match", [
    (lambda: TrunkConfig(arch="vgg16"), "arch"),
    (lambda: DirectionConfig(input_size=(10, 10)), "input_size"),
    (lambda: DirectionConfig(std=(1.0, 0.0, 1.0)), "std"),
    (lambda: DetectorConfig(layout="yolo"), "layout"),
    (lambda: DetectorConfig(loss="mse"), "loss"),
    (lambda: DetectorConfig(classes=("car", "car")), "classes"),
    (lambda: AnchorConfig(feature_strides=(16, 32), sizes=(0.1,)), "one size per feature stride"),
    (lambda: AnchorConfig(feature_strides=(24,), sizes=(0.1,)), "powers of two"),
    (lambda: AnchorConfig(feature_strides=(2, 8), sizes=(0.02, 0.1)), "powers of two >= 4"),
    (lambda: DetectorConfig.from_dict({"colour": "red"}), "unknown keys"),
])
def test_bad_values_are_refused_with_a_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _reference_state():
    torch.manual_seed(1)
    return resnet34(weights=None).state_dict()


def test_trunk_weights_from_a_pth_state_dict(tmp_path):
    state = _reference_state()
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    trunk = ResNetTrunk(TrunkConfig(weights=str(path)))
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_trunk_weights_from_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _reference_state()
    path = tmp_path / "resnet34.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    trunk = ResNetTrunk(TrunkConfig(weights=str(path)))
    assert torch.equal(trunk.conv1.weight, state["conv1.weight"])


def test_trunk_weights_from_a_truckpilot_detector_checkpoint(tmp_path):
    """A trained detector's trunk starts a detector of another layout (e.g. with a stride-4 level)."""
    from perception.checkpoint import save_model
    from perception.detector import SSDNet

    torch.manual_seed(2)
    source = SSDNet(DetectorConfig(input_size=(64, 96), trunk=TrunkConfig(weights="none")))
    path = save_model(tmp_path / "detector.safetensors", source)
    trunk = ResNetTrunk(TrunkConfig(weights=str(path)))
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, source.trunk.state_dict()[key]), key
    with_fine = SSDNet(DetectorConfig(input_size=(64, 96), trunk=TrunkConfig(weights=str(path)),
                                      anchors=AnchorConfig(feature_strides=(4, 8, 16), sizes=(0.05, 0.1, 0.2))))
    assert torch.equal(with_fine.trunk.layer4[2].conv2.weight, source.trunk.layer4[2].conv2.weight)


def test_trunk_weights_file_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ResNetTrunk(TrunkConfig(weights=str(tmp_path / "nope.pth")))
    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    with pytest.raises(ValueError, match="missing"):
        ResNetTrunk(TrunkConfig(weights=str(partial)))


def test_imagenet_weights_unavailable_warns_and_falls_back(tmp_path, monkeypatch, caplog):
    """A real failed download: an empty hub cache and a proxy that refuses connections."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with caplog.at_level(logging.WARNING, logger="perception.trunk"):
        trunk = ResNetTrunk(TrunkConfig(weights="imagenet"))
    assert any("random init" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert trunk.conv1.weight.shape == (64, 3, 7, 7)


def test_none_weights_are_silent(caplog):
    with caplog.at_level(logging.WARNING):
        ResNetTrunk(TrunkConfig(weights="none"))
    assert not [r for r in caplog.records if r.name.startswith("perception")]


def test_package_exports_are_lazy():
    """``import perception.types`` must not pull in torch (agent code imports it cheaply)."""
    import subprocess
    import sys

    code = ("import sys, perception.types; assert 'torch' not in sys.modules; "
            "from perception import Perceiver, save_model, DetectorConfig; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

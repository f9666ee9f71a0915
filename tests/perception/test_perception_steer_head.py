"""The direction network's continuous steer head: its output, its checkpoints, and checkpoints written before
it (no head: they load strictly as they were trained and give Perception.steer None)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from perception.checkpoint import CARD_KEY, ModelCard, load_model, read_card, save_model
from perception.config import DirectionConfig, TrunkConfig
from perception.direction import DirectionNet
from perception.perceiver import Perceiver

SMALL = (64, 96)


def _direction(steer_head: bool = True) -> DirectionNet:
    torch.manual_seed(0)
    return DirectionNet(DirectionConfig(input_size=SMALL, trunk=TrunkConfig(weights="none"), steer_head=steer_head))


def _frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def _write_pre_head_checkpoint(path) -> None:
    """A direction checkpoint as TruckPilot wrote it before the steer head: no steer_head.* tensors and a
    card whose config has no "steer_head" key."""
    model = _direction(steer_head=True)
    card = ModelCard.for_model(model).to_dict()
    del card["config"]["steer_head"]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("steer_head.")}
    save_file(tensors, str(path), metadata={CARD_KEY: json.dumps(card, sort_keys=True)})


def test_the_head_gives_one_steer_per_frame_in_range_and_leaves_the_classifier_output_alone():
    model = _direction().eval()
    assert DirectionConfig().steer_head and model.has_steer_head
    x = torch.randn(3, 3, *SMALL)
    with torch.no_grad():
        logits = model(x)
        both_logits, steer = model(x, with_steer=True)
    assert logits.shape == (3, 3) and torch.equal(logits, both_logits)  # plain callers see the logits alone
    assert steer.shape == (3,) and bool((steer.abs() <= 1).all())
    assert torch.equal(steer, torch.zeros(3))  # a fresh head is zero-initialised: it says straight ahead
    without = _direction(steer_head=False).eval()
    assert not without.has_steer_head and without(x, with_steer=True)[1] is None
    assert not any(k.startswith("steer_head.") for k in without.state_dict())


def test_a_checkpoint_with_the_head_round_trips_and_the_perceiver_reports_its_steer(tmp_path):
    model = _direction().eval()
    path = save_model(tmp_path / "d.safetensors", model)
    loaded, card = load_model(path)
    assert card.config["steer_head"] is True and loaded.has_steer_head
    assert torch.equal(loaded.steer_head.weight, model.steer_head.weight)
    result = Perceiver(loaded, None, card, device="cpu", engine="torch")(_frame())
    x = torch.randn(1, 3, *SMALL)
    assert isinstance(result.steer, float) and -1.0 <= result.steer <= 1.0
    with torch.no_grad():
        assert torch.allclose(loaded(x, with_steer=True)[1], model(x, with_steer=True)[1])


def test_a_checkpoint_from_before_the_head_loads_strictly_and_gives_steer_none(tmp_path):
    path = tmp_path / "old.safetensors"
    _write_pre_head_checkpoint(path)
    assert "steer_head" not in read_card(path).config
    assert read_card(path).model_config().steer_head is False  # a missing key = the network without the head
    model, card = load_model(path)  # strict: every tensor of the file, no other
    assert not model.has_steer_head
    frame = _frame()
    torch_result = Perceiver(model, None, card, device="cpu", engine="torch")(frame)
    assert torch_result.steer is None and sum(torch_result.direction_probs.values()) == pytest.approx(1.0)
    assert Perceiver.from_checkpoints(path, None, device="cpu", engine="torch")(frame).steer is None


def test_the_onnx_engines_give_the_steer_of_a_headed_checkpoint_as_the_torch_engine_does(tmp_path):
    """The ONNX graphs export the steer head beside the classifier (output ``steer``): float32 and
    int8 engines give Perception.steer, float32 within 1e-4 of the torch engine's (the analog driver's
    steer on the product's default CPU engine). The head is zero at init, so it is given weights here."""
    pytest.importorskip("onnxruntime")
    model = _direction().eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.steer_head.weight, std=1e-3)  # tanh unsaturated
        model.steer_head.bias.fill_(0.1)
    path = save_model(tmp_path / "d.safetensors", model)
    frame = _frame()
    via_onnx = Perceiver.from_checkpoints(path, None, device="cpu", engine="onnxruntime")(frame)
    via_torch = Perceiver.from_checkpoints(path, None, device="cpu", engine="torch")(frame)
    assert via_torch.steer is not None and abs(via_torch.steer) > 0.05  # the head's weights reach the output
    assert via_onnx.steer == pytest.approx(via_torch.steer, abs=1e-4)
    for name, p in via_torch.direction_probs.items():
        assert via_onnx.direction_probs[name] == pytest.approx(p, abs=1e-4)


def test_an_onnx_graph_without_the_steer_output_still_runs_and_gives_steer_none(tmp_path):
    """A direction graph exported before the steer output (the classifier alone) loads; steer is None."""
    pytest.importorskip("onnxruntime")
    from perception.onnx_engine import OnnxNetworks

    model = _direction().eval()
    old = tmp_path / "old.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, *SMALL),), str(old), input_names=["input"],
                          output_names=["direction_logits"], opset_version=17, dynamo=False)
    networks = OnnxNetworks.from_files(direction=old)
    out = networks(torch.zeros(1, 3, *SMALL), None)
    assert not networks.has_steer and out.steer is None and out.direction_logits.shape == (1, 3)

"""What `truckpilot export` writes is what `drive --engine onnxruntime` runs.

Randomly initialised checkpoints are exported through the real `truckpilot` entry point; the
files are loaded by the product's ONNX engine (perception.onnx_engine.OnnxNetworks) and run on
recorded simulator frames preprocessed by perception.preprocess. Their outputs must equal, bit for
bit, those of the engine `drive` builds from the same checkpoints (agent.apps.drive.load_perceiver),
and match PyTorch within ATOL.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from agent.apps import cli
from agent.apps.drive import load_perceiver
from perception.checkpoint import load_model, save_model
from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.onnx_engine import OnnxNetworks
from perception.onnx_export import INPUT_NAME, output_names
from perception.preprocess import Preprocessor
from training.data.samples import samples_from_sessions

#: largest |ONNX Runtime - PyTorch| allowed per output element: `truckpilot export`'s default --atol
#: (measured on these frames: 4.6e-5 direction logits, 1.8e-4 class logits, 1.3e-4 box deltas)
ATOL = 1e-3
SIZE = (96, 128)  # (H, W) model input


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(module_tmp_path):
    """{kind: (checkpoint, exported .onnx)} for a random direction model and a random detector
    (different trunk weights, so drive runs one graph per model, as export writes them)."""
    root = module_tmp_path
    trunk = TrunkConfig(weights="none")
    torch.manual_seed(0)
    models = {"direction": DirectionNet(DirectionConfig(input_size=SIZE, trunk=trunk)),
              "detector": SSDNet(DetectorConfig(input_size=SIZE, trunk=trunk))}
    with torch.no_grad():  # the steer head starts at zero: give it weights, so its output is compared
        torch.nn.init.normal_(models["direction"].steer_head.weight, std=1e-3)  # tanh unsaturated
    out = {}
    for kind, model in models.items():
        ckpt = save_model(root / f"{kind}.safetensors", model.eval())
        onnx_path = root / f"{kind}.onnx"
        stdout = io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.stdout", stdout)
            assert cli.main(["export", str(ckpt), "--onnx", str(onnx_path)]) == 0
        printed = json.loads(stdout.getvalue())
        assert printed["match"] is True and printed["onnx"] == str(onnx_path)
        out[kind] = (ckpt, onnx_path)
    return out


@pytest.fixture(scope="module")
def sim_frames(sim_sessions) -> list[np.ndarray]:
    """The 12 recorded simulator frames (1280x720, 320x240 and 160x120), as the session store decodes them."""
    return [s.load_image() for s in samples_from_sessions(sim_sessions)]


def test_exported_files_have_the_names_the_engine_runs(exported):
    import onnx

    for kind, (_, path) in exported.items():
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == [INPUT_NAME]
        assert [o.name for o in graph.output] == output_names(kind == "direction", kind == "detector",
                                                              steer=kind == "direction")


def test_the_engine_runs_exported_files_as_drive_runs_the_checkpoints(exported, sim_frames):
    (dir_ckpt, dir_onnx), (det_ckpt, det_onnx) = exported["direction"], exported["detector"]
    from_files = OnnxNetworks.from_files(direction=dir_onnx, detector=det_onnx)
    drive = load_perceiver(str(dir_ckpt), str(det_ckpt), device="cpu", engine="onnxruntime")
    assert drive.engine == "onnxruntime" and not drive.shared_trunk
    direction, card = load_model(dir_ckpt)
    detector, _ = load_model(det_ckpt)
    x = Preprocessor.for_card(card)(sim_frames)
    assert x.shape == (len(sim_frames), 3, *SIZE)
    got = from_files(x, x)
    ran = drive._onnx(x, x)
    with torch.no_grad():
        logits, steer = direction(x, with_steer=True)
        want = {"direction_logits": logits, "steer": steer, **dict(zip(("cls_logits", "box_deltas"), detector(x)))}
    worst = {}
    for name, expected in want.items():
        file_out, drive_out = getattr(got, name), getattr(ran, name)
        assert file_out.shape == expected.shape, name
        assert torch.equal(file_out, drive_out), f"{name}: the exported file and drive's engine disagree"
        worst[name] = float((file_out - expected).abs().max())
        print(f"{name}: max |exported file - PyTorch| {worst[name]:.2g} (max |output| "
              f"{float(expected.abs().max()):.3g}) on {len(sim_frames)} sim frames")
    assert max(worst.values()) <= ATOL, worst


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_the_engine_refuses_a_graph_with_other_output_names(exported, tmp_path):
    """A graph exported with the old direction output name ("logits") is refused with the names it needs."""
    direction, card = load_model(exported["direction"][0])
    old = tmp_path / "old.onnx"
    with torch.no_grad():
        torch.onnx.export(direction, (torch.zeros(1, 3, *card.input_size),), str(old), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    with pytest.raises(ValueError, match="direction_logits"):
        OnnxNetworks.from_files(direction=old)

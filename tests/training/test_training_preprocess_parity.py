"""Train and drive see the same tensor: the training input path and the Perceiver's (PyTorch and ONNX
Runtime engines) give bit-identical network inputs for the same recorded simulator frames.

Training path: session -> FrameSamples -> the task's unaugmented dataset (frame cache resized by
perception.preprocess.resize_frame) -> the task's evaluation batches (training.tasks.normalise).
Serving path: the same frames, as the session store decodes them -> Perceiver -> what its networks
receive. Tolerance: none (exact equality); both sides run perception.preprocess.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.perceiver import Perceiver
from perception.preprocess import Letterbox
from training.data.samples import samples_from_sessions
from training.tasks import make_task

# the detector gets its own input size and normalisation, so each side must follow the card it is given
DIRECTION_CONFIG = DirectionConfig(trunk=TrunkConfig(weights="none"))  # default input (144, 192), ImageNet mean/std
DETECTOR_CONFIG = DetectorConfig(input_size=(128, 160), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                                 trunk=TrunkConfig(weights="none"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Capture(nn.Module):
    """Stands in for a network: records each input batch (B, 3, H, W) and returns it."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return x


class _EngineSpy:
    """Wraps the Perceiver's ONNX engine: records what it is called with, then runs it."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, []

    def __call__(self, x_direction, x_detector):
        self.calls.append((x_direction.clone(), x_detector.clone()))
        return self.engine(x_direction, x_detector)


def training_inputs(kind: str, config, samples) -> torch.Tensor:
    """(N, 3, H, W) float32: what training's evaluation feeds the network for ``samples`` (in order)."""
    task = make_task(kind, config)
    dataset = task.build_dataset(samples, augment=False, cache=True, seed=0)
    capture = _Capture()
    with torch.no_grad():
        for _ in task.inference_batches(capture, dataset, torch.device("cpu"), batch_size=5):
            pass
    return torch.cat(capture.inputs)


def serving_inputs(frames: list[np.ndarray], engine: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(direction input, detector input), each (N, 3, H, W) float32: what the Perceiver's networks
    receive for ``frames``, one call per frame."""
    torch.manual_seed(0)
    direction, detector = DirectionNet(DIRECTION_CONFIG), SSDNet(DETECTOR_CONFIG)
    # a randomly initialised detector: a high threshold keeps decoding and NMS short
    perceiver = Perceiver(direction, detector, device="cpu", engine=engine, score_threshold=0.99, top_k=1)
    assert not perceiver.shared_trunk  # two input sizes: each network gets its own preprocessing
    seen = {"direction": [], "detector": []}
    if engine == "onnxruntime":
        spy = perceiver._onnx = _EngineSpy(perceiver._onnx)
    else:
        direction.register_forward_pre_hook(lambda _m, args: seen["direction"].append(args[0].clone()))
        detector.register_forward_pre_hook(lambda _m, args: seen["detector"].append(args[0].clone()))
    for frame in frames:
        perceiver(frame)
    if engine == "onnxruntime":
        seen = {"direction": [c[0] for c in spy.calls], "detector": [c[1] for c in spy.calls]}
    return torch.cat(seen["direction"]), torch.cat(seen["detector"])


def assert_same_input(train: torch.Tensor, serve: torch.Tensor, what: str) -> None:
    """The parity check: equal shape and dtype, max |train - serve| == 0 (no tolerance)."""
    assert train.shape == serve.shape and train.dtype == serve.dtype == torch.float32, what
    worst = float((train - serve).abs().max())
    assert worst == 0.0, f"{what}: training and serving inputs differ by up to {worst:g}"


@pytest.fixture(scope="module")
def recorded(sim_sessions):
    """(FrameSamples, the frames as decoded by the session store, training direction input,
    training detector input) for every frame of the three simulator sessions."""
    samples = samples_from_sessions(sim_sessions)
    assert all(s.direction is not None and s.boxes_labelled for s in samples)
    frames = [s.load_image() for s in samples]
    assert {f.shape for f in frames} == {(720, 1280, 3), (240, 320, 3), (120, 160, 3)}
    return (samples, frames, training_inputs("direction", DIRECTION_CONFIG, samples),
            training_inputs("detector", DETECTOR_CONFIG, samples))


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_training_and_the_perceiver_feed_the_networks_the_same_tensor(recorded, engine):
    samples, frames, train_direction, train_detector = recorded
    serve_direction, serve_detector = serving_inputs(frames, engine)
    assert train_direction.shape == (len(frames), 3, 144, 192)
    assert train_detector.shape == (len(frames), 3, 128, 160)
    assert_same_input(train_direction, serve_direction, f"direction input ({engine})")
    assert_same_input(train_detector, serve_detector, f"detector input ({engine})")


def _variant(frames, size, mean, std, interpolation=None, fused=False) -> torch.Tensor:
    """A serving side that changed one thing: a fixed cv2 interpolation for every resize (one pass into
    the letterbox's content), or the normalisation written as x * (1 / (255 std)) - mean / std (the
    Perceiver's until now). Unchanged, it reimplements resize_frame: the frame scaled into
    ``Letterbox.fit(...).content`` (2x2 INTER_AREA halvings while at least twice as large, then
    INTER_AREA shrinking / INTER_LINEAR enlarging), black bars around it."""
    height, width = size
    resized = []
    for f in frames:
        if f.shape[:2] != (height, width):
            x0, y0, w, h = Letterbox.fit(f.shape[:2], size).content
            if interpolation is not None:
                scaled = cv2.resize(f, (w, h), interpolation=interpolation)
            else:
                scaled = f
                while (scaled.shape[0] >= 2 * h and scaled.shape[1] >= 2 * w
                       and scaled.shape[0] % 2 == 0 and scaled.shape[1] % 2 == 0):
                    scaled = cv2.resize(scaled, (scaled.shape[1] // 2, scaled.shape[0] // 2),
                                        interpolation=cv2.INTER_AREA)
                if scaled.shape[:2] != (h, w):
                    enlarging = scaled.shape[0] <= h and scaled.shape[1] <= w
                    scaled = cv2.resize(scaled, (w, h), interpolation=cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA)
            f = np.zeros((height, width, 3), np.uint8)
            f[y0:y0 + h, x0:x0 + w] = scaled
        resized.append(f)
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return x * (1.0 / (255.0 * std_t)) - mean_t / std_t if fused else (x / 255.0 - mean_t) / std_t


@pytest.mark.parametrize("change", ["always INTER_AREA", "always INTER_LINEAR", "mean + 1/255", "std x 1.01",
                                    "fused normalisation"])
def test_the_parity_check_catches_a_serving_side_that_changed(recorded, change):
    """Each change of one side (interpolation, mean/std, even float rounding) fails the parity check on
    these frames, while the unchanged reimplementation passes it."""
    _, frames, train_direction, _ = recorded
    size, mean, std = DIRECTION_CONFIG.input_size, DIRECTION_CONFIG.mean, DIRECTION_CONFIG.std
    assert_same_input(train_direction, _variant(frames, size, mean, std), "unchanged")
    changed = {
        "always INTER_AREA": lambda: _variant(frames, size, mean, std, interpolation=cv2.INTER_AREA),
        "always INTER_LINEAR": lambda: _variant(frames, size, mean, std, interpolation=cv2.INTER_LINEAR),
        "mean + 1/255": lambda: _variant(frames, size, [m + 1 / 255 for m in mean], std),
        "std x 1.01": lambda: _variant(frames, size, mean, [s * 1.01 for s in std]),
        "fused normalisation": lambda: _variant(frames, size, mean, std, fused=True),
    }[change]()
    with pytest.raises(AssertionError, match="differ by up to"):
        assert_same_input(train_direction, changed, change)

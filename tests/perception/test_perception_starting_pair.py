"""The packed starting pair (perception.starting_pair): one fp16 file, the trunk once, unpacked back into
the two ordinary checkpoints every tool loads."""
from __future__ import annotations

import json

import pytest
import torch

from perception.checkpoint import CheckpointError, ModelCard, load_model, save_model
from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.starting_pair import PAIR_NOTES, pack_pair, read_pair_meta, unpack_pair

SIZE = (64, 96)


def _pair(tmp_path, seed: int = 0, same_trunk: bool = True):
    """A direction net and a detector on one trunk (as a joint run saves them), as two checkpoints."""
    torch.manual_seed(seed)
    trunk = TrunkConfig(weights="none")
    direction = DirectionNet(DirectionConfig(input_size=SIZE, trunk=trunk), init_trunk_weights=False)
    detector = SSDNet(DetectorConfig(input_size=SIZE, trunk=trunk), init_trunk_weights=False)
    for net in (direction, detector):  # BatchNorm statistics that are not the defaults, so they must travel
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    if same_trunk:
        detector.trunk.load_state_dict(direction.trunk.state_dict())
    paths = {}
    for part, net in (("direction", direction), ("detector", detector)):
        paths[part] = save_model(tmp_path / f"best.{part}.safetensors", net, ModelCard.for_model(net))
    return paths


def test_packed_pair_holds_the_trunk_once_in_fp16_and_unpacks_to_what_was_packed(tmp_path):
    paths = _pair(tmp_path)
    packed = pack_pair(paths["direction"], paths["detector"], tmp_path / "start.safetensors", {"recipe": "test"})
    from safetensors import safe_open

    with safe_open(str(packed), framework="pt") as f:
        keys = list(f.keys())
        floats = {f.get_tensor(k).dtype for k in keys if f.get_tensor(k).is_floating_point()}
    assert floats == {torch.float16}
    trunk_keys = [k for k in keys if k.startswith("trunk.")]
    assert trunk_keys and not any(k.startswith(("direction.trunk.", "detector.trunk.")) for k in keys)
    # about half the float32 bytes of ONE checkpoint plus the detector's own layers, not two trunks
    sizes = {p: paths[p].stat().st_size for p in paths}
    assert packed.stat().st_size < 0.5 * (sizes["direction"] + sizes["detector"])
    assert read_pair_meta(packed)["notes"] == {"recipe": "test"}

    out = unpack_pair(packed, tmp_path / "cache")
    assert json.loads((out["direction"].parent / PAIR_NOTES).read_text()) == {"recipe": "test"}  # its lineage
    x = torch.randn(2, 3, *SIZE)
    for part in ("direction", "detector"):
        original, card = load_model(paths[part])
        restored, restored_card = load_model(out[part])
        assert restored_card.kind == card.kind and restored_card.input_size == card.input_size
        a, b = original.state_dict(), restored.state_dict()
        assert a.keys() == b.keys()
        for k in a:  # every tensor back, within fp16 rounding (relative 2^-11)
            assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4), k
        with torch.no_grad():
            ya, yb = original(x), restored(x)
        ya, yb = (ya, yb) if part == "direction" else (ya[0], yb[0])
        worst = float((ya - yb).abs().max())  # fp16 weights: within 2 % of the largest output
        assert worst <= 0.02 * float(ya.abs().max()), (part, worst, float(ya.abs().max()))
    # a second unpack reuses the files (named by the packed file's digest)
    stamp = out["direction"].stat().st_mtime_ns
    assert unpack_pair(packed, tmp_path / "cache") == out and out["direction"].stat().st_mtime_ns == stamp


def test_pack_refuses_two_checkpoints_of_different_runs_and_unpack_a_plain_checkpoint(tmp_path):
    paths = _pair(tmp_path, same_trunk=False)
    with pytest.raises(CheckpointError, match="different trunks"):
        pack_pair(paths["direction"], paths["detector"], tmp_path / "start.safetensors")
    assert not (tmp_path / "start.safetensors").exists()
    with pytest.raises(CheckpointError, match="not a packed starting pair"):
        unpack_pair(paths["direction"], tmp_path / "cache")
    with pytest.raises(CheckpointError, match="not found"):
        unpack_pair(tmp_path / "missing.safetensors", tmp_path / "cache")
    with pytest.raises(CheckpointError, match="detector checkpoint where the direction"):
        pack_pair(paths["detector"], paths["detector"], tmp_path / "start.safetensors")

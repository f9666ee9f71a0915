"""int8: `truckpilot export --int8` quantises the joint graph on recorded frames, the int8 graph agrees with the
float32 one on real frames, and `drive --engine auto` runs it only where it pays (a CPU with int8 dot
products, given as a real probe of this machine or an injected feature set) and was checked, else float32 with
one log line saying why.

The models are random-init (their accuracy is a coin toss, so the accuracy check's tolerance is the test's
to set where a passed check is needed); the frames come from the real simulator, recorded by the product.
"""
from __future__ import annotations

import io
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from agent.apps import cli
from agent.apps.drive import load_perceiver
from perception.checkpoint import load_model, save_model
from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.cpu_features import CpuFeatures, parse_cpuinfo, probe_cpu_features
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.onnx_engine import OnnxNetworks
from perception.onnx_export import export_networks
from perception.preprocess import Preprocessor
from perception.quantize import (INT8_ENGINE, Int8Check, choose_cpu_engine, int8_cache_path, quantize_graph,
                                 read_record, with_record)
from training.data.samples import samples_from_sessions
from training.export import export_int8

SIZE = (96, 128)  # (H, W) model input
VNNI = CpuFeatures.of("x86_64", {"sse4_2", "avx2", "fma", "avx512f", "avx512_vnni"})
AVX2_ONLY = CpuFeatures.of("x86_64", {"sse4_2", "avx2", "fma"})
#: int8 vs float32 on real frames, per output, as a share of the float32 output's range over the frames:
#: the largest |int8 - fp32| and the mean |int8 - fp32| allowed. Measured on these random models and the
#: 12 recorded frames: max 1.2 / 3.4 / 1.9 %, mean 0.42 / 0.09 / 0.06 % (direction logits / class logits /
#: box deltas); with the heads' outputs quantised too (ONNX Runtime's default operators) max was 4-7 %.
MAX_REL, MEAN_REL = 0.06, 0.01
#: largest |int8 - fp32| steer allowed, of full lock (measured on these frames: 0.022)
STEER_ATOL = 0.05
#: a tolerance any difference passes: random models' accuracy is a coin toss (see the module doc)
ANY = {"direction_accuracy": 100.0, "map_50": 100.0}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recorded(module_tmp_path):
    """Two sim sessions recorded by the product (calibration, check), 16 frames each."""
    from agent.recording.recorder import record_sim

    root = module_tmp_path / "sessions"
    for seed in (5, 6):
        record_sim(root / f"s{seed}", seed=seed, autopilot=True, headless=True, frames=16, progress=False)
    return str(root / "s5"), str(root / "s6")


@pytest.fixture(scope="module")
def joint(module_tmp_path, recorded):
    """(direction checkpoint, detector checkpoint) of one shared trunk, as a joint run writes them, and their
    int8 graph beside them, checked with a tolerance any difference passes."""
    root = module_tmp_path / "ckpt"
    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    direction = DirectionNet(DirectionConfig(input_size=SIZE, trunk=trunk))
    detector = SSDNet(DetectorConfig(input_size=SIZE, trunk=trunk))
    detector.trunk.load_state_dict(direction.trunk.state_dict())
    with torch.no_grad():  # the steer head starts at zero: give it weights, so its int8 output is compared
        torch.nn.init.normal_(direction.steer_head.weight, std=1e-3)  # tanh unsaturated
    d = save_model(root / "direction.safetensors", direction.eval())
    s = save_model(root / "detector.safetensors", detector.eval())
    done = export_int8([d, s], None, [recorded[0]], [recorded[1]], calib_frames=8, tolerance_points=ANY)
    assert done.path == int8_cache_path(d, s) == root / "direction+detector.int8.onnx"
    return str(d), str(s)


def _auto(d, s, features, caplog, **kwargs):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="agent.apps.drive"):
        perceiver = load_perceiver(d, s, device="cpu", engine="auto", cpu_features=features, **kwargs)
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.apps.drive"]
    return perceiver, lines


def test_the_probe_reads_this_cpu_and_an_injected_set_stands_for_another():
    real = probe_cpu_features()
    with open("/proc/cpuinfo") as f:
        assert real.flags == parse_cpuinfo(f.read()) and real.flags
    assert real.int8_dot == tuple(f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in real.flags)
    assert VNNI.has_int8_dot and VNNI.int8_dot == ("avx512_vnni",)
    assert not AVX2_ONLY.has_int8_dot and "no int8 dot product" in AVX2_ONLY.describe()
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\nCPU part\t: 0xd0c\n")
    assert CpuFeatures.of("aarch64", arm).int8_dot == ("asimddp",)
    assert not CpuFeatures.of("aarch64", {"fp", "asimd"}).has_int8_dot


def test_the_inference_flags_are_a_named_set_not_name_prefixes():
    from perception.cpu_features import INFERENCE_FLAGS, INT8_DOT_FLAGS

    x86 = CpuFeatures.of("x86_64", {"fpu", "pni", "sse4_2", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                                    "avx512_bf16", "amx_tile", "amx_int8", "avxfuture", "amx_unknown", "sse4_9"})
    # sorted; f16c named although no prefix rule would take it, unknown avx*/amx*/sse4* names left out
    assert x86.inference_flags == ("amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni", "avx512f",
                                   "f16c", "fma", "sse4_2")
    arm = CpuFeatures.of("aarch64", {"fp", "asimd", "asimddp", "i8mm", "bf16", "sve", "evtstrm", "crc32"})
    assert arm.inference_flags == ("asimd", "asimddp", "bf16", "i8mm", "sve")
    assert {f for flags in INT8_DOT_FLAGS.values() for f in flags} <= INFERENCE_FLAGS
    real = probe_cpu_features()
    assert set(real.inference_flags) == real.flags & INFERENCE_FLAGS and set(real.int8_dot) <= set(real.inference_flags)
    assert not CpuFeatures.of("x86_64", {"asimddp"}).has_int8_dot  # an Arm flag on x86 counts for nothing


def test_the_int8_graph_agrees_with_float32_on_real_frames(joint, sim_sessions):
    """The joint int8 graph beside the float32 one the engine exports from the same checkpoints, on simulator
    frames recorded at 1280x720, 320x240 and 160x120 (none of them calibration frames)."""
    import onnx

    d, s = joint
    path = int8_cache_path(d, s)
    nodes = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert nodes.count("QuantizeLinear") > 30 and nodes.count("Conv") > 30  # QDQ around every conv
    direction, card = load_model(d)
    detector, _ = load_model(s)
    fp32 = OnnxNetworks.from_models(direction, detector, SIZE, SIZE, shared_trunk=True)
    int8 = OnnxNetworks.from_files(joint=path)
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    x = Preprocessor.for_card(card)([sample.load_image() for sample in samples_from_sessions(sim_sessions)])
    in_memory = quantize_graph(export_networks(direction, detector, SIZE, shared_trunk=True), x[:2].numpy())
    assert OnnxNetworks(joint_graph=in_memory).precision == "int8"  # before any record is written
    want, got = fp32(x, x), int8(x, x)
    assert int8.has_steer and fp32.has_steer  # the analog driver's steer, on the int8 engine too
    steer_gap = float((want.steer - got.steer).abs().max())
    print(f"steer: max |int8 - fp32| {steer_gap:.3f} of full lock")
    assert 0 < steer_gap <= STEER_ATOL  # its float head reads int8 trunk features
    for name in ("direction_logits", "cls_logits", "box_deltas"):
        a, b = getattr(want, name), getattr(got, name)
        assert a.shape == b.shape
        scale = float(a.max() - a.min())
        worst, mean = float((a - b).abs().max()) / scale, float((a - b).abs().mean()) / scale
        print(f"{name}: max |int8 - fp32| {worst:.1%}, mean {mean:.2%} of the fp32 range {scale:.3g}")
        assert worst <= MAX_REL and mean <= MEAN_REL, (name, worst, mean)
        assert not torch.equal(a, b)  # it is int8 arithmetic, not the float32 graph again


def test_auto_runs_int8_on_a_cpu_with_vnni_and_float32_without(joint, caplog):
    d, s = joint
    perceiver, lines = _auto(d, s, VNNI, caplog)
    assert perceiver.precision == "int8" and perceiver.shared_trunk
    assert len(lines) == 1 and "int8 on" in lines[0] and "avx512_vnni" in lines[0]
    perceiver, lines = _auto(d, s, AVX2_ONLY, caplog)
    assert perceiver.engine == "onnxruntime" and perceiver.precision == "fp32"
    assert len(lines) == 1 and "no int8 dot-product instructions" in lines[0] and "running float32" in lines[0]
    # this machine, as probed: int8 exactly when it has an int8 dot product
    perceiver, _ = _auto(d, s, probe_cpu_features(), caplog)
    assert perceiver.precision == ("int8" if probe_cpu_features().has_int8_dot else "fp32")
    frame = np.zeros((240, 320, 3), np.uint8)
    assert perceiver(frame).direction in perceiver.direction_card.classes


def test_auto_runs_float32_without_a_calibration_for_these_checkpoints(joint, tmp_path, caplog):
    d, s = joint
    fresh_d, fresh_s = shutil.copy(d, tmp_path), shutil.copy(s, tmp_path)  # no int8 graph beside them
    perceiver, lines = _auto(fresh_d, fresh_s, VNNI, caplog)
    assert perceiver.precision == "fp32"
    assert len(lines) == 1 and "no calibrated int8 graph" in lines[0]
    # a graph calibrated for other weights is not used
    shutil.copy(int8_cache_path(d, s), int8_cache_path(fresh_d, fresh_s))
    model, card = load_model(fresh_s)
    with torch.no_grad():
        list(model.parameters())[-1].add_(0.5)  # a head's bias: the trunk stays shared
    save_model(fresh_s, model, card)
    perceiver, lines = _auto(fresh_d, fresh_s, VNNI, caplog)
    assert perceiver.precision == "fp32" and len(lines) == 1 and "other checkpoints" in lines[0]
    with pytest.raises(ValueError, match="other checkpoints"):
        load_perceiver(fresh_d, fresh_s, device="cpu", engine=INT8_ENGINE, cpu_features=VNNI)


def test_auto_runs_float32_when_the_accuracy_check_failed(joint, tmp_path, caplog):
    d, s = joint
    graph = tmp_path / "failed.int8.onnx"
    record = read_record(int8_cache_path(d, s))
    failed = Int8Check.compare({"direction_accuracy": 0.90, "map_50": 0.50},
                               {"direction_accuracy": 0.88, "map_50": 0.50}, 100, ["val"], "test")
    assert not failed.passed and failed.delta_points == {"direction_accuracy": -2.0, "map_50": 0.0}
    graph.write_bytes(with_record(int8_cache_path(d, s).read_bytes(), type(record)(
        record.checkpoints, record.input_size, record.calibration, failed)))
    assert choose_cpu_engine(d, s, VNNI, graph).engine != INT8_ENGINE
    perceiver, lines = _auto(d, s, VNNI, caplog, int8_graph=str(graph))
    assert perceiver.precision == "fp32" and len(lines) == 1 and "failed its accuracy check" in lines[0]
    # forced, it runs (one warning says it failed its check)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent.apps.drive"):
        forced = load_perceiver(d, s, device="cpu", engine=INT8_ENGINE, cpu_features=AVX2_ONLY, int8_graph=str(graph))
    assert forced.precision == "int8"
    assert [r.levelname for r in caplog.records if r.name == "agent.apps.drive"] == ["WARNING"]


def test_the_check_passes_within_tolerance_and_fails_beyond():
    fp32 = {"direction_accuracy": 0.900, "map_50": 0.600}
    assert Int8Check.compare(fp32, {"direction_accuracy": 0.890, "map_50": 0.580}, 600, ["v"], "t").passed
    assert not Int8Check.compare(fp32, {"direction_accuracy": 0.889, "map_50": 0.600}, 600, ["v"], "t").passed
    assert not Int8Check.compare(fp32, {"direction_accuracy": 0.900, "map_50": 0.579}, 600, ["v"], "t").passed
    assert Int8Check.compare(fp32, {"direction_accuracy": 0.905, "map_50": 0.610}, 600, ["v"], "t").passed
    assert not Int8Check.compare({}, {}, 0, [], "t").passed  # nothing measured is not a pass


def test_the_cli_writes_the_int8_file_with_its_check(joint, recorded, tmp_path):
    """`truckpilot export D S --int8 --calib ... --check ... --onnx OUT`: the file, its record, the JSON, and an
    exit status that says whether the check passed."""
    d, s = joint
    out = tmp_path / "joint.int8.onnx"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", stdout)
        rc = cli.main(["export", d, s, "--int8", "--calib", recorded[0], "--check", recorded[1],
                       "--calib-frames", "6", "--onnx", str(out)])
    printed = json.loads(stdout.getvalue())
    record = read_record(out)
    assert printed["onnx"] == str(out) and printed["calibration"]["frames"] == 6
    assert record.calibration["sessions"] == [recorded[0]] and record.check.frames == 16
    assert record.check.tolerance_points == {"direction_accuracy": 1.0, "map_50": 2.0}
    assert rc == (0 if record.check.passed else 1) and printed["check"]["passed"] == record.check.passed
    assert set(record.checkpoints) == {"direction", "detector"}

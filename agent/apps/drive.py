"""``truckpilot drive``: the model drives the simulator or a game window.

    truckpilot drive --model runs/dir/best.safetensors --sim --hud
    truckpilot drive --model dir.safetensors --detector det.safetensors --sim --steps 500 --record sessions/d1
    truckpilot drive --model dir.safetensors --window "Euro Truck Simulator 2" --fps 15 --hud
    truckpilot drive --model dir.safetensors --region 0,0,1280,720 --keys uinput --seconds 600

With ``--sim`` the simulator runs in this process: frames come from the env, keys go
through SimKeys into ``env.step``, the truck's speed comes from the sim (the controller
holds a target speed) and the controller's clock is sim time. With ``--window`` /
``--region`` the screen is captured with mss and keys are pressed through the probed
backend (X11 XTest, uinput, SendInput) under the SafetyGuard: it engages on fresh
frames; a person pressing a driving key takes over (the drive resumes 1 s after they let
go, unless --no-reengage); End or Pause is the e-stop (ends the drive); stale capture
disengages. ``--record DIR`` saves the drive as a session with the model's outputs
(direction + probabilities, detections as boxes with provenance "model") and each
takeover (extra {"takeover": true}, the person's keys as the label), so interventions
become training data. ``--shadow`` (with ``--window`` / ``--region``): a person drives, the model
runs beside them and no key of ours reaches the game; ``--record`` then keeps both, with the
frames where they disagree marked. On exit, whatever the reason, every key is released and
per-stage latency (p50 / p95) and loop FPS are printed.

    truckpilot drive --model dir.safetensors --window "Euro Truck Simulator 2" --shadow --record sessions/s1
    truckpilot label sessions/s1 --filter disagree
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from agent.apps.cli_args import region_arg, size_arg
from agent.runtime.loop import (
    CaptureSource,
    Decision,
    GuardedKeyOutput,
    KeyResult,
    LoopStats,
    Observation,
    open_sim,
    run_loop,
)
from agent.types import KeysHeld

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

#: logged (INFO, this module's logger) once by ``drive_window`` when its first tick has sent its
#: keys and timed its frame-to-key latency: the loop is driving (what a supervisor can wait for)
FIRST_TICK_LOG = "first tick done: keys sent, the drive loop is running"


# ----------------------------------------------------------------------------- recording


class DriveRecorder:
    """Writes a drive into a new session (the one session store).

    Per frame: the image; the keys held (the agent's, or during a takeover the person's);
    the action; the direction label (the model's with provenance "model", or during a
    takeover the one implied by the person's keys, provenance "keys"); the detections as
    boxes with provenance "model"; and in ``extra``: model_direction, model_probs,
    model_scores (one per box), engaged, latency_ms, speed (when known), takeover (True on
    intervention frames), sim_direction / sim_step (simulator ground truth, sim only).
    Each takeover is logged (INFO, one line: where, how long, the person's keys, the model's
    output) when it ends, and kept in ``interventions`` (``training.sessions.interventions``).
    Frames whose size differs from the session's (a resized window) are resized to it, boxes
    scaled. A full disk stops the recording (logged) but not the drive.

    shadow (``drive --shadow``): a person drives and no key of ours reaches the game; each frame
    holds the person's keys (``KeyResult.person_keys``) and the direction they imply (provenance
    "keys"), and in ``extra``: shadow True, model_keys (what the model would have pressed, 0/1 in
    left, right, throttle, brake order), model_action (steer, throttle, brake), and disagree: the
    model's direction is not the person's (``truckpilot label --filter disagree`` opens those).
    """

    def __init__(self, out: str | Path, *, source: dict, width: int, height: int, fps: float,
                 classes: tuple[str, ...], image_format: str = "png", shadow: bool = False) -> None:
        from training.sessions import SessionWriter
        from perception.types import DIRECTIONS

        self.width, self.height = int(width), int(height)
        self.classes = tuple(classes)
        self.writer = SessionWriter.create(out, source=source, width=width, height=height, fps=fps,
                                           classes=classes, directions=DIRECTIONS, image_format=image_format)
        self.failed: str | None = None
        self.takeover_frames = 0
        self.shadow = shadow
        self.disagreements = 0  # shadow frames where the model's direction is not the person's
        from training.sessions.interventions import InterventionMarker

        self.marker = InterventionMarker(fps)  # logs one line per takeover when it ends
        self.interventions: list = []  # training.sessions.interventions.Intervention, as they end

    @property
    def path(self) -> Path:
        return self.writer.path

    def record(self, observation: Observation, decision: Decision, result: KeyResult, latency_ms: float) -> None:
        """Append one tick: the frame, the agent's decision (its perception and action), the keys sent."""
        from agent.recording.recorder import action_from_keys, direction_from_keys
        from training.sessions import SessionError

        if self.failed:
            return
        perception, action = decision.perception, decision.action
        image = observation.frame.image
        h, w = image.shape[:2]
        sx, sy = self.width / w, self.height / h
        if (w, h) != (self.width, self.height):
            import cv2

            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        boxes, labels, scores = [], [], []
        for det in perception.detections:
            if det.label not in self.classes:
                continue
            x1, y1, x2, y2 = det.box
            box = [min(max(x1 * sx, 0.0), self.width), min(max(y1 * sy, 0.0), self.height),
                   min(max(x2 * sx, 0.0), self.width), min(max(y2 * sy, 0.0), self.height)]
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                labels.append(det.label)
                scores.append(round(float(det.score), 4))
        extra = {
            "model_direction": perception.direction if perception.direction_probs else None,
            "model_probs": {k: round(float(v), 4) for k, v in perception.direction_probs.items()},
            "model_scores": scores,
            "engaged": bool(result.engaged),
            "latency_ms": round(float(latency_ms), 2),
            "capture_index": int(observation.frame.index),
        }
        if observation.speed_mps is not None:
            extra["speed"] = float(observation.speed_mps)  # full precision: `truckpilot replay` feeds it back
        if observation.info is not None:
            extra["sim_direction"] = observation.info.get("direction")
            extra["sim_step"] = int(observation.info.get("step", observation.frame.index))
        if self.shadow:  # the person drove; the model only said what it would have done
            keys = result.person_keys or KeysHeld()
            act = action_from_keys(keys)
            direction, direction_source = direction_from_keys(keys), "keys"
            extra["shadow"] = True
            extra["model_keys"] = [int(k) for k in decision.keys.as_array()]
            if action is not None:
                extra["model_action"] = [float(action.steer), float(action.throttle), float(action.brake)]
            extra["disagree"] = extra["model_direction"] is not None and extra["model_direction"] != direction
            self.disagreements += bool(extra["disagree"])
        elif result.takeover and result.person_keys is not None:
            keys = result.person_keys
            act = action_from_keys(keys)
            direction, direction_source = direction_from_keys(keys), "keys"
            extra["takeover"] = True
            self.takeover_frames += 1
        else:
            keys = result.held
            act = (float(action.steer), float(action.throttle), float(action.brake)) if result.engaged else None
            direction = extra["model_direction"]
            direction_source = "model" if direction is not None else None
        try:
            written = self.writer.append(image, timestamp=self.writer.elapsed(), keys=keys.as_array(), action=act,
                                         direction=direction, direction_source=direction_source, boxes=boxes,
                                         labels=labels, boxes_source="model" if boxes else None, extra=extra)
        except SessionError as exc:
            self.failed = str(exc)
            log.error("recording stopped (the drive goes on): %s", exc)
            return
        self._note(self.marker.add(written))

    def _note(self, mark) -> None:
        if mark is not None:
            self.interventions.append(mark)
            log.info("takeover %d recorded: %s", len(self.interventions), mark.describe(),
                     extra={"intervention": mark})

    def close(self) -> None:
        from training.sessions import SessionError

        self._note(self.marker.finish())  # a takeover still going on when the drive stopped
        try:
            self.writer.close()
        except SessionError as exc:
            self.failed = self.failed or str(exc)
            log.error("closing the recording: %s", exc)


# ----------------------------------------------------------------------------- assembling a drive


def controller_config_for_time_scale(config, time_scale: float):
    """``config`` (a ControllerConfig, None = default) for a game running ``time_scale`` x real time
    (e.g. a sped-up simulator window): every time constant is divided by it, so the controller acts
    on the game's clock although it reads the wall clock."""
    from dataclasses import replace

    from agent.runtime.controller import ControllerConfig

    config = config or ControllerConfig()
    if time_scale <= 0:
        raise ValueError(f"time scale must be > 0, got {time_scale}")
    if time_scale == 1.0:
        return config
    names = ("steer_tau_s", "ttc_brake_s", "growth_tau_s", "brake_hold_s", "pwm_period_s")
    return replace(config, **{name: getattr(config, name) / time_scale for name in names})


#: --engine choices: auto = ONNX Runtime on the CPU (1 thread; int8 where it pays and was checked), PyTorch
#: on CUDA; onnxruntime = float32 ONNX Runtime; onnxruntime-int8 = the checkpoints' calibrated int8 graph
ENGINE_CHOICES = ("auto", "torch", "onnxruntime", "onnxruntime-int8")
#: the choices that run on ONNX Runtime (float32 or int8)
ONNX_ENGINES = frozenset({"onnxruntime", "onnxruntime-int8"})


def load_perceiver(model: str | None, detector: str | None, device: str | None = None, engine: str = "auto",
                   threads: int | None = None, cpu_features=None, int8_graph: str | None = None, **kwargs):
    """A Perceiver from a direction checkpoint and/or a detector checkpoint (at least one).

    engine: "torch", "onnxruntime" (float32), "onnxruntime-int8" (the int8 graph written by
    ``truckpilot export CKPT... --int8 --calib SESSION...``, ``int8_graph`` or the one beside the
    checkpoints), or "auto": on the CPU ONNX Runtime (on the project's 2-core CPU its 1-thread trunk
    is as fast as PyTorch on both cores and leaves a core to the game; see ``perception.onnx_engine``),
    int8 when perception.quantize.choose_cpu_engine allows it (int8 dot-product instructions in
    ``cpu_features``, default the probed CPU; a calibrated graph of these checkpoints whose accuracy
    check passed), else float32 with one log line saying why; PyTorch on CUDA. When "auto" cannot
    build the ONNX Runtime graphs it warns and uses PyTorch. threads: ONNX Runtime threads (default 1).
    """
    if not model and not detector:
        raise ValueError("give a direction model (--model CKPT), a detector (--detector CKPT), or both")
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINE_CHOICES)}")
    from perception.perceiver import Perceiver, pick_device

    dev = pick_device(device)
    chosen = engine if engine != "auto" else ("onnxruntime" if dev.type == "cpu" and not kwargs.get("bf16") else "torch")
    runs_onnx = chosen in ONNX_ENGINES
    onnx_kwargs = {"threads": threads or 1} if runs_onnx else {}
    if engine == "onnxruntime-int8" or (engine == "auto" and chosen == "onnxruntime"):
        onnx_kwargs["networks"] = _int8_networks(model, detector, engine, threads or 1, cpu_features, int8_graph)
    try:
        return Perceiver.from_checkpoints(model, detector, device=dev, engine="onnxruntime"
                                          if runs_onnx else chosen, **onnx_kwargs, **kwargs)
    except Exception as exc:  # noqa: BLE001 - only the automatic choice falls back
        if engine != "auto" or chosen == "torch":
            raise
        log.warning("ONNX Runtime engine unavailable (%s: %s); using PyTorch", type(exc).__name__, exc)
        return Perceiver.from_checkpoints(model, detector, device=dev, engine="torch", **kwargs)


def _int8_networks(model: str | None, detector: str | None, engine: str, threads: int, cpu_features,
                   int8_graph: str | None):
    """The int8 OnnxNetworks for load_perceiver, or None (float32) when "auto" declines: the reason is
    logged once. "onnxruntime-int8" runs the graph whatever the CPU (a warning says so) but needs it."""
    from perception.cpu_features import probe_cpu_features
    from perception.onnx_engine import OnnxNetworks
    from perception.quantize import (INT8_ENGINE, checkpoint_digests, choose_cpu_engine, int8_cache_path,
                                     read_record)

    features = cpu_features if cpu_features is not None else probe_cpu_features()
    choice = choose_cpu_engine(model, detector, features, int8_graph)
    if engine == "auto":
        log.info("engine auto: %s", choice.reason)
        if choice.engine != INT8_ENGINE:
            return None
        path = choice.int8_graph
    else:
        path = Path(int8_graph) if int8_graph else int8_cache_path(model, detector)
        record = read_record(path) if path.is_file() else None
        if record is None:
            raise ValueError(f"--engine onnxruntime-int8: no int8 graph at {path}; write it with "
                             f"`truckpilot export CKPT... --int8 --calib SESSION...`")
        if record.checkpoints != checkpoint_digests(model, detector):
            raise ValueError(f"--engine onnxruntime-int8: {path} was calibrated for other checkpoints; re-export it")
        if choice.engine != INT8_ENGINE:
            log.warning("--engine onnxruntime-int8 forced: %s", choice.reason.replace("; running float32", ""))
    joint = bool(model and detector)
    return OnnxNetworks.from_files(threads=threads, **({"joint": path} if joint else
                                                       {"direction" if model else "detector": path}))


def add_perceiver_args(p: argparse.ArgumentParser) -> None:
    """--model, --detector, --device, --engine, --threads (read back by ``perceiver_from_args``)."""
    p.add_argument("--model", metavar="CKPT", help="direction classifier checkpoint (.safetensors); without "
                                                   "--model and --detector: the published starting pair "
                                                   "(perception/weights/start.safetensors) when there is one")
    p.add_argument("--detector", metavar="CKPT", help="SSD detector checkpoint (.safetensors)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="inference engine: auto = ONNX Runtime on the CPU (int8 when the CPU has VNNI/dotprod "
                        "and `truckpilot export --int8` wrote a checked graph beside the checkpoints, else "
                        "float32), PyTorch on CUDA (default); onnxruntime = float32; onnxruntime-int8 = int8")
    p.add_argument("--threads", type=int, help="CPU threads of the inference engine (ONNX Runtime default 1; "
                                               "torch default: its own choice); 1 gives steadier "
                                               "latency on a busy machine")


def set_torch_threads(args: argparse.Namespace) -> None:
    """Apply --threads to torch (pre- and post-processing, and the torch engine)."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))


def use_starting_pair(args: argparse.Namespace) -> None:
    """Neither --model nor --detector: set both to the published starting pair
    (``perception.starting_pair``, unpacked once into the user's cache) when this checkout has one."""
    if args.model or args.detector:
        return
    from perception.starting_pair import published_pair, unpack_pair

    packed = published_pair()
    if packed is None:
        return
    pair = unpack_pair(packed)
    args.model, args.detector = str(pair["direction"]), str(pair["detector"])
    log.info("no --model/--detector: the starting pair %s", packed)


def perceiver_from_args(args: argparse.Namespace):
    """``load_perceiver`` with the options ``add_perceiver_args`` defined (``use_starting_pair`` first)."""
    use_starting_pair(args)
    return load_perceiver(args.model, args.detector, args.device, engine=args.engine, threads=args.threads)


def _classes_of(perceiver) -> tuple[str, ...]:
    card = getattr(perceiver, "detector_card", None)
    if card is not None:
        return tuple(card.classes)
    from perception.types import DEFAULT_DETECTION_CLASSES

    return DEFAULT_DETECTION_CLASSES


def _model_source(perceiver) -> dict:
    out = {}
    for name in ("direction_card", "detector_card"):
        card = getattr(perceiver, name, None)
        if card is not None:
            out[name.replace("_card", "")] = {"input_size": list(card.input_size), "classes": list(card.classes),
                                               "provenance": card.provenance}
    return out


def drive_sim(perceiver, *, seed: int = 0, time_of_day: str | None = None, weather: str | None = None,
              size: tuple[int, int] = (320, 240), traffic: float = 1.0, steps: int | None = None,
              seconds: float | None = None, fps: float | None = None, hud=None, record: str | None = None,
              controller_config=None, route_m: float = 5000.0, on_tick=None, stop_when=None) -> LoopStats:
    """The model drives the in-process simulator; returns LoopStats (distance_m from the sim).

    fps: pace the loop (None: as fast as it goes; the sim is stepped by the loop either way).
    record: a new session directory, or None.
    """
    from agent.runtime.controller import Controller, ControllerConfig

    controller_config = controller_config or ControllerConfig()
    width, height = size
    source, keys_out = open_sim(seed=seed, size=size, time_of_day=time_of_day, weather=weather, traffic=traffic,
                                route_m=route_m)
    recorder = None
    try:
        if record:
            recorder = DriveRecorder(record, source={"kind": "sim", "driver": "model", "seed": seed,
                                                     "time_of_day": time_of_day, "weather": weather,
                                                     "dt": source.dt, "models": _model_source(perceiver),
                                                     "controller": controller_config.to_record()},
                                     width=width, height=height, fps=fps or 0.0, classes=_classes_of(perceiver),
                                     image_format="png")
        return run_loop(source, perceiver, Controller(controller_config), keys_out, max_steps=steps,
                        max_seconds=seconds, fps=fps, recorder=recorder, hud=hud, on_tick=on_tick,
                        stop_when=stop_when)
    finally:
        keys_out.close()
        if recorder is not None:
            recorder.close()
        source.close()


def open_axes(spec: str):
    """The analog output ``spec`` names: NAME (one of ``agent.io.axes.AXIS_BACKENDS``: scs-controls,
    uinput-gamepad, vgamepad) or scs-controls:PATH (the SCS SDK input plugin's block at PATH, e.g.
    the one ``truckpilot sim --scs-controls PATH`` reads); ValueError for another name."""
    from agent.io.axes import open_axis_output

    name, _, path = spec.partition(":")
    if path and name != "scs-controls":
        raise ValueError(f"analog output {spec!r}: only scs-controls takes a path (scs-controls:PATH)")
    return open_axis_output(name, **({"path": path} if path else {}))


def drive_window(perceiver, *, window_title: str | None = None, region: tuple[int, int, int, int] | None = None,
                 fps: float = 15.0, keys: str = "auto", keymap: str = "arrows", steps: int | None = None,
                 seconds: float | None = None, hud=None, record: str | None = None, controller_config=None,
                 display_name: str | None = None, focus: bool = True, reengage: bool = True,
                 on_tick=None, stop_when=None, skip_repeated: bool = True, controller=None,
                 telemetry: str | None = None, axes: str | None = None, axis_config=None) -> LoopStats:
    """The model drives a game window (or screen region): mss capture, keys under the SafetyGuard.

    axes: drive analog axes instead of keys (``open_axes``): "scs-controls" (the SCS SDK input
    plugin's block where the plugin puts it), "scs-controls:PATH" (e.g. the block of ``truckpilot
    sim --scs-controls PATH``), "uinput-gamepad" or "vgamepad". The continuous steer and pedals go
    through ``AxisShaper(axis_config)`` (rate, jerk and lateral-acceleration limits, smoothing)
    under the same SafetyGuard: it centres them on every disengagement; its guard process also
    centres the SCS block on a stall or kill of the agent, and hosts a uinput pad (which only its
    maker can move) to do the same; a vgamepad pad is centred in process only (said in the log). No key is pressed; the keyboard
    still gives the e-stop and a person's takeover.

    telemetry: the game's SCS Telemetry block ("auto": where the plugin puts it, when it is there;
    a path; None: off; ``agent.io.telemetry.open_game_telemetry``): with it the controller holds its
    target speed on the game's own speed, and while the game is paused nothing is decided and no
    key is held (``agent.runtime.loop.CaptureSource``).

    controller: the object turning perceptions into keys (``update``, ``keys_for``, ``reset``, as
    ``agent.runtime.controller.Controller``); default ``Controller(controller_config)``.

    skip_repeated: act once per new game frame (see ``run_loop``); the loop may then tick faster
    than the game draws (e.g. ``fps`` = 2 x the game's frame rate) without aliasing the key PWM.
    Logs ``FIRST_TICK_LOG`` at INFO after the first tick (before ``on_tick`` sees it).

    keys: "auto" (probe: X11 XTest, else uinput; SendInput on Windows), "x11", "uinput" or "windows".
    focus: give the window the keyboard focus first (XTest keys go to the focused window).
    """
    from agent.io.capture import open_capture
    from agent.runtime.controller import Controller, ControllerConfig
    from agent.io.guard import GuardConfig, SafetyGuard
    from agent.io.keys import KeyMap, probe_key_backend

    if keys == "sim":
        raise ValueError("--keys sim only drives the built-in simulator (use --sim); a game needs x11, uinput "
                         "or windows keys")
    # the loop paces itself (so "capture" times the grab alone, not the wait for the next tick)
    capture = open_capture(window_title=window_title, region=region, display_name=display_name)
    try:
        first = capture.grab()
        perceiver(first.image)  # warm up (first inference can be slow) before any key is held
        if focus and capture.window_id is not None:
            from agent.io.window import focus_window

            focus_window(capture.window_id, display_name)
        backend, why = probe_key_backend(None if keys == "auto" else keys, KeyMap.named(keymap), display_name)
        log.info("keys: %s", why)
    except BaseException:
        capture.close()
        raise
    focus_check = None
    if capture.window_id is not None:
        from agent.io.window import FocusCheck

        focus_check = FocusCheck(capture.window_id, display_name)  # keys only while the game has the focus
    # the guard process releases the keys after max(3 periods, 0.5 s) without a heartbeat (a busy
    # machine can starve the loop or the guard process for a few hundred ms; measured under load)
    try:
        # ... and counts a picture unchanged for 1 s (not just 15 ticks) while keys are held as stale:
        # the loop may tick faster than the game draws, and a truck pulling away changes it slowly
        config = GuardConfig(period_s=1.0 / fps, stall_periods=max(3.0, 0.5 * fps),
                             frozen_while_driving_frames=max(15, int(round(fps))))
        axis_out = open_axes(axes) if axes is not None else None
    except BaseException:
        backend.close()
        capture.close()
        if focus_check is not None:
            focus_check.close()
        raise
    try:
        guard = SafetyGuard(backend, config=config, focus_check=focus_check, axes=axis_out)
    except BaseException:
        backend.close()
        capture.close()
        if axis_out is not None:
            axis_out.close()
        if focus_check is not None:
            focus_check.close()
        raise
    from agent.io.telemetry import TelemetryError, open_game_telemetry

    try:
        told = open_game_telemetry(telemetry)
    except TelemetryError:
        guard.close()
        backend.close()
        capture.close()
        if focus_check is not None:
            focus_check.close()
        raise
    previous_handlers = _install_signal_handlers(guard)
    source = CaptureSource(capture, telemetry=told)
    keys_out = GuardedKeyOutput(guard, reengage=reengage)
    recorder = None
    controller = controller or Controller(controller_config)
    shaper = None
    if axis_out is not None:
        from agent.runtime.axis_control import AxisShaper

        shaper = AxisShaper(axis_config)
    try:
        if record:
            h, w = first.image.shape[:2]
            recorder = DriveRecorder(record, source={"kind": "window" if window_title else "region",
                                                     "title": window_title, "region": list(region) if region else None,
                                                     "driver": "model", "platform": sys.platform,
                                                     "keys": why, "models": _model_source(perceiver),
                                                     "telemetry": told.path if told is not None else None,
                                                     "controller": controller.config.to_record()
                                                     if isinstance(getattr(controller, "config", None), ControllerConfig)
                                                     else None,
                                                     "axes": None if shaper is None else
                                                     {"output": axes, **shaper.config.to_record()}},
                                     width=w, height=h, fps=fps, classes=_classes_of(perceiver), image_format="jpg")

        def tick_done(i, observation, perception, action, result):
            if i == 0:  # the first tick is always decided: its frame-to-key latency is timed by now
                log.info(FIRST_TICK_LOG)
            if on_tick is not None:
                on_tick(i, observation, perception, action, result)

        return run_loop(source, perceiver, controller, keys_out, max_steps=steps,
                        max_seconds=seconds, fps=fps, recorder=recorder, hud=hud, on_tick=tick_done,
                        stop_when=stop_when, skip_repeated=skip_repeated, axes=shaper)
    finally:
        try:
            keys_out.close()
        finally:
            if recorder is not None:
                recorder.close()
            source.close()
            if focus_check is not None:
                focus_check.close()
            _restore_signal_handlers(previous_handlers)


def shadow_window(perceiver, *, window_title: str | None = None, region: tuple[int, int, int, int] | None = None,
                  fps: float = 15.0, steps: int | None = None, seconds: float | None = None, hud=None,
                  record: str | None = None, controller_config=None, display_name: str | None = None,
                  on_tick=None, stop_when=None, skip_repeated: bool = True) -> LoopStats:
    """Shadow mode (``truckpilot drive --window ... --shadow``): a person drives the game and the model
    runs beside them on the same frames, on the one tick, with no key backend at all (nothing of
    ours can reach the game); the key output reads the person's keys (``PersonKeysOutput``).

    record: a new session of what the person did and what the model would have done
    (``DriveRecorder(shadow=True)``: ``extra["disagree"]`` where their directions differ); the drive
    logs how many frames disagreed. SIGTERM / SIGHUP end it cleanly, like Ctrl+C.
    """
    import signal
    import threading

    from agent.io.capture import open_capture
    from agent.recording.recorder import open_key_reader
    from agent.recording.window_parts import PersonKeysOutput
    from agent.runtime.controller import Controller

    controller = Controller(controller_config)
    capture = open_capture(window_title=window_title, region=region, display_name=display_name)
    keys_out = recorder = None
    previous: dict = {}
    try:
        first = capture.grab()
        perceiver(first.image)  # warm up, as a drive does
        keys_out = PersonKeysOutput(open_key_reader(display_name))
        if record:
            h, w = first.image.shape[:2]
            recorder = DriveRecorder(record, source={"kind": "window" if window_title else "region",
                                                     "title": window_title, "region": list(region) if region else None,
                                                     "driver": "person", "shadow": True, "platform": sys.platform,
                                                     "models": _model_source(perceiver),
                                                     "controller": controller.config.to_record()},
                                     width=w, height=h, fps=fps, classes=_classes_of(perceiver), image_format="jpg",
                                     shadow=True)
        if threading.current_thread() is threading.main_thread():
            def _end(signum, _frame):
                raise SystemExit(128 + signum)  # run_ticks ends the drive: StopReason.SIGNAL

            for name in ("SIGTERM", "SIGHUP"):
                if hasattr(signal, name):
                    previous[name] = signal.signal(getattr(signal, name), _end)

        def tick_done(i, observation, perception, action, result):
            if i == 0:
                log.info(FIRST_TICK_LOG)
            if on_tick is not None:
                on_tick(i, observation, perception, action, result)

        log.info("shadow mode: the model decides beside the person; no key is sent to the game")
        stats = run_loop(CaptureSource(capture), perceiver, controller, keys_out, max_steps=steps,
                         max_seconds=seconds, fps=fps, recorder=recorder, hud=hud, on_tick=tick_done,
                         stop_when=stop_when, skip_repeated=skip_repeated)
        if recorder is not None:
            log.info("shadow: the model's direction differed from the person's on %d of %d recorded frames",
                     recorder.disagreements, recorder.writer.frames_written)
        return stats
    finally:
        _restore_signal_handlers(previous)
        if recorder is not None:
            recorder.close()
        if keys_out is not None:
            keys_out.close()
        capture.close()


def _install_signal_handlers(guard) -> dict:
    """SIGTERM / SIGHUP end the drive cleanly (keys released) while it runs; returns the old handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread can; the guard process still covers a dying loop
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.getsignal(getattr(signal, n)) for n in names}
    guard.install_signal_handlers()
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    import signal

    for name, handler in previous.items():
        signal.signal(getattr(signal, name), handler)


# ----------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot drive", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_perceiver_args(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true", help="drive the built-in simulator in this process (default)")
    where.add_argument("--window", metavar="TITLE", help="capture the window whose title contains TITLE")
    where.add_argument("--region", type=region_arg, metavar="X,Y,W,H", help="capture this screen region")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="stop after N loop ticks")
    budget.add_argument("--seconds", type=float, help="stop after S seconds of wall time")
    p.add_argument("--fps", type=float, help="loop rate; game: capture rate (default 15); sim: default 15 "
                                             "(real time) with --hud, else as fast as possible; 0 = unpaced")
    p.add_argument("--hud", action="store_true", help="show an OpenCV window with boxes, direction, keys, latency")
    p.add_argument("--record", metavar="DIR", help="save the drive as a session in this new directory")
    p.add_argument("--shadow", action="store_true",
                   help="shadow mode (with --window / --region): a person drives, the model runs beside them and "
                        "sends no key; with --record the session marks where the model's direction differs from "
                        "the person's (`truckpilot label SESSION --filter disagree` opens those frames)")
    p.add_argument("--keys", choices=("auto", "x11", "uinput", "windows", "sim"), default="auto",
                   help="key backend for a game (default: probe); the sim always uses sim keys")
    p.add_argument("--keymap", choices=("arrows", "wasd"), default="arrows", help="game keys (default arrows)")
    p.add_argument("--display", help="X display (default $DISPLAY)")
    p.add_argument("--telemetry", default="auto", metavar="PATH|auto|off",
                   help="a game's SCS Telemetry block (scs-sdk-plugin): the controller holds --target-speed on the "
                        "game's speed, and nothing is pressed while the game is paused; auto (default: where the "
                        "plugin puts it, when it is there), a file (e.g. `truckpilot sim --telemetry PATH`), or off")
    p.add_argument("--axes", metavar="scs-controls[:PATH]|uinput-gamepad|vgamepad",
                   help="(with --window / --region) steer and press the pedals through analog axes instead of keys: "
                        "the SCS SDK input plugin's block (ETS2LA scs-sdk-controller) where the plugin puts it, or at "
                        "PATH (e.g. `truckpilot sim --scs-controls PATH`); a Linux uinput gamepad; a Windows "
                        "vgamepad (ViGEmBus) pad; rate, jerk and lateral-acceleration limited "
                        "(agent.runtime.axis_control); the guard centres them on any disengagement")
    p.add_argument("--no-focus", action="store_true", help="do not give the game window the keyboard focus")
    p.add_argument("--no-reengage", action="store_true",
                   help="after a disengagement stay off (default: resume once the cause is gone: 1 s after a "
                        "takeover ends, 0.2 s after a loop stall, 1, 2, 4 ... s while the picture stays frozen)")
    p.add_argument("--target-speed", type=float,
                   help="speed the controller holds where it knows the speed (the sim; a game with --telemetry), "
                        "m/s (default 12)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="the game runs this many times real time (a sped-up sim window, e.g. truckpilot sim --fps 30 "
                        "= 2): the controller's time constants are divided by it (default 1)")
    sim = p.add_argument_group("simulator")
    sim.add_argument("--seed", type=int, default=0, help="simulator seed (road, traffic; conditions if not given)")
    sim.add_argument("--time-of-day", choices=("day", "dusk", "night"), help="default: picked by the seed")
    sim.add_argument("--weather", choices=("clear", "fog", "rain"), help="default: picked by the seed")
    sim.add_argument("--sim-size", type=size_arg, default=(320, 240), help="simulator frame size (default 320x240)")
    sim.add_argument("--traffic", type=float, default=1.0, help="traffic density (0 = empty road)")
    sim.add_argument("--route-m", type=float, default=5000.0, help="route length, m (the drive ends there)")
    p.add_argument("--json", metavar="FILE", help="also write the LoopStats as JSON to FILE ('-' = stdout)")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    set_torch_threads(args)
    from perception.checkpoint import CheckpointError

    try:
        use_starting_pair(args)
    except CheckpointError as exc:
        print(f"truckpilot drive: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not args.model and not args.detector:
        print("truckpilot drive: give --model CKPT (direction classifier) and/or --detector CKPT (this checkout "
              "has no starting pair: `truckpilot pretrain --publish perception/weights` makes one)", file=sys.stderr)
        return EXIT_USAGE
    from agent.runtime.controller import ControllerConfig

    config = ControllerConfig() if args.target_speed is None else ControllerConfig(target_speed_mps=args.target_speed)
    try:
        config = controller_config_for_time_scale(config, args.time_scale)
    except ValueError as exc:
        print(f"truckpilot drive: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        perceiver = perceiver_from_args(args)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"truckpilot drive: {exc}", file=sys.stderr)
        return EXIT_ERROR
    hud = None
    try:
        if args.hud:
            from agent.runtime.hud import HudWindow

            hud = HudWindow("TruckPilot drive")
        if args.axes and not (args.window or args.region):
            print("truckpilot drive: --axes drives a game window (--window / --region); in the simulator compare "
                  "analog and key driving with `truckpilot eval --drivers agent,analog`", file=sys.stderr)
            return EXIT_USAGE
        if args.shadow:
            if not (args.window or args.region):
                print("truckpilot drive: --shadow needs --window or --region (a person drives a game; in the "
                      "simulator record the autopilot with `truckpilot record` instead)", file=sys.stderr)
                return EXIT_USAGE
            stats = shadow_window(perceiver, window_title=args.window, region=args.region, fps=args.fps or 15.0,
                                  steps=args.steps, seconds=args.seconds, hud=hud, record=args.record,
                                  controller_config=config, display_name=args.display)
        elif args.window or args.region:
            fps = args.fps or 15.0
            stats = drive_window(perceiver, window_title=args.window, region=args.region, fps=fps, keys=args.keys,
                                 keymap=args.keymap, steps=args.steps, seconds=args.seconds, hud=hud,
                                 record=args.record, controller_config=config, display_name=args.display,
                                 focus=not args.no_focus, reengage=not args.no_reengage,
                                 telemetry=None if args.telemetry == "off" else args.telemetry, axes=args.axes)
        else:
            fps = args.fps if args.fps is not None else (15.0 if args.hud else None)
            stats = drive_sim(perceiver, seed=args.seed, time_of_day=args.time_of_day, weather=args.weather,
                              size=args.sim_size, traffic=args.traffic, steps=args.steps, seconds=args.seconds,
                              fps=fps or None, hud=hud, record=args.record, controller_config=config,
                              route_m=args.route_m)
    except (ValueError, LookupError, RuntimeError, OSError) as exc:
        print(f"truckpilot drive: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if hud is not None:
            hud.close()
    print(stats.summary(), flush=True)
    if args.record:
        print(f"recorded the drive to {args.record}", flush=True)
    if args.json:
        text = json.dumps(stats.to_dict(), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return EXIT_OK


"""Replay a recorded drive through perception and control, and compare with what was recorded.

A session written by ``truckpilot drive --sim --record DIR`` (``agent.apps.drive.DriveRecorder``)
holds, per frame, the image the agent saw (PNG, lossless), the keys it held, its action and its
perception (``direction``, ``extra.model_direction`` / ``model_probs`` / ``model_scores``, the
boxes). ``replay_session`` runs the agent's one tick (``AgentDecider``: Perceiver ->
Controller.update -> Controller.keys_for) over those frames in order, starting from a fresh
controller, with the clock and the speed the drive used:

* clock: sim time, ``extra.capture_index`` (the SimSource's step count) x ``source.dt`` of the
  manifest, the same product the drive computed (``SimSource._observation``);
* speed: ``extra.speed`` (full precision since 2026-12-06; sessions recorded before hold it rounded to
  1 mm/s, so their replayed throttle may differ from the recorded one by up to 1.25e-4, hence
  ``Tolerances.throttle``; a throttle key could in principle flip where the PWM's integrator sits
  within that of zero);
* controller settings: the manifest's ``source["controller"]`` when the drive recorded them
  (``ControllerConfig.to_record``), else what the caller gives.

and compares, frame by frame:

=========  ==========================================  ===========================
field      recorded                                    compared
=========  ==========================================  ===========================
keys       ``keys`` (left, right, throttle, brake)     exactly
direction  ``extra.model_direction``                   exactly
steer      ``action[0]``                               ``|diff| <= tol.steer``
throttle   ``action[1]``, brake ``action[2]``          ``|diff| <= tol.throttle``
probs      ``extra.model_probs`` (4 decimals)          ``|diff| <= tol.probs``
boxes      ``boxes`` / ``labels`` / ``model_scores``   count and labels exactly,
                                                       corners ``<= tol.box_px``,
                                                       scores ``<= tol.probs``
=========  ==========================================  ===========================

Float32 inference on one CPU with one engine is deterministic, so a replay on the machine that
recorded reproduces steer bit for bit; the tolerances only absorb the rounding the recorder does
(probabilities and scores to 4 decimals) and the last-bit differences another CPU's SIMD kernels
give. A changed preprocessing, network, decoding or controller moves steer by far more (a 20 %
gain change moves it by 20 % of its value), and sooner or later flips a key.

Only sim drives can be replayed: a window drive's controller clock (when each frame appeared) is
not recorded, and frames where a person took over or the agent was disengaged have no decision of
the agent to compare; both raise ``ReplayError`` naming the session and the frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.runtime.loop import Observation
from agent.runtime.parts import AgentDecider
from agent.types import Frame

#: the fields compared, in report order
FIELDS = ("keys", "direction", "steer", "throttle", "brake", "probs", "boxes")


class ReplayError(Exception):
    """The session cannot be replayed (missing, damaged, not a sim drive recording). The message names it."""


@dataclass(frozen=True)
class Tolerances:
    """How far a replayed float may be from the recorded one and still count as the same.

    steer: steer (recorded at full float precision; 1e-4 is far above the ~1e-7 that float32
        kernels differ by across CPUs, far below the 0.1 x |steer| a 20 % gain change makes, and
        below the PWM's deadzone 0.05).
    throttle: throttle and brake: they follow the speed, which sessions recorded before 2026-12-06
        hold rounded to 1 mm/s, so the replay's differs by up to speed_kp (0.25 /(m/s)) x 0.5 mm/s =
        1.25e-4; 1e-3 allows that and catches any change of the speed controller's gains.
    probs: direction probabilities and box scores (the recorder rounds them to 4 decimals, 5e-5).
    box_px: box corners, pixels of the frame.
    """

    steer: float = 1e-4
    throttle: float = 1e-3
    probs: float = 2e-4
    box_px: float = 0.05


@dataclass(frozen=True)
class Mismatch:
    """One field of one frame that replayed differently."""

    frame: int
    field: str
    recorded: object
    replayed: object

    def __str__(self) -> str:
        return f"frame {self.frame} {self.field}: recorded {self.recorded!r}, replayed {self.replayed!r}"


@dataclass
class ReplayReport:
    """What a replay found: frames compared, mismatches per field, the first mismatch of each field."""

    session: str
    frames: int = 0
    mismatches: dict[str, int] = field(default_factory=lambda: {name: 0 for name in FIELDS})
    first: dict[str, Mismatch] = field(default_factory=dict)
    tolerances: Tolerances = field(default_factory=Tolerances)

    @property
    def ok(self) -> bool:
        return self.frames > 0 and not any(self.mismatches.values())

    @property
    def first_mismatch(self) -> Mismatch | None:
        return min(self.first.values(), key=lambda m: (m.frame, FIELDS.index(m.field)), default=None)

    def add(self, mismatch: Mismatch) -> None:
        self.mismatches[mismatch.field] += 1
        self.first.setdefault(mismatch.field, mismatch)

    def summary(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.mismatches.items())
        t = self.tolerances
        lines = [f"replay {self.session}: {self.frames} frames; mismatches: {counts} "
                 f"(steer tol {t.steer:g}, throttle/brake tol {t.throttle:g}, probs/scores tol {t.probs:g}, "
                 f"boxes tol {t.box_px:g} px)"]
        if self.ok:
            lines.append("REPLAY OK: perception and control reproduce the recording")
        else:
            first = self.first_mismatch
            lines.append(f"REPLAY MISMATCH: first at {first}" if first else "REPLAY MISMATCH: no frames replayed")
            for name in FIELDS:
                if name in self.first and self.first[name] is not first:
                    lines.append(f"  first {name}: {self.first[name]}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"session": self.session, "frames": self.frames, "ok": self.ok, "mismatches": dict(self.mismatches),
                "first": {name: asdict(m) for name, m in self.first.items()},
                "tolerances": asdict(self.tolerances)}


def open_drive_session(path: str | Path):
    """The session at ``path`` (``training.sessions.Session``), checked to be a replayable sim drive
    recording; ReplayError naming the path otherwise."""
    from training.sessions import Session, SessionError

    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such session directory")
    try:
        session = Session.open(path)
    except (SessionError, OSError, ValueError) as exc:
        raise ReplayError(f"{path}: cannot open the session: {exc}") from exc
    source = session.manifest.source or {}
    if source.get("kind") != "sim" or "dt" not in source:
        raise ReplayError(f"{path}: not a simulator drive (source kind {source.get('kind')!r}); only "
                          f"`truckpilot drive --sim --record` sessions record the controller's clock (sim time)")
    if not session.records():
        raise ReplayError(f"{path}: the session has no frames")
    return session


def replay_session(session, perceiver, controller_config=None, *, tolerances: Tolerances | None = None,
                   use_speed: bool = True, controller=None) -> ReplayReport:
    """Replay a drive recording (a path or an opened Session) through ``perceiver`` (frame ->
    Perception, e.g. a Perceiver) and a fresh ``Controller(controller_config)`` (or ``controller``),
    comparing each frame with what was recorded; returns the ReplayReport (``ok`` when nothing differs).
    controller_config None: the settings the drive recorded (``source["controller"]``), else the defaults.
    use_speed: as the drive's AgentDecider (True for ``truckpilot drive --sim``)."""
    from agent.runtime.controller import Controller, ControllerConfig
    from training.sessions import SessionError

    if not hasattr(session, "records"):
        session = open_drive_session(session)
    recorded = (session.manifest.source or {}).get("controller")
    if controller_config is None and controller is None and recorded is not None:
        try:
            controller_config = ControllerConfig.from_record(recorded)
        except (TypeError, ValueError) as exc:
            raise ReplayError(f"{session.path}: {exc}") from None
    tol = tolerances or Tolerances()
    dt = float(session.manifest.source["dt"])
    classes = set(session.manifest.classes)
    width, height = session.manifest.width, session.manifest.height
    decider = AgentDecider(perceiver, controller if controller is not None else Controller(controller_config),
                           use_speed=use_speed)
    report = ReplayReport(session=str(session.path), tolerances=tol)
    for record in session.records():
        extra = record.extra or {}
        where = f"{session.path}: frame {record.index}"
        if "model_direction" not in extra or "capture_index" not in extra:
            raise ReplayError(f"{where} has no model outputs (extra.model_direction, capture_index): "
                              f"not a `truckpilot drive --record` session")
        if extra.get("takeover") or not extra.get("engaged", True) or record.action is None:
            raise ReplayError(f"{where}: the agent was not driving (takeover or disengaged); replay compares "
                              f"only drives the agent drove throughout")
        try:
            image = session.load_image(record)
        except SessionError as exc:
            raise ReplayError(str(exc)) from exc
        index = int(extra["capture_index"])
        speed = extra.get("speed")
        observation = Observation(frame=Frame(image=image, timestamp=float(record.timestamp), index=index),
                                  clock_s=index * dt, speed_mps=None if speed is None else float(speed))
        decision = decider.decide(observation)
        _compare(report, record, decision, tol, classes, width, height)
        report.frames += 1
    return report


def _compare(report: ReplayReport, record, decision, tol: Tolerances, classes: set, width: int,
             height: int) -> None:
    frame = record.index
    perception, action = decision.perception, decision.action
    keys = tuple(bool(k) for k in decision.keys.as_array())
    if keys != tuple(bool(k) for k in record.keys):
        report.add(Mismatch(frame, "keys", _keys_text(record.keys), _keys_text(keys)))
    extra = record.extra
    direction = perception.direction if perception.direction_probs else None
    if direction != extra.get("model_direction"):
        report.add(Mismatch(frame, "direction", extra.get("model_direction"), direction))
    for i, name in enumerate(("steer", "throttle", "brake")):
        recorded, replayed = float(record.action[i]), float(getattr(action, name))
        if not abs(recorded - replayed) <= (tol.steer if name == "steer" else tol.throttle):
            report.add(Mismatch(frame, name, recorded, replayed))
    probs = extra.get("model_probs") or {}
    replayed_probs = {k: float(v) for k, v in perception.direction_probs.items()}
    if set(probs) != set(replayed_probs) or any(not abs(float(probs[k]) - replayed_probs[k]) <= tol.probs
                                                for k in probs):
        report.add(Mismatch(frame, "probs", probs, {k: round(v, 6) for k, v in replayed_probs.items()}))
    recorded_boxes = [(label, tuple(box), score) for label, box, score in
                      zip(record.labels, record.boxes, extra.get("model_scores") or [math.nan] * len(record.boxes))]
    replayed_boxes = _boxes_as_recorded(perception.detections, classes, width, height)
    if not _same_boxes(recorded_boxes, replayed_boxes, tol):
        report.add(Mismatch(frame, "boxes", _boxes_text(recorded_boxes), _boxes_text(replayed_boxes)))


def _boxes_as_recorded(detections, classes: set, width: int, height: int) -> list:
    """The detections as DriveRecorder stores them: the session's classes, clipped to the frame, non-empty."""
    out = []
    for det in detections:
        if det.label not in classes:
            continue
        x1, y1, x2, y2 = det.box
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
               min(max(y2, 0.0), height))
        if box[2] > box[0] and box[3] > box[1]:
            out.append((det.label, tuple(float(v) for v in box), float(det.score)))
    return out


def _same_boxes(recorded: list, replayed: list, tol: Tolerances) -> bool:
    if len(recorded) != len(replayed):
        return False
    for (l1, b1, s1), (l2, b2, s2) in zip(recorded, replayed):
        if l1 != l2 or any(not abs(a - b) <= tol.box_px for a, b in zip(b1, b2)):
            return False
        if not (isinstance(s1, float) and math.isnan(s1)) and not abs(float(s1) - s2) <= tol.probs:
            return False
    return True


def _keys_text(keys) -> str:
    return "".join(c if k else "-" for c, k in zip("LRTB", keys))


def _boxes_text(boxes: list) -> list:
    return [(label, [round(v, 2) for v in box], round(float(score), 4)) for label, box, score in boxes]

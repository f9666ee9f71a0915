"""FrameSample: one labelled frame as training sees it, and adapters that make them.

A sample holds its image lazily (a loader callable) so that a session of
thousands of frames costs nothing until the frame cache decodes it once.
``group`` names the unit the validation split keeps together (a session id,
or a sim seed): neighbouring frames of one drive are nearly identical, so a
split by frame would leak the answers into validation.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameSample:
    """One labelled frame.

    load_image: returns the frame, HxWx3 uint8 RGB.
    size: (H, W) of that frame in px.
    direction: one of perception.types.DIRECTIONS, or None when unlabelled.
    boxes: tuple of (x1, y1, x2, y2) in frame px, 0 <= x1 < x2 <= W.
    labels: class name per box.
    group: split unit (session id or sim seed); never split across train/val.
    name: human-readable id for galleries, e.g. "session-3/000042".
    boxes_labelled: whether someone labelled this frame's objects (an empty
        ``boxes`` then means "no objects"); unlabelled frames are left out of
        detector training instead of teaching it that the scene is empty.
    meta: facts about the frame's origin: for session frames the manifest's source, classes and
        directions, and ``takeover`` (a person drove this frame: ``--takeover-weight`` draws it more often).
    steer: the continuous steering label, [-1, 1] of full lock, + = right, or None when the frame has
        none (``training.sessions.telemetry.steer_label``: the sim expert's intended steer, or a game's
        wheel/pad telemetry); the direction network's steer head trains on the frames that have one.
    """

    load_image: Callable[[], np.ndarray]
    size: tuple[int, int]
    direction: str | None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[str, ...] = ()
    group: str = ""
    name: str = ""
    boxes_labelled: bool = True
    meta: dict = field(default_factory=dict, compare=False)
    steer: float | None = None

    def __post_init__(self) -> None:
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(self.labels)} labels")


def _constant(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


def sample_from_array(image: np.ndarray, direction, boxes=(), labels=(), group="", name="",
                      steer: float | None = None) -> FrameSample:
    """A sample around an in-memory HxWx3 uint8 RGB image (sim rollouts, tests)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name or 'image'}: expected HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    return FrameSample(
        load_image=_constant(image),
        size=(int(image.shape[0]), int(image.shape[1])),
        direction=direction,
        boxes=tuple(tuple(float(v) for v in b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)),
        labels=tuple(str(label) for label in labels),
        group=str(group),
        name=name,
        steer=None if steer is None else float(steer),
    )


def samples_from_session(path: str | Path) -> list[FrameSample]:
    """Every frame of one recorded session (training.sessions format) as FrameSamples, except the
    frames recorded while the game was paused (``training.sessions.is_paused``: a frozen picture
    nobody drove; their count is logged).

    The group is the session id; images are read from disk when first used.
    """
    from training.sessions import Session, is_paused
    from training.sessions.interventions import is_takeover
    from training.sessions.telemetry import steer_label

    session = Session.open(Path(path))
    manifest = session.manifest
    height, width = int(manifest.height), int(manifest.width)
    group = str(manifest.id)
    samples = []
    paused = 0
    for record in session.records():
        if is_paused(record.extra):
            paused += 1
            continue
        samples.append(
            FrameSample(
                load_image=_SessionImage(session, record),
                size=(height, width),
                direction=record.direction,
                boxes=tuple(tuple(float(v) for v in box) for box in record.boxes),
                labels=tuple(record.labels),
                group=group,
                name=f"{group}/{record.index:06d}",
                boxes_labelled=record.boxes_source is not None,
                meta={"source": dict(manifest.source or {}), "classes": tuple(manifest.classes),
                      "directions": tuple(manifest.directions), "takeover": is_takeover(record)},
                steer=steer_label(record.extra),
            )
        )
    if paused:
        log.info("session %s: %d frames recorded while the game was paused are left out", path, paused)
    if not samples:
        log.warning("session %s has no frames%s", path, " but paused ones" if paused else "")
    return samples


@dataclass(frozen=True)
class _SessionImage:
    """Picklable loader (DataLoader workers) for one session frame."""

    session: object
    record: object

    def __call__(self) -> np.ndarray:
        return self.session.load_image(self.record)


def samples_from_sessions(paths: Iterable[str | Path]) -> list[FrameSample]:
    """Concatenate :func:`samples_from_session` over several sessions."""
    out: list[FrameSample] = []
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"session {path} does not exist: record one with `truckpilot record` first")
        out.extend(samples_from_session(path))
    return out


def samples_from_sim(
    seeds: Sequence[int],
    steps: int,
    width: int = 320,
    height: int = 240,
    time_of_day: str = "day",
    weather: str = "clear",
    every: int = 1,
) -> list[FrameSample]:
    """Roll the simulator's scripted expert out in memory; one group per seed.

    Returns ``steps // every`` samples per seed with the sim's ground-truth
    direction, boxes (xyxy frame px) and steer (the expert's intended steer).
    """
    import gymnasium

    import sim  # noqa: F401  (registers TruckSim-v0)
    from sim.expert import Expert
    from sim.rollout import expert_policy, rollout

    samples: list[FrameSample] = []
    for seed in seeds:
        env = gymnasium.make("TruckSim-v0", width=width, height=height, time_of_day=time_of_day, weather=weather)
        try:
            expert = Expert()
            # an episode that ends is followed by an unseeded reset: the seed's random stream goes on
            for step in rollout(env, expert_policy(env, expert), steps, seed=int(seed), on_end="reset"):
                if step.index % every == 0:
                    samples.append(
                        sample_from_array(
                            np.ascontiguousarray(step.obs),
                            step.info["direction"],
                            step.info["boxes"],
                            step.info["labels"],
                            group=f"sim-{seed}-{time_of_day}-{weather}",
                            name=f"sim-{seed}/{step.index:06d}",
                            steer=step.info.get("intended_steer"),
                        )
                    )
        finally:
            env.close()
    return samples


def split_by_group(
    samples: Sequence[FrameSample], val_fraction: float, seed: int
) -> tuple[list[FrameSample], list[FrameSample]]:
    """Hold out whole groups (sessions/seeds) for validation; never split a group.

    At least one group goes to each side; raises if there is only one group,
    with the fix (record another session or pass --val-data).
    """
    groups = sorted({s.group for s in samples})
    if len(groups) < 2:
        raise ValueError(
            f"only one session ({groups[0] if groups else 'none'}) in --data: validation must hold out whole "
            "sessions, so record at least two sessions or pass --val-data SESSION..."
        )
    rng = random.Random(seed)
    shuffled = groups[:]
    rng.shuffle(shuffled)
    n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
    val_groups = set(shuffled[:n_val])
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    log.info("split by session: %d train sessions (%d frames), %d val sessions (%d frames): %s",
             len(groups) - n_val, len(train), n_val, len(val), sorted(val_groups))
    return train, val

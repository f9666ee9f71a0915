"""Make the project's starting checkpoint: the joint pair (one ResNet34 trunk, direction and detector
heads) trained on the simulator, published as fp16 safetensors in ``perception/weights/``.

    truckpilot pretrain --out /tmp/start     # record + train (~1.6 CPU hours on 2 cores)
    truckpilot pretrain --out /tmp/start --publish perception/weights

The recipe is the demo's (``agent.apps.demo``: its recording, conditions and joint training) with
more of everything: ``--seeds`` autopilot sessions of ``--frames-per-session`` frames under the
demo's six training conditions, validated on the demo's own validation sessions (seeds 101 and 102,
dusk/fog and night/rain), trained for ``--train-seconds`` at ``--input-height`` x ``--input-width``.
Seeds 101-102 (validation), 201-202 (the demo's drives), 301-305 (the DAgger card) and 1000 up
(DAgger's drives) are never trained on.

Stage 2 (``--refine-seconds``, default 18 min; 0: none) is one more one-epoch run on the same
sessions from stage 1's best pair at a low peak lr (``--refine-lr``). A finished stage (its summary in
``--out``) is skipped, so a second call adds stage 2 or publishes without training again.

A recipe can go on from an earlier one's pair: ``--init OLD/refine/best`` (or a packed pair,
``--init perception/weights/start.safetensors``) starts stage 1 from it (its input size wins) and
``--anchor-strides``/``--anchor-sizes`` may add anchor levels to its detector (the trained levels
keep their heads, the added ones start fresh). The published pair is three runs::

    truckpilot pretrain --out /tmp/start1
    truckpilot pretrain --out /tmp/start2 --init /tmp/start1/refine/best --stopped-per-km 1.5 \\
        --anchor-strides 4 8 16 32 64 128 --anchor-sizes 0.02 0.04 0.08 0.2 0.4 0.7 \\
        --lr 1e-3 --train-seconds 2700 --epochs 2
    truckpilot pretrain --out /tmp/start3 --init /tmp/start2/refine/best --seeds 1 ... 60 501 ... 560 \\
        --stopped-per-km 1.5 --queue-share 0.5 --lr 3e-4 --train-seconds 1200 --epochs 1 \\
        --refine-seconds 0 --publish perception/weights

(the third: half its sessions show the approach to a broken-down vehicle straight ahead, which the
first two never did; ``truckpilot scenario stopped-vehicle``).

``--publish DIR`` (after training, or on an existing ``--out``) packs the best pair (stage 2's when
there is one) into ``DIR/start.safetensors`` (``perception.starting_pair``: fp16, the shared trunk
stored once, the recipe and validation figures in its metadata) and writes ``DIR/MODEL_CARD.md``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

log = logging.getLogger("truckpilot.pretrain")

#: the seeds the recipe records for training by default: none of the held-out ones (see the module doc)
DEFAULT_SEEDS = tuple(range(1, 101)) + tuple(range(501, 601))


def recipe_config(out: Path, seeds: tuple[int, ...], frames_per_session: int, train_seconds: float,
                  input_height: int, input_width: int, epochs: int, seed: int, stopped_per_km: float = 0.0,
                  lr: float = 2e-3, anchor_strides: tuple[int, ...] = (), anchor_sizes: tuple[float, ...] = (),
                  queue_share: float = 0.0):
    """The DemoConfig the recipe runs (the demo's defaults, sized up)."""
    from agent.apps.demo import DemoConfig

    return DemoConfig(out=str(out), train_seeds=tuple(seeds), frames_per_session=frames_per_session,
                      train_budget_s=train_seconds, input_height=input_height, input_width=input_width,
                      epochs=epochs, max_passes=20.0, seed=seed, start="none", stopped_per_km=stopped_per_km,
                      lr=lr, anchor_strides=tuple(anchor_strides), anchor_sizes=tuple(anchor_sizes),
                      queue_share=queue_share)


def make(config, out: Path, init: Path | None = None, command: str = "") -> dict:
    """Record and train (from the pair stem ``init``, e.g. an earlier recipe's ``refine/best``, when given;
    its input size then wins); returns the training summary (``best_checkpoints``, ``val``)."""
    from agent.apps.demo import record_sessions, train_models

    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps({**config.to_dict(), "init": str(init) if init else None,
                                                 "command": command or None}, indent=2))
    t0 = time.monotonic()
    train, val = record_sessions(config, out / "sessions")
    (out / "sessions.json").write_text(json.dumps({"train": train, "val": val}, indent=1))
    log.info("recorded %d training and %d validation sessions in %.0f s", len(train), len(val),
             time.monotonic() - t0)
    t0 = time.monotonic()
    summary = train_models(config, train, val, out / "run", init=init)
    summary["train_wall_s"] = round(time.monotonic() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def refine(config, out: Path, seconds: float, lr: float) -> dict:
    """Stage 2: one more joint run on the same sessions, initialised from stage 1's best pair, one
    one-cycle epoch sized to ``seconds`` at peak ``lr`` (the low-lr tail that stage 1's schedule
    ends too soon for); returns its summary (also ``refine_summary.json``)."""
    from dataclasses import replace

    from agent.apps.demo import train_models

    sessions = json.loads((out / "sessions.json").read_text())
    stage2 = replace(config, train_budget_s=seconds, lr=lr, epochs=1)
    t0 = time.monotonic()
    summary = train_models(stage2, sessions["train"], sessions["val"], out / "refine", init=out / "run" / "best")
    summary["train_wall_s"] = round(time.monotonic() - t0, 1)
    (out / "refine_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def recipe_notes(out: Path) -> dict:
    """What the model card says about the recipe run in ``out``: its recipe (with the command when it was
    recorded), stage 2's optimiser settings, training wall time, the best pair's validation figures and
    files, and under "from" the same for the run whose pair ``--init`` continued (when that run's
    directory is still there, or the pair was a packed one: the notes it was published with)."""
    from perception.starting_pair import PAIR_NOTES

    stage2 = out / "refine_summary.json"
    summary = json.loads((stage2 if stage2.exists() else out / "summary.json").read_text())
    recipe = json.loads((out / "recipe.json").read_text())
    val = summary.get("val") or {}
    detector, direction = val.get("detector") or {}, val.get("direction") or {}
    stage1 = json.loads((out / "summary.json").read_text())
    notes = {"recipe": recipe, "command": recipe.get("command") or "truckpilot pretrain --out OUT",
             "train_wall_s": (stage1.get("train_wall_s") or 0) + ((summary.get("train_wall_s") or 0)
                                                                   if stage2.exists() else 0),
             "refine": (json.loads((out / "refine" / "config.json").read_text())["optim"]
                        if stage2.exists() else None),
             "best": summary["best_checkpoints"],
             "val": {"direction_accuracy": direction.get("accuracy"), "map_50": detector.get("map_50"),
                     "ap_50": detector.get("ap_50")}}
    init = recipe.get("init")
    if init and (Path(init).parent.parent / "recipe.json").exists():
        notes["from"] = recipe_notes(Path(init).parent.parent)
    elif init and (Path(init).parent / PAIR_NOTES).exists():  # an unpacked published pair: its own notes
        notes["from"] = json.loads((Path(init).parent / PAIR_NOTES).read_text())
    return notes


def publish(out: Path, folder: Path) -> Path:
    """Pack ``out``'s best pair into ``folder/start.safetensors`` (``perception.starting_pair``) with
    the recipe and validation figures in its notes, and write ``folder/MODEL_CARD.md``. Returns the file."""
    from perception.starting_pair import pack_pair

    notes = recipe_notes(out)
    best = notes.pop("best")
    for earlier in _lineage(notes)[1:]:
        earlier.pop("best", None)
    path = pack_pair(best["direction"], best["detector"], folder / "start.safetensors", notes)
    (folder / "MODEL_CARD.md").write_text(model_card_text(path, notes))
    return path


def _lineage(notes: dict) -> list[dict]:
    """[notes, the run it continued, that run's, ...]."""
    chain = [notes]
    while "from" in chain[-1]:
        chain.append(chain[-1]["from"])
    return chain


def seed_ranges(seeds: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> "1-3, 7, 9-10"."""
    parts: list[str] = []
    last: int | None = None
    for seed in sorted(seeds):
        if last is not None and seed == last + 1:
            first = parts[-1].split("-")[0]
            parts[-1] = f"{first}-{seed}"
        else:
            parts.append(str(seed))
        last = seed
    return ", ".join(parts)


def model_card_text(path: Path, notes: dict) -> str:
    """The Markdown model card of the packed pair at ``path``."""
    from agent.apps.demo import QUEUE_FRAMES_FACTOR, QUEUE_STOPPED_PER_KM
    from perception.starting_pair import read_pair_meta

    meta = read_pair_meta(path)["cards"]
    height, width = meta["direction"]["input_size"]
    strides = (meta["detector"].get("anchors") or {}).get("feature_strides")
    chain = _lineage(notes)
    lines = [
        "# TruckPilot starting pair", "",
        f"`{path.name}`: {path.stat().st_size / 1e6:.1f} MB. One ResNet34 trunk (stored once) with the direction head "
        "(left / straight / right, and the steer head) and the SSD detector head (car, truck, person, sign"
        + (f"; anchor levels at strides {', '.join(map(str, strides))}" if strides else "") + "), "
        f"fp16, for {width}x{height} px input (the simulator's 320x240 frames resized). "
        "`truckpilot drive --sim` and `truckpilot eval` use it when no `--model`/`--detector` is "
        "given; `truckpilot demo` and `truckpilot dagger` fine-tune from it (`perception.starting_pair` "
        "unpacks it once into `~/.cache/truckpilot`).", "",
        "## Recipe", ""]
    if len(chain) > 1:
        lines += [f"{len(chain)} runs of `truckpilot pretrain` (`agent/apps/pretrain.py`, the demo's recipe sized "
                  "up), each continuing the pair of the one before; "
                  f"{sum(n.get('train_wall_s') or 0 for n in chain):.0f} s of training wall time in all on the "
                  "machine that made it.", ""]
    for number, stage in enumerate(reversed(chain), 1):
        recipe, val = stage["recipe"], stage["val"]
        seeds = recipe["train_seeds"]
        ap = ", ".join(f"{k} {v:.3f}" for k, v in (val.get("ap_50") or {}).items())
        start = ("the previous run's pair" + (f", its detector grown to anchor strides "
                                               f"{', '.join(map(str, recipe['anchor_strides']))} (the added levels "
                                               "start fresh)" if recipe.get("anchor_strides") else "")
                 if recipe.get("init") else
                 f"trunk `{recipe['trunk_weights']}` (ImageNet when it can be downloaded, else random with a warning)")
        lines += [
            *([f"### Run {number}", ""] if len(chain) > 1 else []),
            f"`{stage['command']}`: from {start}, one joint run (both heads on one trunk) of {recipe['epochs']} "
            f"epoch(s) sized to {recipe['train_budget_s']:.0f} s of training steps, batch {recipe['batch_size']}, "
            f"peak lr {recipe['lr']} (one-cycle), direction loss weight {recipe['direction_loss_weight']}"
            + (f"; then a second one-epoch run from its best pair at peak lr {stage['refine']['lr']}"
               if stage.get("refine") else "")
            + f"; {stage.get('train_wall_s') or 0:.0f} s of training wall time.", "",
            f"Data: {len(seeds)} headless autopilot sessions of the built-in simulator (seeds {seed_ranges(seeds)}), "
            f"{recipe['frames_per_session']} frames each at 320x240, under day/clear, dusk/clear, "
            f"day/rain, night/clear, day/fog and dusk/rain in turn, with {recipe['perturb']} steering disturbances "
            "per simulated second"
            + (f" and {recipe['stopped_per_km']} broken-down vehicles per km" if recipe.get("stopped_per_km") else "")
            + (f"; {recipe['queue_share']:.0%} of the sessions ({QUEUE_FRAMES_FACTOR * recipe['frames_per_session']} "
               f"frames each, {QUEUE_STOPPED_PER_KM:g} broken-down vehicles per km) have the autopilot stand behind "
               "them instead of passing them (their direction labels are the passing expert's: the way round "
               "where it has room to pull out, its lane nearer)"
               if recipe.get("queue_share") else "")
            + "; labels are the simulator's ground truth (the expert's direction, the visible objects' boxes).", "",
            f"Validation: seeds {recipe['val_seeds']} under dusk/fog and night/rain ({recipe['val_frames_per_session']} "
            f"frames each): direction accuracy {val.get('direction_accuracy') or 0:.3f}, detector mAP@0.5 "
            f"{val.get('map_50') or 0:.3f} ({ap}).", ""]
    lines += [
        "Never trained on: seeds 101-102 (validation), 201-202 (the demo's drives), 301-305 (the DAgger card), "
        "401-405 (the stopped-vehicle scenario), 1000 and up (DAgger's drives).", "",
        "## Limits", "",
        "Simulator frames only: on a real game it is a starting point for fine-tuning on recorded play "
        "(`truckpilot train joint --init`), not a driver.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="truckpilot pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="working directory: sessions/, run/, recipe.json, summary.json")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="training seeds")
    p.add_argument("--frames-per-session", type=int, default=200)
    p.add_argument("--train-seconds", type=float, default=3600.0,
                   help="training budget, s (sizes the epochs from a timed probe, as the demo does)")
    p.add_argument("--epochs", type=int, default=4, help="epochs sharing the budget (validated after each)")
    p.add_argument("--input-height", type=int, default=144)
    p.add_argument("--input-width", type=int, default=192)
    p.add_argument("--refine-seconds", type=float, default=1080.0,
                   help="stage 2: a second run from stage 1's best at --refine-lr, sized to this many seconds (0: none)")
    p.add_argument("--refine-lr", type=float, default=5e-4)
    p.add_argument("--stopped-per-km", type=float, default=0.0,
                   help="broken-down vehicles per km in the training sessions (the published pair's second run: 1.5)")
    p.add_argument("--queue-share", type=float, default=0.0,
                   help="share of the sessions in which the autopilot stands behind broken-down vehicles instead of "
                        "passing them (the demo's --queue-share; the published pair's third run: 0.5)")
    p.add_argument("--lr", type=float, default=2e-3, help="stage 1's peak learning rate")
    p.add_argument("--init", default="",
                   help="stage 1 starts from this pair (a run's stem RUN/best, e.g. an earlier recipe's refine/best, "
                        "or a packed pair such as perception/weights/start.safetensors) instead of --trunk-weights; "
                        "its input size replaces --input-height/--input-width")
    p.add_argument("--anchor-strides", type=int, nargs="*", default=[],
                   help="detector anchor levels (with --init: its levels plus added ones, e.g. 4 8 16 32 64 128)")
    p.add_argument("--anchor-sizes", type=float, nargs="*", default=[],
                   help="base anchor side per --anchor-strides level, a fraction of the input's shorter side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--publish", default="", help="write the fp16 pair and its model card into this directory")
    args = p.parse_args(argv)
    out = Path(args.out)
    config = recipe_config(out, tuple(args.seeds), args.frames_per_session, args.train_seconds,
                           args.input_height, args.input_width, args.epochs, args.seed, args.stopped_per_km,
                           args.lr, tuple(args.anchor_strides), tuple(args.anchor_sizes), args.queue_share)
    init = Path(args.init) if args.init else None
    if init is not None and init.suffix == ".safetensors":  # a packed pair: continue its unpacked checkpoints
        from perception.checkpoint import CheckpointError
        from perception.starting_pair import unpack_pair

        try:
            init = unpack_pair(init)["direction"].parent / "best"
        except CheckpointError as exc:
            print(f"truckpilot pretrain: --init {args.init}: {exc}", file=sys.stderr)
            return 2
    if not (out / "summary.json").exists():
        make(config, out, init, command="truckpilot pretrain " + shlex.join(argv))
    if args.refine_seconds > 0 and not (out / "refine_summary.json").exists():
        refine(config, out, args.refine_seconds, args.refine_lr)
    if args.publish:
        print(publish(out, Path(args.publish)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``truckpilot train direction|detector|joint --data SESSION... --out RUN_DIR``.

``joint`` trains both networks on one shared trunk and writes two ordinary
checkpoints, RUN_DIR/best.direction.safetensors and best.detector.safetensors
(see training.tasks.joint).

Also runs under ``torchrun --nproc_per_node=N -m training.cli ...`` (DDP).
Exit codes: 0 done, 1 error (message says the fix), 2 bad arguments,
3 non-finite loss, 4 CUDA out of memory.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

from training.config import ModelConfig, TrainConfig, parse_train_config
from training.tasks.init_state import load_init_state

log = logging.getLogger("training.train")


def load_samples(config: TrainConfig):
    """(train samples, val samples): --val-data sessions, else whole sessions held out of --data."""
    from training.data.samples import samples_from_sessions, split_by_group

    samples = samples_from_sessions(config.data.sessions)
    if config.data.val_sessions:
        val = samples_from_sessions(config.data.val_sessions)
        overlap = {s.group for s in samples} & {s.group for s in val}
        if overlap:
            raise ValueError(f"sessions {sorted(overlap)} are in both --data and --val-data; validation must use "
                             "sessions the model does not train on")
        return samples, val
    return split_by_group(samples, config.data.val_fraction, config.runtime.seed)


def resolve_model_config(config: TrainConfig, train_samples):
    """The perception config of the model to train: from --init's card, or fresh."""
    from perception.types import DEFAULT_DETECTION_CLASSES
    from training.tasks import default_model_config

    model = config.model
    classes = None
    if config.task in ("detector", "joint"):
        schemas = {tuple(s.meta.get("classes", ())) for s in train_samples} - {()}
        classes = sorted(schemas)[0] if len(schemas) == 1 else DEFAULT_DETECTION_CLASSES
    if model.init and config.task == "joint":
        return joint_init_config(model, classes)
    if model.init:
        from perception.checkpoint import read_card

        card = read_card(model.init)
        if card.kind != config.task:
            raise ValueError(f"--init {model.init} is a {card.kind} checkpoint, not a {config.task} one")
        model_config = card.model_config()
        if card.kind == "direction":
            from training.tasks.direction import with_steer_head

            model_config = with_steer_head(model_config, f"--init {model.init}: ")
        else:
            model_config = _with_added_levels(model_config, model)
        return _at_input_size(model_config, model.input_size)
    return default_model_config(config.task, model.trunk_weights, model.input_size, classes,
                                model.detector_options())


def joint_init_config(model: ModelConfig, classes=None):
    """JointConfig for ``joint --init``: the cards of the pair (at --input-height/width, with the levels
    --anchor-strides adds); a missing part is fresh, at the other's size, for ``classes`` (None: the
    default classes)."""
    from dataclasses import replace

    from perception.checkpoint import read_card
    from training.tasks.joint import JointConfig, resolve_init_pair
    from training.tasks import default_model_config

    pair = resolve_init_pair(model.init)
    parts = {part: (read_card(path).model_config() if path is not None else None) for part, path in pair.items()}
    if parts["direction"] is not None:
        from training.tasks.direction import with_steer_head

        parts["direction"] = with_steer_head(parts["direction"], f"--init {pair['direction']}: ")
    known = next(c for c in parts.values() if c is not None)
    for part, part_config in parts.items():
        if part_config is None:
            fresh = default_model_config(part, model.trunk_weights, tuple(known.input_size), classes)
            parts[part] = replace(fresh, mean=known.mean, std=known.std, trunk=known.trunk)
    parts["detector"] = _with_added_levels(parts["detector"], model)
    return JointConfig(*(_at_input_size(parts[part], model.input_size) for part in ("direction", "detector")))


def _with_added_levels(detector_config, model: ModelConfig):
    """--init's detector config with the levels --anchor-strides/--anchor-sizes add (unchanged without them)."""
    if not model.anchor_strides:
        return detector_config
    from perception.detector import with_added_levels

    grown = with_added_levels(detector_config, model.anchor_strides, model.anchor_sizes)
    if grown.anchors == detector_config.anchors:
        return detector_config
    log.info("--init's anchor levels %s grow to %s: the added ones start fresh",
             list(detector_config.anchors.feature_strides), list(grown.anchors.feature_strides))
    return grown


def _at_input_size(model_config, input_size):
    """``model_config`` at --input-height/--input-width when they are given and differ from --init's size.

    Fine-tuning at a new size (progressive resizing: a model trained at 320x240 fine-tuned at 480x360
    so that walkers 2 px wide become 3 px) keeps every weight: the trunk and heads are convolutional,
    the classifier pools globally, and the detector's anchors are fractions of the input's short side,
    rebuilt for the new grid (more cells at a larger size; each cell's k anchors keep their share of the
    frame, so the heads' weights, shared by every cell of a level, still fit).
    """
    from dataclasses import replace

    if not input_size or tuple(input_size) == tuple(model_config.input_size):
        return model_config
    log.info("--init was trained at %s (H, W); fine-tuning at %s", tuple(model_config.input_size), tuple(input_size))
    return replace(model_config, input_size=tuple(int(s) for s in input_size))


def build_trainer(config: TrainConfig, runtime):
    from training.engine import Trainer
    from training.runtime import seed_everything
    from training.tasks import make_task

    seed_everything(config.runtime.seed, config.runtime.deterministic)
    train_samples, val_samples = load_samples(config)
    model_config = resolve_model_config(config, train_samples)
    task = make_task(config.task, model_config, config.optim.direction_loss_weight, config.optim.steer_loss_weight)
    init = config.model.init
    model = task.build_model(init_trunk_weights=not init)
    if init and config.task == "joint":
        task.load_init(model, init)
    elif init:
        from perception.checkpoint import load_model

        source, _ = load_model(init, "cpu")
        load_init_state(model, source.state_dict(), init, source_config=getattr(source, "config", None))
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    data, seed = config.data, config.runtime.seed
    train_set = task.build_dataset(train_samples, config.augment.enabled, data.cache, seed, config.augmentation)
    val_set = task.build_dataset(val_samples, False, data.cache, seed)
    provenance = {"data": list(data.sessions), "val_data": list(data.val_sessions) or "held-out sessions of --data",
                  "train_sessions": sorted({s.group for s in train_samples}),
                  "val_sessions": sorted({s.group for s in val_samples}), "init": init or None}
    log.info("%s: %d train frames, %d val frames, input %s, %d process(es) on %s", config.task, len(train_set),
             len(val_set), tuple(model_config.input_size), runtime.world_size, runtime.device)
    return Trainer(config, task, model, train_set, val_set, runtime, Path(config.run.out), provenance)


def run_training(config: TrainConfig) -> dict:
    """Set up, train (or --find-lr / --benchmark-steps), and return the summary."""
    from training.engine import STATE_FILE, TrainingError
    from training.cpu_malloc import apply_cpu_malloc
    from training.runtime import setup_runtime, teardown_runtime
    from training.state import atomic_write_json

    run_dir = Path(config.run.out)
    if config.run.resume and not config.data.sessions:  # `--resume --out RUN` alone: the run's own settings
        config = _saved_config_to_resume(run_dir, config)
    run = config.run
    if not run.resume and not run.find_lr and not run.benchmark_steps and (run_dir / STATE_FILE).exists():
        raise TrainingError(f"{run_dir} already holds a run ({run_dir / STATE_FILE}); continue it with --resume, "
                            "or choose a new --out")
    runtime = setup_runtime(config.runtime.device, config.runtime.amp, config.runtime.channels_last)
    if apply_cpu_malloc(config.runtime.cpu_malloc, runtime.device.type):
        log.info("CPU run: glibc keeps freed memory for reuse (--cpu-malloc keep; 'system' restores its defaults)")
    try:
        if runtime.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        trainer = build_trainer(config, runtime)
        if run.find_lr:
            from training.lr_finder import lr_range_test

            result = lr_range_test(trainer, run_dir, num_steps=run.find_lr_steps)
            return {"suggested_lr": result["suggested_lr"], "plot": str(run_dir / "lr_find.png")}
        if run.benchmark_steps:
            return trainer.benchmark(run.benchmark_steps)
        if run.resume:
            trainer.load_state(run_dir / STATE_FILE)
        if runtime.is_main:
            atomic_write_json(run_dir / "config.json", config.to_dict())
        summary = trainer.fit()
        if not runtime.is_main:
            return {}
        brief = {k: v for k, v in summary.items() if k not in ("history", "val")}
        if "val" in summary:
            from training.evaluate_cli import headline

            brief["val"] = headline({"kind": config.task, "metrics": summary["val"]})
        brief["run_dir"] = str(run_dir)
        return brief
    finally:
        teardown_runtime(runtime)


def _saved_config_to_resume(run_dir: Path, command_line: TrainConfig) -> TrainConfig:
    """RUN_DIR/config.json with --resume on and the command line's --device, --num-workers and --max-steps."""
    from dataclasses import replace

    from training.engine import TrainingError

    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        raise TrainingError(f"{saved_path} not found: nothing to resume in {run_dir}; check --out")
    saved = TrainConfig.load(saved_path)
    return replace(saved, run=replace(saved.run, resume=True, max_steps=command_line.run.max_steps),
                   runtime=replace(saved.runtime, device=command_line.runtime.device,
                                   num_workers=command_line.runtime.num_workers))


def main(argv: list[str]) -> int:
    config = parse_train_config(argv)
    from perception.checkpoint import CheckpointError
    from training.engine import TrainingError
    from training.sessions import SessionError
    from training.state import StateError

    try:
        result = run_training(config)
    except TrainingError as exc:
        print(f"truckpilot train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (StateError, CheckpointError, SessionError, FileNotFoundError, ValueError) as exc:
        print(f"truckpilot train: error: {exc}", file=sys.stderr)
        return 1
    if result:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))

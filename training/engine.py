"""The training engine shared by the tasks (direction, detector, joint).

Schedule: phase 0 trains the head with the trunk frozen (``freeze_epochs``),
phase 1 unfreezes everything with discriminative learning rates (trunk max_lr
= lr / trunk_lr_div, head max_lr = lr). Each phase gets its own AdamW and
OneCycleLR over exactly its steps.

Robustness: the resumable state (model, optimizer, scheduler, RNG states,
epoch, step within the epoch, best metric, history) is written atomically to
RUN_DIR/state/last.pt at every epoch end and every ``save_every_steps``; a
non-finite loss stops the run before anything else is written; CUDA running
out of memory ends with the batch size to try.

Distributed: under torchrun each process trains its shard (EpochSampler) in a
DistributedDataParallel wrapper; rank 0 alone evaluates and writes files.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.config import OptimConfig, TrainConfig, config_options
from training.runtime import Runtime, all_reduce_max, barrier, get_rng_state, set_rng_state
from training.data.sampler import EpochSampler
from training.state import atomic_write_json, load_state, save_state
from training.tasks import Task, normalise

log = logging.getLogger(__name__)

STATE_FILE = Path("state") / "last.pt"
BEST_STEM = "best"  # the task names the files: best.safetensors, or best.direction/.detector.safetensors (joint)
LAST_STEM = "last"
BEST_CHECKPOINT = BEST_STEM + ".safetensors"  # single-network tasks
LAST_CHECKPOINT = LAST_STEM + ".safetensors"
EPOCH_REPORT_DIR = ".epoch_report"  # plots of the latest validation; moved up when it is the best


class TrainingError(Exception):
    """The run cannot go on; the message says why and what to do. ``exit_code`` for the CLI."""

    exit_code = 1


class NonFiniteLossError(TrainingError):
    exit_code = 3


class OutOfMemoryError(TrainingError):
    exit_code = 4


class StoppedBySignal(TrainingError):
    """SIGINT/SIGTERM: the state was saved at a step boundary; ``--resume`` continues."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one freezing state, one optimizer and one one-cycle schedule."""

    index: int
    frozen: bool
    first_epoch: int
    num_epochs: int


def plan_phases(optim: OptimConfig) -> list[Phase]:
    """The frozen-trunk phase (when --freeze-epochs > 0), then the unfrozen one."""
    phases = []
    if optim.freeze_epochs > 0:
        phases.append(Phase(0, True, 0, optim.freeze_epochs))
    if optim.epochs > optim.freeze_epochs:
        phases.append(Phase(len(phases), False, optim.freeze_epochs, optim.epochs - optim.freeze_epochs))
    return phases


def default_num_workers(runtime: Runtime) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cpus // runtime.world_size)
    if runtime.cuda:
        return max(1, min(12, per_process - 1))
    return 0 if per_process <= 2 else min(2, per_process // 4)


class Trainer:
    """Trains ``model`` on ``train_set``, validates on ``val_set``, writes RUN_DIR.

    model: the raw network (DirectionNet / SSDNet / training.tasks.joint.JointNet) already on runtime.device.
    train_set / val_set: task datasets yielding uint8 images at model resolution.
    provenance: extra facts for the model card (data sessions, ...).
    """

    def __init__(self, config: TrainConfig, task: Task, model: nn.Module, train_set, val_set,
                 runtime: Runtime, run_dir: Path, provenance: dict | None = None) -> None:
        self.config = config
        self.task = task
        self.model = model
        self.train_set = train_set
        self.val_set = val_set
        self.runtime = runtime
        self.run_dir = Path(run_dir)
        self.provenance = dict(provenance or {})
        self.phases = plan_phases(config.optim)
        self.batch_size = config.optim.batch_size
        balance = config.data.balance
        weights = None
        if balance == "sampler":
            weights = train_set.sample_weights()
        elif balance == "sampler-size":
            weights = train_set.sample_weights(by_size=True)
            train_set.weight_crops_by_rarity(by_size=True)
            counts = train_set.group_counts(by_size=True).reshape(len(train_set.classes), 3)
            log.info("draws balanced over class x height band (small/medium/large boxes): %s",
                     dict(zip(train_set.classes, counts.tolist())))
        weights = self._weigh_takeovers(weights)
        self.sampler = EpochSampler(len(train_set), weights, seed=config.runtime.seed, rank=runtime.rank,
                                    world_size=runtime.world_size, draws=config.data.epoch_frames or None)
        self.steps_per_epoch = self.sampler.per_rank // self.batch_size
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{len(train_set)} training frames over {runtime.world_size} process(es) do not fill one batch "
                f"of {self.batch_size}: pass a smaller --batch-size or record more frames")
        self.class_weights = self._class_weights() if balance == "loss" else None
        workers = config.runtime.num_workers
        self.num_workers = workers if workers >= 0 else default_num_workers(runtime)
        self.loader = self._make_loader()
        self.ddp_model: nn.Module = model
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.phase: Phase | None = None
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.best_val: dict | None = None  # full validation report of the best epoch
        self._stop_signal: int | None = None  # set by SIGINT/SIGTERM, acted on at the next step boundary
        self.history: list[dict] = []

    # ------------------------------------------------------------------ set-up

    def _weigh_takeovers(self, weights: torch.Tensor | None) -> torch.Tensor | None:
        """Draw weights with the frames a person drove (takeovers) multiplied by --takeover-weight.

        Sets ``takeover_frames`` (training frames marked as takeovers) and ``takeover_share`` (their
        expected share of the draws). Weight 1 leaves ``weights`` as they are (None stays None: a
        shuffled permutation); any other weight draws with replacement."""
        weight = float(self.config.data.takeover_weight)
        mask_of = getattr(self.train_set, "takeover_mask", None)
        marked = mask_of() if mask_of is not None else torch.zeros(len(self.train_set), dtype=torch.bool)
        self.takeover_frames = int(marked.sum())
        base = weights if weights is not None else torch.ones(len(self.train_set), dtype=torch.float64)
        if weight != 1.0 and self.takeover_frames:
            weights = base.double() * torch.where(marked, weight, 1.0).double()
            base = weights
        self.takeover_share = float(base[marked].sum() / base.sum()) if self.takeover_frames else 0.0
        log.info("takeover frames (a person drove): %d of %d training frames, --takeover-weight %g: %.1f%% of "
                 "the draws", self.takeover_frames, len(self.train_set), weight, 100 * self.takeover_share)
        return weights

    def _class_weights(self) -> torch.Tensor:
        counts = self.train_set.class_counts().double().clamp(min=1)
        weights = counts.sum() / (len(counts) * counts)
        if self.task.kind == "detector":
            log.warning("--balance loss is not supported by the detector loss; frames are drawn uniformly")
            return None
        log.info("class-weighted loss: %s", {n: round(float(w), 3) for n, w in
                                             zip(self.train_set.directions, weights)})
        return weights.float().to(self.runtime.device)

    def _make_loader(self) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
            collate_fn=self.task.collate, pin_memory=self.runtime.cuda, drop_last=True,
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.config.runtime.seed),
        )

    def phase_of(self, epoch: int) -> Phase:
        for phase in self.phases:
            if phase.first_epoch <= epoch < phase.first_epoch + phase.num_epochs:
                return phase
        return self.phases[-1]

    def _enter_phase(self, phase: Phase) -> None:
        """Freeze or unfreeze, (re)wrap in DDP, and build this phase's optimizer and one-cycle schedule."""
        cfg = self.config.optim
        self.model.freeze_trunk(phase.frozen)
        self.model.train()
        if self.runtime.distributed:
            device_ids = [self.runtime.device.index] if self.runtime.cuda else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        else:
            self.ddp_model = self.model
        groups = self.model.param_groups(cfg.lr / cfg.trunk_lr_div, cfg.lr)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.runtime.cuda or None)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=[g["lr"] for g in groups], total_steps=self.steps_per_epoch * phase.num_epochs,
            pct_start=cfg.pct_start,
        )
        self.phase = phase
        log.info("phase %d: trunk %s, %d epochs x %d steps, max lr %s", phase.index,
                 "frozen" if phase.frozen else "trainable", phase.num_epochs, self.steps_per_epoch,
                 {g.get("name", i): f"{g['max_lr']:.2e}" for i, g in enumerate(self.optimizer.param_groups)})

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "config": json.dumps(self.config.to_dict()),
            "task": self.task.kind,
            "phase": self.phase.index,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None,  # bf16 autocast needs no GradScaler
            "rng": get_rng_state(),
            "best_metric": float(self.best_metric),
            "best_epoch": int(self.best_epoch),
            "history": json.dumps(self.history),
            "best_val": json.dumps(self.best_val),
        }

    def save_state(self) -> None:
        if not self.runtime.is_main:
            return
        self._assert_finite_weights()
        save_state(self.run_dir / STATE_FILE, self.state_dict())
        # a small readable note next to it: where the state stands (for people and scripts)
        atomic_write_json(self.run_dir / STATE_FILE.with_suffix(".json"),
                          {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                           "phase": self.phase.index, "best_metric": self.best_metric, "best_epoch": self.best_epoch})

    def load_state(self, path: Path) -> None:
        state = load_state(path)
        try:  # a field added since the run started counts as its default
            saved = TrainConfig.from_dict(json.loads(state["config"]))
        except ValueError as exc:
            raise TrainingError(f"{path}: its run's settings are not a TrainConfig this version reads ({exc}); "
                                "start a new --out, or resume with the truckpilot version that started it") from None
        differs = {opt.flag: (opt.get(saved), opt.get(self.config)) for opt in config_options(TrainConfig)
                   if not opt.field.metadata["resume_may_differ"] and opt.get(saved) != opt.get(self.config)}
        if differs:
            raise TrainingError(f"{path}: the run was started with different settings {differs}; resume with the "
                                "same command (or start a new --out)")
        self.model.load_state_dict(state["model"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self._enter_phase(self.phases[[p.index for p in self.phases].index(int(state["phase"]))])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.history = json.loads(state["history"])
        self.best_val = json.loads(state["best_val"])
        log.info("resumed from %s: epoch %d, step %d of %d in it (global step %d)", path, self.epoch,
                 self.step_in_epoch, self.steps_per_epoch, self.global_step)

    def _assert_finite_weights(self) -> None:
        bad = [name for name, p in self.model.state_dict().items()
               if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(f"weights became non-finite ({bad[:3]}...); nothing was saved. Try a lower "
                                     f"--lr (now {self.config.optim.lr:g}) or --amp off")

    # ------------------------------------------------------------------ loop

    def _batch_to_device(self, images, targets, jitter):
        device = self.runtime.device
        images = images.to(device, non_blocking=True)
        jitter = jitter.to(device, non_blocking=True) if self.config.augment.enabled else None
        x = normalise(images, self.task.model_config.mean, self.task.model_config.std, self.runtime.channels_last,
                      jitter)
        return x, self.task.targets_to(targets, device)

    def train_step(self, images, targets, jitter) -> torch.Tensor:
        """One optimizer step on a batch (uint8 images, targets, (B,4) colour jitter); returns the detached loss."""
        x, targets = self._batch_to_device(images, targets, jitter)
        amp = self.runtime.amp_dtype
        with torch.autocast(self.runtime.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            outputs = self.task.forward(self.ddp_model, x)
        loss = self.task.batch_loss(self.model, outputs, targets, self.class_weights,
                                    input_size=tuple(x.shape[-2:]))
        if self.global_step == self.config.run.debug_inject_nan_at_step:
            loss = loss * float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def _check_finite(self, loss_sum: torch.Tensor, nonfinite: torch.Tensor) -> None:
        flag = all_reduce_max(float(nonfinite.item()), self.runtime)
        if flag > 0:
            last = self.run_dir / STATE_FILE
            raise NonFiniteLossError(
                f"non-finite loss (nan/inf) by global step {self.global_step} (epoch {self.epoch}); the run "
                f"stopped and wrote nothing more. The last good state ({last}) and best checkpoint are intact. "
                f"Try a lower --lr (now {self.config.optim.lr:g}, e.g. {self.config.optim.lr / 3:g}), --amp off, or "
                "check the labels of the sessions.")

    def fit(self) -> dict:
        """Train to the end (or max_steps), validating and checkpointing; returns the final summary."""
        if self.phase is None:
            self._enter_phase(self.phase_of(self.epoch))
        previous = self._install_signal_handlers()
        try:
            while self.epoch < self.config.optim.epochs:
                phase = self.phase_of(self.epoch)
                if phase != self.phase:
                    self._enter_phase(phase)
                stopped = self._train_epoch()
                if stopped:
                    break
        except torch.OutOfMemoryError as exc:
            raise OutOfMemoryError(
                f"CUDA out of memory at --batch-size {self.batch_size} ({exc.args[0].splitlines()[0]}); try "
                f"--batch-size {max(1, self.batch_size // 2)}") from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.finish()

    def _install_signal_handlers(self) -> dict:
        """SIGINT/SIGTERM ask the loop to save the state at the next step boundary and stop."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, _frame):
            if self._stop_signal is None:
                log.warning("%s received: saving the state at the next step boundary, then stopping",
                            signal.Signals(signum).name)
            self._stop_signal = signum

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
        return previous

    def _train_epoch(self) -> bool:
        """Runs the rest of the current epoch; True when max_steps stopped the run early."""
        cfg = self.config.run
        epochs = self.config.optim.epochs
        self.sampler.set_epoch(self.epoch, start=self.step_in_epoch * self.batch_size)
        device = self.runtime.device
        loss_sum = torch.zeros((), device=device)
        nonfinite = torch.zeros((), device=device, dtype=torch.bool)
        interval_loss = torch.zeros((), device=device)
        interval_steps, interval_start = 0, time.perf_counter()
        epoch_steps = 0
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{epochs}",
                   unit="step", disable=not self.runtime.is_main, leave=False, mininterval=0.5)
        stopped = False
        for images, targets, jitter in self.loader:
            loss = self.train_step(images, targets, jitter)
            nonfinite |= ~torch.isfinite(loss)
            loss_sum += torch.nan_to_num(loss)
            interval_loss += torch.nan_to_num(loss)
            self.step_in_epoch += 1
            self.global_step += 1
            epoch_steps += 1
            interval_steps += 1
            bar.update(1)
            at_log = self.global_step % cfg.log_every_steps == 0 or self.runtime.device.type == "cpu"
            at_save = cfg.save_every_steps > 0 and self.global_step % cfg.save_every_steps == 0
            at_max = cfg.max_steps > 0 and self.global_step >= cfg.max_steps
            if at_log or at_save or at_max:
                self._check_finite(loss_sum, nonfinite)
                if all_reduce_max(float(self._stop_signal is not None), self.runtime) > 0:
                    bar.close()
                    self.save_state()
                    raise StoppedBySignal(
                        f"stopped by a signal at global step {self.global_step} (epoch {self.epoch + 1}, step "
                        f"{self.step_in_epoch}); state saved in {self.run_dir / STATE_FILE}: continue with the same "
                        "command and --resume", self._stop_signal or signal.SIGTERM)
                if interval_steps and (self.global_step % cfg.log_every_steps == 0):
                    elapsed = time.perf_counter() - interval_start
                    bar.set_postfix(loss=f"{float(interval_loss) / interval_steps:.4f}",
                                    lr=f"{self.scheduler.get_last_lr()[-1]:.2e}",
                                    img_s=f"{interval_steps * self.batch_size * self.runtime.world_size / elapsed:.0f}")
                    interval_loss.zero_()
                    interval_steps, interval_start = 0, time.perf_counter()
            if at_save and self.step_in_epoch < self.steps_per_epoch:
                self.save_state()
            if at_max:
                stopped = True
                break
        bar.close()
        self._check_finite(loss_sum, nonfinite)
        train_loss = float(loss_sum) / max(1, epoch_steps)
        if stopped and self.step_in_epoch < self.steps_per_epoch:
            self.save_state()
            log.info("stopped at --max-steps %d (epoch %d, step %d)", cfg.max_steps, self.epoch, self.step_in_epoch)
            return True
        self._end_epoch(train_loss)
        return stopped

    def _end_epoch(self, train_loss: float) -> None:
        entry = {"epoch": self.epoch + 1, "global_step": self.global_step, "train_loss": train_loss,
                 "phase": self.phase.index}
        last_epoch = self.epoch + 1 == self.config.optim.epochs
        if self.runtime.is_main and ((self.epoch + 1) % self.config.run.eval_every_epochs == 0 or last_epoch):
            scratch = self.run_dir / EPOCH_REPORT_DIR
            metrics = self.evaluate(scratch)
            value = float(metrics[self.task.primary_metric])
            entry["val_metric"] = value
            entry["val"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            if value > self.best_metric:
                self.best_metric, self.best_epoch = value, self.epoch + 1
                paths = self._save_checkpoints(self.run_dir / BEST_STEM, metrics)
                for png in scratch.glob("*.png"):  # the report plots always show the best checkpoint
                    os.replace(png, self.run_dir / png.name)
                self.best_val = {**metrics, "epoch": self.epoch + 1}
                log.info("epoch %d: val %s %.4f (best so far) -> %s", self.epoch + 1, self.task.primary_metric,
                         value, ", ".join(str(p) for p in paths.values()))
            else:
                log.info("epoch %d: val %s %.4f (best %.4f at epoch %d)", self.epoch + 1, self.task.primary_metric,
                         value, self.best_metric, self.best_epoch)
        self.history.append(entry)
        self.epoch += 1
        self.step_in_epoch = 0
        self.save_state()
        barrier(self.runtime)

    def evaluate(self, out_dir: Path | None) -> dict:
        kwargs = self.task.evaluate_options(self.config)
        return self.task.evaluate(self.model, self.val_set, self.runtime.device, out_dir,
                                  batch_size=max(self.batch_size, 32), amp_dtype=self.runtime.amp_dtype,
                                  channels_last=self.runtime.channels_last, **kwargs)

    def _save_checkpoints(self, stem: Path, metrics: dict | None) -> dict[str, Path]:
        """The task writes its checkpoint(s) for ``stem`` (RUN/best or RUN/last); returns {kind: path}."""
        self._assert_finite_weights()
        provenance = {**self.provenance, "epoch": self.epoch + 1, "global_step": self.global_step,
                      "train_config": self.config.to_dict()}
        return self.task.save_checkpoints(stem, self.model, provenance, metrics)

    def finish(self) -> dict:
        """Rank 0: last checkpoint and metrics.json (history + the best checkpoint's validation report;
        its plots were written when it was evaluated)."""
        summary: dict = {}
        if self.runtime.is_main:
            self.model.eval()
            last = self._save_checkpoints(self.run_dir / LAST_STEM, None)
            summary = {"task": self.task.kind, "epochs_done": self.epoch, "global_step": self.global_step,
                       "best_epoch": self.best_epoch, "primary_metric": self.task.primary_metric,
                       "best_metric": self.best_metric if self.best_epoch > 0 else None, "history": self.history,
                       "train_frames": len(self.train_set), "val_frames": len(self.val_set),
                       "takeover_weight": float(self.config.data.takeover_weight),
                       "takeover_frames": self.takeover_frames, "takeover_share": round(self.takeover_share, 4),
                       "world_size": self.runtime.world_size}
            if self.best_val is not None:
                summary["val"] = self.best_val
                best = self.task.checkpoint_paths(self.run_dir / BEST_STEM)
                summary["best_checkpoints"] = {kind: str(path) for kind, path in best.items()}
                if len(best) == 1:
                    summary["best_checkpoint"] = str(next(iter(best.values())))
            summary["last_checkpoints"] = {kind: str(path) for kind, path in last.items()}
            shutil.rmtree(self.run_dir / EPOCH_REPORT_DIR, ignore_errors=True)
            if self.history:
                from training.reports import plot_history

                plot_history(self.history, self.run_dir / "history.png")
            atomic_write_json(self.run_dir / "metrics.json", summary)
            self.model.train()
        barrier(self.runtime)
        return summary

    # ------------------------------------------------------------------ benchmark

    def prepare_benchmark(self) -> None:
        """Everything trainable, and a constant learning rate: a benchmark may take more steps than
        the one-cycle schedule of a short run has (OneCycleLR refuses to step past its end)."""
        self._enter_phase(self.phases[-1])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _step: 1.0)

    def endless_batches(self):
        """The loader's batches without end, epoch after epoch, the sampler set to each epoch in
        turn: for loops that count steps, not epochs (the benchmark, --find-lr)."""
        epoch = 0
        while True:
            self.sampler.set_epoch(epoch)
            yield from self.loader
            epoch += 1

    def benchmark(self, steps: int, warmup: int = 10) -> dict:
        """Time ``steps`` training steps with everything trainable; img/s and data-wait share."""
        self.prepare_benchmark()
        device = self.runtime.device
        it = self.endless_batches()
        for _ in range(warmup):
            self.train_step(*next(it))
        if self.runtime.cuda:
            torch.cuda.synchronize(device)
        data_wait = 0.0
        start = time.perf_counter()
        for _ in tqdm(range(steps), desc="benchmark", unit="step", disable=not self.runtime.is_main):
            t0 = time.perf_counter()
            batch = next(it)
            data_wait += time.perf_counter() - t0
            self.train_step(*batch)
        if self.runtime.cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        result = {
            "task": self.task.kind, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if self.runtime.cuda else "cpu",
            "input_size": list(self.task.input_size), "batch_size": self.batch_size,
            "world_size": self.runtime.world_size, "num_workers": self.num_workers,
            "amp": str(self.runtime.amp_dtype), "channels_last": self.runtime.channels_last,
            "steps": steps, "seconds": elapsed,
            "img_per_s": steps * self.batch_size * self.runtime.world_size / elapsed,
            "data_wait_share": data_wait / elapsed,
        }
        if self.runtime.cuda:
            result["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if self.runtime.is_main:
            atomic_write_json(self.run_dir / "benchmark.json", result)
        return result

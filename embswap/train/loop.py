"""One resumable training loop for every stage (pretrain, transfer, finetune), built on accelerate.

What a stage hands in: an ``nn.Module`` whose ``forward(batch)`` returns ``{"loss": tensor, ...}``
(extra scalar entries are logged), the named parameters it trains, and a batch source that gives
the batch of any step from the seed alone. That makes a run a pure function of (seed, step):
resuming skips exactly what was consumed and ends bit-identical to an uninterrupted run.

``accelerate launch`` turns the same code into data-parallel training: every process takes its
share of each step's global batch and the module is wrapped in DDP by ``Accelerator.prepare``.

Checkpoint folder layout (written atomically, safetensors + JSON, no pickle)::

    <checkpoint_dir>/state/trainable.safetensors   the trained tensors by name
    <checkpoint_dir>/state/optimizer.safetensors   optimizer state, flattened: state.<index>.<key>
    <checkpoint_dir>/state/rng.safetensors         RNG states as uint8 tensors
    <checkpoint_dir>/state/state.json              step, seed, tokens, settings, param groups
    <checkpoint_dir>/training_log.jsonl            one JSON record per logged step
    <checkpoint_dir>/learning_curve.png
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import TrainingError
from .checkpoint import (
    STATE_DIR,
    has_checkpoint,
    json_safe,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer_state,
)
from .reporting import CURVE_NAME, LOG_NAME, plot_learning_curve, progress_bar, read_log  # noqa: F401


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (seed, step, rank, a label): stable across runs and machines."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class BatchSource(Protocol):
    """Gives this process's share of step ``step``'s batch, from the seed alone (no hidden state)."""

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict: ...


@dataclass
class LoopConfig:
    """Settings of one run. ``max_steps`` also sets the learning-rate schedule's length."""

    max_steps: int
    lr: float = 1e-3
    warmup_steps: int = 0
    schedule: str = "linear"  # "linear": warm up, then decay linearly to 0 at max_steps; "constant"
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    checkpoint_every: int | None = 500  # None: only at the end
    log_every: int = 10
    eval_every: int | None = None  # None: at the start, at every checkpoint and at the end
    eval_at_start: bool = True
    max_minutes: float | None = None
    device: str | None = None  # None: accelerate's choice (a GPU when there is one), "cpu", "cuda", ...
    progress: bool = True
    description: str = "training"

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise TrainingError(f"max_steps is {self.max_steps}; give a number of steps >= 0")
        if self.schedule not in ("linear", "constant"):
            raise TrainingError(f"unknown schedule {self.schedule!r}; expected linear or constant")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise TrainingError(f"max_minutes is {self.max_minutes}; give a positive number of minutes")

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rate for the update made at ``step`` (0-based)."""
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        remaining = self.max_steps - self.warmup_steps
        if remaining <= 0:
            return 1.0
        return max(0.0, (self.max_steps - step) / remaining)

    @classmethod
    def of_run(cls, run, *, warmup_steps: int, description: str, **settings) -> LoopConfig:
        """The loop settings a step's config (``TransferConfig``, ``PretrainConfig``) carries, plus ``settings``."""
        return cls(
            max_steps=run.max_steps,
            lr=run.lr,
            warmup_steps=warmup_steps,
            seed=run.seed,
            checkpoint_every=run.checkpoint_every,
            log_every=run.log_every,
            max_minutes=run.max_minutes,
            device=run.device,
            progress=run.progress,
            description=description,
            **settings,
        )


@dataclass
class TrainResult:
    step: int
    tokens_seen: int
    elapsed_seconds: float  # over every session of the run, resumes included
    stopped_by: str  # "max_steps" or "max_minutes"
    resumed_from: int | None
    train_loss: float | None  # mean over the last logged window
    history: list[dict] = field(default_factory=list)  # every log record, resumed ones included
    checkpoint_dir: Path | None = None
    num_processes: int = 1
    is_main_process: bool = True

    def last_metric(self, key: str) -> float | None:
        for record in reversed(self.history):
            if key in record:
                return record[key]
        return None

    def first_metric(self, key: str) -> float | None:
        for record in self.history:
            if key in record:
                return record[key]
        return None

    def summary(self) -> dict:
        """What an artifact's provenance records about the run: steps, tokens, minutes, why it stopped."""
        return {
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "minutes": round(self.elapsed_seconds / 60, 3),
            "stopped_by": self.stopped_by,
        }


def _use_cpu(device: str | None) -> bool:
    # Without a GPU, accelerate only recognises a multi-process CPU launch (torchrun, gloo) when it
    # is told to use the CPU.
    if device == "cpu":
        return True
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    return device in (None, "auto") and not torch.cuda.is_available() and not mps


def process_state(device: str | None = None):
    """accelerate's per-process state (rank, world size), set up as :func:`make_accelerator` sets it."""
    from accelerate import PartialState

    return PartialState(cpu=_use_cpu(device))


def make_accelerator(device: str | None):
    """An Accelerator on ``device`` ("cpu", "cuda", "mps", or None for accelerate's own choice)."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=_use_cpu(device))
    if device not in (None, "auto", "cpu") and accelerator.device.type != torch.device(device).type:
        raise TrainingError(
            f"--device {device} was asked for but training would run on {accelerator.device}; "
            "check that the device is visible to torch, or leave --device out"
        )
    return accelerator


def default_optimizer(params: list[nn.Parameter], config: LoopConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _to_device(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {key: _to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(value, device) for value in obj)
    return obj


def _default_token_count(batch) -> int:
    """Non-padding tokens in a batch: the sum of every ``attention_mask`` it holds."""
    if isinstance(batch, Mapping):
        if "attention_mask" in batch and isinstance(batch["attention_mask"], torch.Tensor):
            return int(batch["attention_mask"].sum())
        return sum(_default_token_count(value) for value in batch.values() if isinstance(value, Mapping))
    return 0


# ---------------------------------------------------------------------------------------------
# The loop.


def train(
    module: nn.Module,
    params: Mapping[str, nn.Parameter],
    batches: BatchSource,
    config: LoopConfig,
    *,
    checkpoint_dir: str | Path,
    resume: bool = False,
    eval_fn: Callable[[], dict[str, float]] | None = None,
    optimizer_factory: Callable[[list[nn.Parameter], LoopConfig], torch.optim.Optimizer] | None = None,
    settings: dict | None = None,
    count_tokens: Callable[[Any], int] | None = None,
    accelerator=None,
) -> TrainResult:
    """Train ``params`` (all inside ``module``) for ``config.max_steps`` steps or ``max_minutes``.

    ``settings`` are the stage's choices that a resumed run must share (seed, data, lr ...); a
    resume with other settings is refused. ``eval_fn`` returns metrics logged with an ``eval_``
    prefix. The module's parameters are trained in place; the result says how far the run got.
    """
    checkpoint_dir = Path(checkpoint_dir)
    settings = dict(settings or {})
    accelerator = accelerator or make_accelerator(config.device)
    main = accelerator.is_main_process
    count_tokens = count_tokens or _default_token_count
    named = dict(params)
    unique = {id(p) for p in named.values()}
    if len(unique) != len(named):
        raise TrainingError("the same parameter was given under two names; pass each trained tensor once")
    for name, param in named.items():
        if not param.requires_grad:
            raise TrainingError(f"parameter {name!r} is given for training but has requires_grad=False")

    module.to(accelerator.device)
    optimizer = (optimizer_factory or default_optimizer)(list(named.values()), config)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])

    start_step, tokens_seen, prior_seconds, resumed_from = 0, 0, 0.0, None
    log_path = checkpoint_dir / LOG_NAME
    if resume and has_checkpoint(checkpoint_dir):
        state, tensors, opt_tensors, rng = read_checkpoint(checkpoint_dir / STATE_DIR)
        _check_resume(state, named, config, settings, checkpoint_dir)
        with torch.no_grad():
            for name, param in named.items():
                param.copy_(tensors[name].to(param.device))
        optimizer.load_state_dict(unflatten_optimizer_state(opt_tensors, state["optimizer"]))
        restore_rng(rng, state.get("python_random"))
        start_step, tokens_seen = state["step"], state["tokens_seen"]
        prior_seconds, resumed_from = state["elapsed_seconds"], state["step"]
        history = read_log(log_path, up_to_step=start_step)
    else:
        history = []
        if main:
            shutil.rmtree(checkpoint_dir / STATE_DIR, ignore_errors=True)
            log_path.unlink(missing_ok=True)
            (checkpoint_dir / CURVE_NAME).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    if main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # Records past the checkpoint belong to work that is being redone.
        log_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in history), encoding="utf-8")

    wrapped, optimizer = accelerator.prepare(module, optimizer)
    trained = list(named.values())
    rank, world = accelerator.process_index, accelerator.num_processes

    pending_tokens = 0  # this process's tokens not yet summed over the processes

    def sync_tokens() -> None:
        nonlocal tokens_seen, pending_tokens
        tokens_seen += _sum_across(pending_tokens, accelerator)
        pending_tokens = 0

    def checkpoint(step: int) -> None:
        sync_tokens()
        if main:
            save_checkpoint(
                checkpoint_dir / STATE_DIR,
                step=step,
                tokens_seen=tokens_seen,
                elapsed_seconds=prior_seconds + (time.perf_counter() - session_start),
                seed=config.seed,
                settings=settings,
                params=named,
                optimizer=optimizer,
            )
            plot_learning_curve(history, checkpoint_dir / CURVE_NAME, config.description)
        accelerator.wait_for_everyone()

    def log(record: dict) -> None:
        history.append(record)
        if main:
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")

    def evaluate(step: int) -> dict:
        if eval_fn is None:
            return {}
        was_training = module.training
        module.eval()
        with torch.no_grad():
            metrics = {f"eval_{k}": float(v) for k, v in eval_fn().items()}
        module.train(was_training)
        log({"step": step, "elapsed": round(prior_seconds + time.perf_counter() - session_start, 3), **metrics})
        return metrics

    session_start = time.perf_counter()
    deadline = session_start + config.max_minutes * 60 if config.max_minutes is not None else None
    step, stopped_by = start_step, "max_steps"
    window_loss, window_metrics, window_steps, window_tokens = 0.0, {}, 0, 0
    window_start = time.perf_counter()
    last_eval_step = None
    if eval_fn is not None and config.eval_at_start and start_step == 0:
        evaluate(0)
        last_eval_step = 0
    module.train()
    progress = progress_bar(config.description, enabled=config.progress and main)
    updating = False  # True while the optimizer writes: the weights are then mid-update
    try:
        with progress:
            task = progress.add_task(config.description, total=config.max_steps, completed=step, loss="-", speed="-")
            while step < config.max_steps:
                if deadline is not None and _should_stop(time.perf_counter() >= deadline, accelerator):
                    stopped_by = "max_minutes"
                    break
                batch = _to_device(batches(step, rank, world), accelerator.device)
                torch.manual_seed(derive_seed(config.seed, step, rank))  # dropout etc.: a function of the step
                factor = config.lr_factor(step)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor
                outputs = wrapped(batch)
                loss = outputs["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise TrainingError(
                        f"the loss became {loss.item()} at step {step}; lower the learning rate or resume from the "
                        "last checkpoint with a lower one"
                    )
                accelerator.backward(loss)
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(trained, config.max_grad_norm)
                updating = True
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                batch_tokens = count_tokens(batch)
                pending_tokens += batch_tokens
                updating = False
                window_tokens += batch_tokens * world  # for the speed shown; the log has exact sums
                window_loss += float(loss.detach())
                for key, value in outputs.items():
                    if key != "loss" and isinstance(value, torch.Tensor) and value.numel() == 1:
                        window_metrics[key] = window_metrics.get(key, 0.0) + float(value.detach())
                window_steps += 1
                now = time.perf_counter()
                speed = window_tokens / max(now - window_start, 1e-9)
                progress.update(task, completed=step, loss=f"{window_loss / window_steps:.4f}", speed=f"{speed:,.0f}")
                if step % config.log_every == 0 or step == config.max_steps:
                    sync_tokens()
                    mean_loss = _mean_across(window_loss / window_steps, accelerator)
                    record = {
                        "step": step,
                        "loss": round(mean_loss, 6),
                        "lr": group_lr(optimizer),
                        "tokens": tokens_seen,
                        "tokens_per_s": round(speed, 1),
                        "elapsed": round(prior_seconds + now - session_start, 3),
                    }
                    record.update({k: round(v / window_steps, 6) for k, v in window_metrics.items()})
                    log(record)
                    window_loss, window_metrics, window_steps, window_tokens = 0.0, {}, 0, 0
                    window_start = time.perf_counter()
                if config.eval_every and step % config.eval_every == 0:
                    evaluate(step)
                    last_eval_step = step
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
                    if config.eval_every is None and eval_fn is not None:
                        evaluate(step)
                        last_eval_step = step
                    checkpoint(step)
    except KeyboardInterrupt:
        # Ctrl-C between updates keeps the finished steps: checkpoint them, then stop as asked.
        # (Several processes may be inside a collective, so only a single process saves here.)
        if not updating and world == 1 and step > start_step:
            sync_tokens()
            if window_steps:
                log(
                    {
                        "step": step,
                        "loss": round(window_loss / window_steps, 6),
                        "lr": group_lr(optimizer),
                        "tokens": tokens_seen,
                        "elapsed": round(prior_seconds + time.perf_counter() - session_start, 3),
                    }
                )
            checkpoint(step)
        raise
    sync_tokens()
    if window_steps:  # the tail after the last logged step (a time budget stops anywhere)
        log(
            {
                "step": step,
                "loss": round(_mean_across(window_loss / window_steps, accelerator), 6),
                "lr": group_lr(optimizer),
                "tokens": tokens_seen,
                "elapsed": round(prior_seconds + time.perf_counter() - session_start, 3),
            }
        )
    if eval_fn is not None and last_eval_step != step and step > start_step:
        evaluate(step)
    if step > start_step or not has_checkpoint(checkpoint_dir):
        checkpoint(step)
    elif main:
        plot_learning_curve(history, checkpoint_dir / CURVE_NAME, config.description)
    train_losses = [r["loss"] for r in history if "loss" in r]
    return TrainResult(
        step=step,
        tokens_seen=tokens_seen,
        elapsed_seconds=prior_seconds + time.perf_counter() - session_start,
        stopped_by=stopped_by,
        resumed_from=resumed_from,
        train_loss=train_losses[-1] if train_losses else None,
        history=history,
        checkpoint_dir=checkpoint_dir,
        num_processes=world,
        is_main_process=main,
    )


def group_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _mean_across(value: float, accelerator) -> float:
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], device=accelerator.device, dtype=torch.float64)
    return float(accelerator.reduce(tensor, reduction="mean"))


def _sum_across(value: int, accelerator) -> int:
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], device=accelerator.device, dtype=torch.int64)
    return int(accelerator.reduce(tensor, reduction="sum"))


def _should_stop(local: bool, accelerator) -> bool:
    """Every process stops at the same step, or DDP would wait forever for the others."""
    if accelerator.num_processes == 1:
        return local
    flag = torch.tensor([1.0 if local else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum") > 0)


def _check_resume(
    state: dict, named: Mapping[str, nn.Parameter], config: LoopConfig, settings: dict, folder: Path
) -> None:
    hint = f"pass the same settings, or run without --resume to start afresh (this deletes {folder})"
    if state["seed"] != config.seed:
        raise TrainingError(f"the checkpoint in {folder} was made with seed {state['seed']}, not {config.seed}; {hint}")
    saved = state["settings"]
    current = json_safe(settings)
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise TrainingError(
                f"the checkpoint in {folder} was made with {key}={saved.get(key)!r}, this run has "
                f"{current.get(key)!r}; {hint}"
            )
    expected = {name: {"shape": list(p.shape), "dtype": str(p.dtype)} for name, p in named.items()}
    if state["params"] != expected:
        raise TrainingError(f"the checkpoint in {folder} holds other tensors than this run trains; {hint}")
    if state["step"] > config.max_steps:
        raise TrainingError(
            f"the checkpoint in {folder} is at step {state['step']}, past max_steps={config.max_steps}; raise max_steps"
        )

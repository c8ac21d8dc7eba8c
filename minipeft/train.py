"""The training loop: generic over the model, the examples, the loss and the metrics.

    result = train(model, train_examples, val_examples, loss_fn, eval_fn, TrainConfig(...),
                   out_dir="runs/x", provenance={...}, collate=PadCollate(pad_id=0))

- Examples are dicts of lists of ints / scalars (see minipeft.batching); `collate` turns a list of
  them into a dict of tensors. Training batches are length-bucketed (LengthBucketSampler, seeded
  by config.seed and the epoch); evaluation batches are sorted longest first (not the data order;
  take labels from the batches).
- `loss_fn(model, batch) -> scalar tensor`, the MEAN over the batch's examples. With gradient
  accumulation each micro-batch's loss is weighted by its share of the step's examples, so
  batch_size=2, grad_accum=2 optimises the same objective as batch_size=4, grad_accum=1.
- `eval_fn(model, batches) -> {metric: float}`; called in eval mode under torch.no_grad with
  batches already on the device. `config.select_metric` must be one of its keys.
- Optimiser: AdamW over trainable parameters only (minipeft.optim: no decay for biases, vectors and
  norm layers), lr · linear warm-up/decay factor per optimiser step, grad-norm clipping.
- Each epoch: evaluate, keep the best trainable tensors by select_metric (mode max|min), stop after
  `patience` epochs without improvement. At the end the best tensors are copied back into the model.
- out_dir (optional) receives log.jsonl (one JSON object per line: start/step/eval/end events),
  result.json (config, provenance, result), and while running the checkpoints of
  minipeft.checkpoint. Calling train() again with the same out_dir after a kill resumes from the
  last checkpoint and ends with the same tensors as an uninterrupted run (same machine, CPU).
- Wall-clock budget and step-wise evaluation (the paper's time-budget study, §4.7):
  `max_seconds` stops training after the optimiser step that brings the time spent in training
  steps (evaluation excluded, summed across resumes) to the budget, then evaluates once more;
  `eval_every_steps` K also evaluates every K optimiser steps inside an epoch. Every evaluation
  joins best-state selection and `history`; `history_seconds` holds the training seconds at each
  (the time axis of a score-against-time curve). Patience still counts epoch ends only.
- Memory: minipeft.memory (CUDA peak; on CPU saved-for-backward bytes and peak RSS).
- Base fingerprint: minipeft.fingerprint(model) before and after; if no base parameter was
  trainable (adapter or head-only run) and the fingerprint changed, RuntimeError.
- Determinism: the loop seeds python, numpy and torch with config.seed on a fresh start; seed your
  own model construction (head init) before calling, e.g. with seed_everything(seed).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed
from .batching import LengthBucketSampler, PadCollate

LossFn = Callable[[nn.Module, dict], torch.Tensor]
EvalFn = Callable[[nn.Module, Iterable[dict]], Mapping[str, float]]
# fields that may differ between a killed run and its resumption
_RESUME_FREE = {
    "progress",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "device",
    "eval_batch_size",
    "measure_memory",
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run. batch_size is the micro-batch (examples per forward);
    one optimiser step sees batch_size × grad_accum examples (the paper's batch 32 = 8 × 4)."""

    epochs: int = 5
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    batch_size: int = 32
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    select_metric: str = "f1_macro"
    select_mode: str = "max"  # "max" (F1, AUROC) or "min" (a loss)
    patience: int | None = 5  # epochs without improvement before stopping; None = never
    grad_checkpointing: bool = False  # sets `gradient_checkpointing = True` on modules that have it
    eval_batch_size: int | None = None  # default: batch_size × grad_accum
    bucket_batches: int = 50  # batches per length-sorting bucket
    checkpoint_every: int = 0  # optimiser steps between mid-epoch checkpoints (0: epoch ends)
    keep_checkpoints: bool = False  # keep checkpoint/best files after a finished run
    log_every: int = 10  # optimiser steps per "step" log line
    device: str = "auto"  # "auto": cuda when available, else cpu
    progress: bool = True  # tqdm bars (leave=False, so they nest under a caller's bar)
    measure_memory: bool = True  # saved-for-backward bytes per step (CPU and CUDA)
    max_seconds: float | None = None  # stop once this many seconds of training steps are spent
    eval_every_steps: int | None = None  # also evaluate every K optimiser steps (None: epoch ends)

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "bucket_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.select_mode not in ("max", "min"):
            raise ValueError(f"TrainConfig.select_mode must be 'max' or 'min', got {self.select_mode!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"TrainConfig.max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ValueError(
                f"TrainConfig.eval_every_steps must be >= 1 or None, got {self.eval_every_steps}"
            )


@dataclass
class TrainResult:
    best_epoch: int | None  # 0-based epoch whose tensors the model holds at the end
    best_metric: float | None
    history: list[dict]  # one dict per evaluation: epoch, step, train_loss, metrics
    steps: int  # optimiser steps taken
    train_seconds: float  # time in training steps (evaluation excluded), across resumes
    samples_per_second: float
    stopped_early: bool
    trainable_params: int
    memory: dict  # saved_bytes_max, peak_rss_bytes, cuda_peak_bytes
    fingerprint_before: str | None
    fingerprint_after: str | None
    resumed_from_step: int | None = None
    best_metrics: dict = field(default_factory=dict)
    stopped_by_budget: bool = False  # config.max_seconds was spent before the last epoch ended
    best_step: int | None = None  # optimiser step of the evaluation whose tensors the model holds
    history_seconds: list = field(default_factory=list)  # training seconds at each history entry

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evaluate(
    model: nn.Module,
    examples: Sequence[Mapping],
    eval_fn: EvalFn,
    *,
    batch_size: int,
    collate: Callable = PadCollate(),
    device: torch.device | str | None = None,
    length_key: str = "input_ids",
) -> dict[str, float]:
    """eval_fn over length-sorted batches (longest first) in eval mode without gradients.
    Restores the model's previous train/eval mode afterwards."""
    if not examples:
        raise ValueError("evaluate() got no examples; the validation/test split is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    order = LengthBucketSampler([len(ex[length_key]) for ex in examples], batch_size, shuffle=False)
    make = lambda idx: to_device(collate([examples[i] for i in idx]), device)  # noqa: E731
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # distributed hook: batches shared by the processes, metrics on the gathered outputs
            metrics = dict(distributed.context().evaluate(eval_fn, model, order.batches(), make))
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def _fingerprint(model: nn.Module) -> str | None:
    import minipeft  # late: the adapter package may import this module

    fn = getattr(minipeft, "fingerprint", None)
    return fn(model) if fn is not None else None


def _base_is_trainable(model: nn.Module) -> bool | None:
    """True when a base parameter (not adapter, not head) trains; None if roles are unknown."""
    import minipeft

    table = getattr(minipeft, "param_table", None)
    if table is None:
        return None
    return any(r.trainable and r.role == "base" for r in table(model))


def _set_grad_checkpointing(model: nn.Module, on: bool) -> dict[nn.Module, bool]:
    """Set `gradient_checkpointing` on every module that has the attribute; return old values."""
    old = {
        m: m.gradient_checkpointing
        for m in model.modules()
        if isinstance(getattr(m, "gradient_checkpointing", None), bool)
    }
    if on and not old:
        raise ValueError(
            f"grad_checkpointing=True but no module of {type(model).__name__} has a boolean "
            f"`gradient_checkpointing` attribute; set it to False or add one to the model"
        )
    for m in old:
        m.gradient_checkpointing = on
    return old


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (Path, torch.device)):
        return str(x)
    return repr(x)


class _Log:
    """Append JSON lines to out_dir/log.jsonl (no-op without out_dir)."""

    def __init__(self, out_dir: Path | None, fresh: bool):
        self.path = out_dir / "log.jsonl" if out_dir else None
        if self.path and fresh:
            self.path.write_text("")

    def __call__(self, **event) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(event, default=_jsonable) + "\n")


def train(
    model: nn.Module,
    train_data: Sequence[Mapping],
    val_data: Sequence[Mapping],
    loss_fn: LossFn,
    eval_fn: EvalFn,
    config: TrainConfig = TrainConfig(),
    *,
    out_dir: str | Path | None = None,
    provenance: Mapping | None = None,
    collate: Callable = PadCollate(),
    callback: Callable[[dict], None] | None = None,
    length_key: str = "input_ids",
    desc: str = "train",
) -> TrainResult:
    """Train `model` in place and leave the best epoch's trainable tensors in it (module docstring).

    callback(info) runs after every optimiser step (after any checkpoint of that step) with
    info = {"step", "epoch", "position", "loss", "lr"}; an exception in it aborts the run, which a
    later call with the same out_dir resumes. provenance is stored verbatim in the outputs.
    """
    from .loop import Loop  # the per-step machinery lives next door to keep files small

    config.validate()
    if not train_data:
        raise ValueError("train() got an empty training set")
    if not val_data:
        raise ValueError("train() got an empty validation set; best-epoch selection needs one")
    loop = Loop(
        model,
        train_data,
        val_data,
        loss_fn,
        eval_fn,
        config,
        out_dir,
        dict(provenance or {}),
        collate,
        callback,
        length_key,
        desc,
    )
    return loop.run()

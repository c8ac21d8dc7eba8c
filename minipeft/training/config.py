"""The run's settings (TrainConfig) and its outcome (TrainResult): frozen, flat, typed dataclasses.

Epochs are numbered from 1 wherever a person reads them (TrainResult.best_epoch, `history`,
log.jsonl, the screen); checkpoint.json's `epoch` counts the epochs completed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

# fields that may differ between a killed run and its resumption
RESUME_FREE = frozenset(
    {
        "progress",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "device",
        "eval_batch_size",
        "measure_memory",
    }
)


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
    # on stderr: a tqdm bar on a terminal, else a plain line per ~10% of an epoch; and one line per
    # epoch with the validation metrics and the run's ETA. False: silent.
    progress: bool = True
    measure_memory: bool = True  # saved-for-backward bytes per step (CPU and CUDA)
    loraplus_ratio: float | None = None  # LoRA+: B side at lr × ratio (minipeft.training.optim); None: off
    # the paper's time-budget study (§4.7): stop after the optimiser step that brings the seconds spent
    # in training steps (evaluation excluded, summed across resumes) to max_seconds, then evaluate once
    # more; eval_every_steps K also evaluates every K optimiser steps inside an epoch. Every evaluation
    # joins best-state selection and `history`; patience still counts epoch ends only.
    max_seconds: float | None = None
    eval_every_steps: int | None = None

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "bucket_batches", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(
                f"TrainConfig.patience must be >= 1 or None (never stop early), got {self.patience}; "
                "0 would stop after the first epoch"
            )
        if self.select_mode not in ("max", "min"):
            raise ValueError(f"TrainConfig.select_mode must be 'max' or 'min', got {self.select_mode!r}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.loraplus_ratio is not None and not self.loraplus_ratio > 0:
            raise ValueError(
                f"TrainConfig.loraplus_ratio must be > 0 (LoRA+ suggests 16), got {self.loraplus_ratio}; "
                "use None to train with one learning rate"
            )
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"TrainConfig.max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.eval_every_steps is not None and self.eval_every_steps < 1:
            raise ValueError(
                f"TrainConfig.eval_every_steps must be >= 1 or None, got {self.eval_every_steps}"
            )


@dataclass
class TrainResult:
    best_epoch: int | None  # epoch (from 1) whose tensors the model holds at the end
    best_metric: float | None
    history: list[dict]  # one dict per evaluation: epoch (from 1), step, train_loss, metrics
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
    warnings: list[str] = field(default_factory=list)  # e.g. the first epoch was the best one
    stopped_by_budget: bool = False  # config.max_seconds was spent before the last epoch ended
    best_step: int | None = None  # optimiser step of the evaluation whose tensors the model holds
    history_seconds: list = field(default_factory=list)  # training seconds at each history entry

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(name: str) -> torch.device:
    """`auto`: cuda when available, else cpu; anything else as torch.device reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

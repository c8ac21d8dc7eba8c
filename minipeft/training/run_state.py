"""The state of one training run, apart from the loop that advances it.

The loop (loop.py) keeps everything a resumption needs in one JSON-able dict, `state`: the step, the
epoch and the position in it, the best epoch so far, the history, the clock. This module says what
that dict is on a fresh start, how a checkpoint becomes it again (refusing one written with another
config), and what the finished state becomes: the TrainResult, with the warnings about the chosen
epoch, after checking that an adapter/head-only run left the base untouched.
state["epoch"] counts the epochs completed; the epochs in history, best_epoch and warnings count from 1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from minipeft import fingerprint, param_table

from .config import RESUME_FREE, TrainConfig, TrainResult

# keys a checkpoint stores beside the state, dropped when it becomes the state again
_CHECKPOINT_ONLY = ("format", "version", "tensors", "rng")
# keys added after the first checkpoints were written, with the value an old checkpoint implies
_LATER_KEYS = (("best_step", None), ("last_eval_step", None), ("budget_spent", False))


def fresh_state(model: nn.Module, cfg: TrainConfig) -> dict:
    """The state before the first step; fingerprints the base so that _finish can check it."""
    return {
        "step": 0,
        "epoch": 0,
        "position": 0,
        "best_metric": None,
        "best_epoch": None,
        "best_metrics": {},
        "best_file": None,
        "best_step": None,
        "last_eval_step": None,
        "budget_spent": False,
        "bad_epochs": 0,
        "history": [],
        "history_seconds": [],
        "train_seconds": 0.0,
        "examples": 0,
        "stopped_early": False,
        "epoch_loss": [0.0, 0],
        "fingerprint_before": fingerprint(model),
        "config": dataclasses.asdict(cfg),
    }


def check_same_config(doc: dict, cfg: TrainConfig, checkpoint_file: Path) -> None:
    """A resumption must use the checkpoint's config, except the fields in RESUME_FREE."""
    old, new = doc["config"], dataclasses.asdict(cfg)
    diff = {k: (old.get(k), v) for k, v in new.items() if k not in RESUME_FREE and old.get(k) != v}
    if diff:
        raise ValueError(
            f"{checkpoint_file} was written with another config "
            f"(field: (checkpoint, now)) {diff}; use the same config or a new out_dir"
        )


def state_from_checkpoint(doc: dict) -> dict:
    """The state a checkpoint's JSON document holds, filled in for checkpoints of older versions."""
    state = {k: v for k, v in doc.items() if k not in _CHECKPOINT_ONLY}
    for key, value in _LATER_KEYS:
        state.setdefault(key, value)
    state.setdefault("history_seconds", [None] * len(state["history"]))
    return state


def selection_warnings(state: dict, cfg: TrainConfig) -> list[str]:
    """What a person must hear about the chosen epoch: the first stayed the best, or it scored 0."""
    metric, found = cfg.select_metric, []
    if state["best_epoch"] == 1 and len(state["history"]) > 1:
        found.append(
            f"the best epoch by validation {metric} is the first of {len(state['history'])}: the model "
            f"may be barely trained; rare labels can need many epochs (raise epochs and patience)"
        )
    if state["best_metric"] == 0 and cfg.select_mode == "max":
        found.append(
            f"validation {metric} is 0 at the best epoch {state['best_epoch']}: the model finds none of "
            f"what it is scored on; train longer, raise patience or the learning rate"
        )
    return found


def _base_is_trainable(model: nn.Module) -> bool:
    """True when a base parameter (not adapter, not head) trains."""
    return any(r.trainable and r.role == "base" for r in param_table(model))


def check_base_unchanged(model: nn.Module, before: str | None) -> str:
    """The base fingerprint now; RuntimeError when it moved although no base parameter trains."""
    after = fingerprint(model)
    if before is not None and after != before and not _base_is_trainable(model):
        raise RuntimeError(
            f"the base model changed during an adapter/head-only run (fingerprint "
            f"{before[:12]}… → {after[:12]}…); a frozen base weight was modified"
        )
    return after


def result_of(
    state: dict, cfg: TrainConfig, *, after: str, trainable: int, memory: dict, resumed_from
) -> TrainResult:
    """The finished state as the TrainResult that train() returns."""
    return TrainResult(
        best_epoch=state["best_epoch"],
        best_metric=state["best_metric"],
        history=state["history"],
        steps=state["step"],
        train_seconds=state["train_seconds"],
        samples_per_second=state["examples"] / max(state["train_seconds"], 1e-9),
        stopped_early=state["stopped_early"],
        trainable_params=trainable,
        memory=memory,
        fingerprint_before=state["fingerprint_before"],
        fingerprint_after=after,
        resumed_from_step=resumed_from,
        best_metrics=state["best_metrics"],
        warnings=selection_warnings(state, cfg),
        stopped_by_budget=state["budget_spent"],
        best_step=state["best_step"],
        history_seconds=state["history_seconds"],
    )

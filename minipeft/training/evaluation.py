"""Evaluation: the model in eval mode, without gradients, over length-sorted batches.

An eval_fn is either a plain callable `eval_fn(model, batches) -> {metric: float}` or an
`Evaluator(predict, score)`, which splits it in two halves:

    predict(model, batch) -> outputs of one batch (predictions and the labels they are scored
                             against; numbers, numpy arrays or CPU tensors: they are gathered)
    score([outputs of every batch, in batch order]) -> {metric: float}

An Evaluator is itself such a callable (`score([predict(model, b) for b in batches])`), so it works
wherever an eval_fn does. Under torchrun (W processes) the batches are dealt out B[r::W]; each
process runs `predict` on its share, rank 0 gathers the outputs, puts them back in batch order
and calls `score` once, on the whole set, exactly as one process would; the metrics are then
broadcast so that every process agrees on the best epoch. A plain callable cannot be split: each
process runs it over every batch (same metrics, no speed-up), and rank 0's metrics are broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import distributed
from .batching import LengthBucketSampler, PadCollate, to_device

EvalFn = Callable[[nn.Module, Iterable[dict]], Mapping[str, float]]


@dataclass(frozen=True)
class Evaluator:
    """An eval_fn in two halves, so that distributed evaluation can share the batches (module docstring)."""

    predict: Callable[[nn.Module, dict], Any]
    score: Callable[[list], Mapping[str, float]]

    def __call__(self, model: nn.Module, batches: Iterable[dict]) -> Mapping[str, float]:
        return self.score([self.predict(model, batch) for batch in batches])


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
    """eval_fn over length-sorted batches (longest first, not the data order: take labels from the
    batches) in eval mode without gradients. Restores the model's previous train/eval mode."""
    if not examples:
        raise ValueError("evaluate() got no examples; the validation/test split is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    order = LengthBucketSampler([len(ex[length_key]) for ex in examples], batch_size, shuffle=False)
    make = lambda idx: to_device(collate([examples[i] for i in idx]), device)  # noqa: E731
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = run_eval(eval_fn, model, order.batches(), make)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def run_eval(
    eval_fn: EvalFn,
    model: nn.Module,
    index_batches: Sequence[Sequence[int]],
    make_batch: Callable[[Sequence[int]], dict],
) -> dict:
    """eval_fn over every batch of `index_batches`, shared by the processes when it is an Evaluator.
    Call on every process, in eval mode, under torch.no_grad."""
    ctx = distributed.context()
    if not ctx.enabled:
        return dict(eval_fn(model, (make_batch(idx) for idx in index_batches)))
    if isinstance(eval_fn, Evaluator):
        positions = ctx.shard(range(len(index_batches)))
        mine = [(g, eval_fn.predict(model, make_batch(index_batches[g]))) for g in positions]
        everyone = ctx.gather_to_main(mine)  # rank 0: [(batch position, outputs)] of every process
        metrics = (
            dict(eval_fn.score([out for _, out in sorted(everyone, key=lambda x: x[0])]))
            if ctx.is_main
            else None
        )
    else:
        metrics = dict(eval_fn(model, (make_batch(idx) for idx in index_batches)))
    return ctx.broadcast(metrics)

"""The training loop: generic over the model, the examples, the loss and the metrics.

    from minipeft.training import PadCollate, TrainConfig, train
    result = train(model, train_examples, val_examples, loss_fn, eval_fn, TrainConfig(...),
                   out_dir="runs/x", provenance={...}, collate=PadCollate(pad_id=0))

- Examples are dicts of lists of ints / scalars (see batching); `collate` turns a list of them into
  a dict of tensors. Training batches are length-bucketed (LengthBucketSampler, seeded by
  config.seed and the epoch); evaluation batches are sorted longest first (not the data order;
  take labels from the batches).
- `loss_fn(model, batch) -> scalar tensor`, the MEAN over the batch's examples. With gradient
  accumulation each micro-batch's loss is weighted by its share of the step's examples, so
  batch_size=2, grad_accum=2 optimises the same objective as batch_size=4, grad_accum=1.
- `eval_fn(model, batches) -> {metric: float}`, or an `Evaluator(predict, score)` that torchrun's
  processes share (evaluation.py); called in eval mode under torch.no_grad with batches already on
  the device. `config.select_metric` must be one of its keys.
- Optimiser: AdamW over trainable parameters only (optim: no decay for biases, vectors and norm
  layers), lr · linear warm-up/decay factor per optimiser step, grad-norm clipping.
- Each epoch (numbered from 1): evaluate, keep the best trainable tensors by select_metric (mode
  max|min), stop after `patience` epochs without improvement. At the end the best tensors are
  copied back into the model; a best epoch that is the first of several, or a best score of 0,
  is printed as a warning and kept in TrainResult.warnings.
- out_dir (optional) receives log.jsonl (one JSON object per line: start/step/eval/warning/end
  events), result.json (config, provenance, result), and while running the checkpoints of
  checkpoint.py. Calling train() again with the same out_dir after a kill resumes from the last
  checkpoint and ends with the same tensors as an uninterrupted run (same machine, CPU).
- Screen (config.progress): a bar on a terminal, plain lines otherwise, one line per epoch with
  the validation metrics and the run's ETA (report.py).
- Memory: memory.py (CUDA peak; on CPU saved-for-backward bytes and peak RSS).
- Base fingerprint: minipeft.fingerprint(model) before and after; if no base parameter was
  trainable (adapter or head-only run) and the fingerprint changed, RuntimeError.
- Determinism: the loop seeds python, numpy and torch with config.seed on a fresh start; seed your
  own model construction (head init) before calling, e.g. with seed_everything(seed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from .batching import PadCollate
from .config import TrainConfig, TrainResult
from .evaluation import EvalFn
from .loop import Loop

LossFn = Callable[[nn.Module, dict], torch.Tensor]


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

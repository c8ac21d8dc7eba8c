"""One run of the rank sweep: a fresh head, the adapter injected at the run's rank, trained,
scored on validation and test, optionally saved (--keep-adapters), removed again; the runs.csv row.

The base model of the context is shared by every run of a process: each run leaves it as it found
it (minipeft.remove in a finally), and draws its head from its own seed (reset_head), so a run's
result does not depend on the runs before it. benchmarks.internals trains its LoRA runs here too.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import minipeft
from benchmarks.sweep_plan import Context, Run
from minipeft.training import TrainConfig, evaluate, seed_everything, train
from models.bert import init_weights
from tasks.objective import seq_cls_eval, seq_cls_loss

HEAD = ("classifier",)


def reset_head(model, seed: int) -> None:
    """A fresh head drawn from the run's seed (HF's BERT init), identical at every rank."""
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    g = torch.Generator().manual_seed(seed)
    for name in HEAD:
        init_weights(model.get_submodule(name), std, generator=g)


def adapter_dir(out, run: Run) -> Path:
    """Where --keep-adapters saves a run's adapter: <out>/adapters/r<rank>-s<seed>[-t<trial>]."""
    return Path(out) / "adapters" / (f"r{run.rank}-s{run.seed}" + (f"-t{run.trial}" if run.trial else ""))


def keep_adapter(ctx: Context, model, run: Run, args) -> None:
    """Save the run's adapter (and head) with its provenance, for later analysis."""
    provenance = {"task": args.task, "labels": list(ctx.labels), "base_model": str(ctx.model_dir)}
    provenance.update(rank=run.rank, seed=run.seed, trial=run.trial, lr=run.lr, data_files=ctx.files)
    minipeft.save_adapter(
        model,
        adapter_dir(args.out, run),
        task_type="SEQ_CLS",
        base_model_name_or_path=str(ctx.model_dir),
        provenance=provenance,
    )


def run_one(ctx: Context, run: Run, args) -> dict:
    """inject -> train -> evaluate -> remove; returns the runs.csv row."""
    model = ctx.model
    cpu0, wall0 = time.process_time(), time.perf_counter()
    seed_everything(run.seed)
    reset_head(model, run.seed)
    minipeft.inject(model, run.lora_config(args.targets, HEAD, args.method))
    try:
        s = minipeft.summary(model)
        cfg = TrainConfig(
            epochs=args.epochs,
            lr=run.lr,
            batch_size=args.batch_size,
            seed=run.seed,
            select_metric="roc_auc",
            patience=None,
            progress=not args.no_progress,
            eval_batch_size=max(64, args.batch_size),
        )
        result = train(
            model,
            ctx.encoded["train"],
            ctx.encoded["val"],
            seq_cls_loss,
            seq_cls_eval,
            cfg,
            collate=ctx.collate,
            desc=f"r={run.rank} seed={run.seed}" + (f" trial={run.trial}" if args.search else ""),
        )
        t0 = time.perf_counter()
        test = evaluate(
            model, ctx.encoded["test"], seq_cls_eval, batch_size=cfg.eval_batch_size, collate=ctx.collate
        )
        eval_seconds = time.perf_counter() - t0
        if getattr(args, "keep_adapters", False):
            keep_adapter(ctx, model, run, args)
    finally:
        minipeft.remove(model)
    val = result.best_metrics
    return {
        "task": args.task,
        "rank": run.rank,
        "seed": run.seed,
        "trial": run.trial,
        "alpha_policy": run.policy,
        "alpha": run.alpha,
        "scaling": run.scaling,
        "lr": run.lr,
        "dropout": run.dropout,
        "targets": ",".join(args.targets),
        "epochs": args.epochs,
        "train_examples": len(ctx.encoded["train"]),
        "trainable_params": result.trainable_params,
        "adapter_params": s.adapter,
        "adapter_percent": round(s.percent, 4),
        "model_params": s.model,
        "val_auroc": val["roc_auc"],
        "val_f1_macro": val["f1_macro"],
        "val_accuracy": val["accuracy"],
        "test_auroc": test["roc_auc"],
        "test_f1_macro": test["f1_macro"],
        "test_accuracy": test["accuracy"],
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "samples_per_second": round(result.samples_per_second, 2),
        "saved_bytes_max": result.memory["saved_bytes_max"],
        "peak_rss_bytes": result.memory["peak_rss_bytes"],
        "run_seconds": round(time.perf_counter() - wall0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "threads": torch.get_num_threads(),
    }

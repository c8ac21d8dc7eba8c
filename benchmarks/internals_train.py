"""The training half of benchmarks.internals: LoRA runs as the rank sweep trains them (sweep_run.py:
run_one with --keep-adapters), one full fine-tune through minipeft.train, both resumable from --out.

--out holds settings.json (what every run depends on; another setting in the same --out is refused),
runs.csv and adapters/r<rank>-s<seed>/ (as the rank sweep writes them), and full/model (HF layout)
with full/result.json written last. A run is skipped when its row (LoRA) or result.json (full) and
its saved weights exist.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from benchmarks import cli_args, rank_sweep, sweep_io, sweep_run
from benchmarks.sweep_plan import Run, estimate_seconds, plan_runs
from minipeft import files
from minipeft.io import CONFIG_FILE, WEIGHTS_FILE
from minipeft.training import LengthBucketSampler, TrainConfig, evaluate, seed_everything, train
from minipeft.training.batching import to_device
from models import save_pretrained
from tasks.objective import seq_cls_eval, seq_cls_loss

FULL_DIR = "full"
ANALYSIS_SECONDS = 30.0  # load + SVDs + figures on MiniLM: 8 s CPU, 70 s wall on a shared machine


def sweep_args(args, out: Path) -> argparse.Namespace:
    """The namespace rank_sweep's load_context, run_one, calibrate and settings_of read."""
    return argparse.Namespace(
        **{
            "method": "lora",
            **vars(args),
            "reference_rank": args.ranks[0],
            "search": 0,
            "keep_adapters": True,
            "out": str(out),
        }
    )


def _adapter_done(out: Path, run: Run) -> bool:
    d = sweep_run.adapter_dir(out, run)
    return all((d / f).is_file() for f in (CONFIG_FILE, WEIGHTS_FILE))


def train_full(ctx, args, out: Path, seed: int) -> dict:
    """One full fine-tune of a copy of the base (every parameter trains), saved to out/full/model."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = copy.deepcopy(ctx.model)
    seed_everything(seed)
    sweep_run.reset_head(model, seed)
    for p in model.parameters():
        p.requires_grad_(True)
    cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.full_lr,
        batch_size=args.batch_size,
        seed=seed,
        select_metric="roc_auc",
        patience=None,
        progress=not args.no_progress,
        eval_batch_size=max(64, args.batch_size),
    )
    enc = ctx.encoded
    result = train(
        model,
        enc["train"],
        enc["val"],
        seq_cls_loss,
        seq_cls_eval,
        cfg,
        collate=ctx.collate,
        desc=f"full seed={seed}",
    )
    test = evaluate(model, enc["test"], seq_cls_eval, batch_size=cfg.eval_batch_size, collate=ctx.collate)
    save_pretrained(model, out / FULL_DIR / "model", tokenizer_dir=ctx.model_dir)
    row = {
        "seed": seed,
        "lr": args.full_lr,
        "epochs": args.epochs,
        "val_auroc": result.best_metrics["roc_auc"],
        "test_auroc": test["roc_auc"],
        "test_accuracy": test["accuracy"],
        "train_seconds": round(result.train_seconds, 2),
        "run_seconds": round(time.perf_counter() - wall0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "trainable_params": result.trainable_params,
        "threads": torch.get_num_threads(),
    }
    files.write_json(out / FULL_DIR / "result.json", row)  # last: marks the run as done
    return row


def calibrate_full(ctx, args) -> float:
    """Seconds per padded token of a full fine-tuning step (forward + backward of every weight,
    x1.1 for AdamW's update of every parameter), measured now on 3 batches."""
    model, enc = ctx.model, ctx.encoded["train"]
    lengths = [len(e["input_ids"]) for e in enc]
    flags = [p.requires_grad for p in model.parameters()]
    times = []
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        for b in LengthBucketSampler(lengths, args.batch_size, seed=0).batches(0)[:3]:
            batch = to_device(ctx.collate([enc[i] for i in b]), "cpu")
            t0 = time.perf_counter()
            seq_cls_loss(model, batch).backward()
            times.append((time.perf_counter() - t0) / batch["input_ids"].numel())
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.zero_grad(set_to_none=True)
    return 1.1 * sorted(times[1:])[len(times[1:]) // 2]


def print_estimate(ctx, pending: list[Run], full_pending: bool, args) -> None:
    per_step, per_eval = rank_sweep.choose_threads(ctx, pending or plan_runs(args)[:1], args)
    lora = estimate_seconds(ctx, pending, args, per_step, per_eval) if pending else 0.0
    full = 0.0
    if full_pending:
        full = estimate_seconds(
            ctx, [Run(1, args.seeds[0], 0, "fixed", 1.0, 1.0, 0.0)], args, calibrate_full(ctx, args), per_eval
        )
    total = lora + full + ANALYSIS_SECONDS
    print(
        f"estimated time: {total / 60:.1f} min ({len(pending)} LoRA runs {lora / 60:.1f} min, full fine-tune "
        f"{full / 60:.1f} min, analysis ~{ANALYSIS_SECONDS / 60:.1f} min; measured now on "
        f"{torch.get_num_threads()} thread(s); a busy machine makes this pessimistic)",
        flush=True,
    )


def train_all(args, out: Path) -> dict:
    """Train what --out does not hold yet; returns the folders to analyse and their test metrics."""
    sargs = sweep_args(args, out)
    if args.threads != "auto":
        torch.set_num_threads(cli_args.positive_int(args.threads, "--threads"))
    ctx = rank_sweep.load_context(sargs)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**rank_sweep.settings_of(sargs, ctx), "full_lr": None if args.no_full else args.full_lr}
    sweep_io.check_settings(out / "settings.json", settings)
    rows = sweep_io.read_runs(out / "runs.csv")
    done = {sweep_io.run_key(r) for r in rows}
    runs = plan_runs(sargs)
    pending = [r for r in runs if r.key not in done or not _adapter_done(out, r)]
    full_pending = not args.no_full and not (out / FULL_DIR / "result.json").is_file()
    reused_full = "" if args.no_full or full_pending else " and the full fine-tune"
    print(
        f"internals: {len(runs)} LoRA runs and {'no' if args.no_full else 'one'} full fine-tune planned; "
        f"{len(runs) - len(pending)} LoRA runs{reused_full} "
        f"already in {out} (reused), {len(pending) + full_pending} to train now",
        flush=True,
    )
    if pending or full_pending:
        print_estimate(ctx, pending, full_pending, sargs)
    for run in pending:
        row = sweep_run.run_one(ctx, run, sargs)
        rows = [r for r in rows if sweep_io.run_key(r) != run.key] + [row]
        sweep_io.write_runs(out / "runs.csv", rows)
        print(
            f"  LoRA r={run.rank} seed={run.seed}: test AUROC {row['test_auroc']:.3f}, "
            f"{row['run_seconds']:.0f} s",
            flush=True,
        )
    if full_pending:
        t0 = time.perf_counter()
        full = train_full(ctx, sargs, out, args.seeds[0])
        print(
            f"  full fine-tune seed={args.seeds[0]}: test AUROC {full['test_auroc']:.3f}, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    metrics = {}
    for r in sweep_io.read_runs(out / "runs.csv"):
        where = sweep_run.adapter_dir(out, Run(int(r["rank"]), int(r["seed"]), int(r["trial"]), "", 0, 0, 0))
        metrics[str(where)] = {"test_auroc": float(r["test_auroc"]), "val_auroc": float(r["val_auroc"])}
    full_dir = None
    if not args.no_full:
        full_dir = out / FULL_DIR / "model"
        doc = json.loads((out / FULL_DIR / "result.json").read_text(encoding="utf-8"))
        metrics[str(full_dir)] = {"test_auroc": doc["test_auroc"], "val_auroc": doc["val_auroc"]}
    return {
        "adapters": [sweep_run.adapter_dir(out, r) for r in runs],
        "full": full_dir,
        "metrics": metrics,
        "settings": {k: v for k, v in settings.items() if k != "data_files"},
    }

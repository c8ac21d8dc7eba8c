"""`python -m benchmarks.rank_sweep`: the paper's LoRA rank study (ΔAUROC = AUROC_r − AUROC_8).

One base model and one tokenised data set are loaded once; every run injects LoRA at its rank,
trains with minipeft.training.train, records validation/test metrics, and removes the adapter again.
Outputs in --out: runs.csv, summary.md, rank_sweep.png, sweep.json; the last stdout line is a JSON
summary. A killed sweep restarted with the same --out skips the runs already in runs.csv.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import cli_args
from models.assets import MINILM, asset_dir, sha256_file
from tasks.cli import run_or_exit
from tasks.encode import encode_texts
from tasks.registry import SEQ_CLS, get_task, load_data, subsample

DEFAULTS = dict(
    task="rotten-tomatoes",
    ranks="2,8,32,128",
    seeds="12,34,56",
    alpha_policy="rslora",
    alpha=8.0,
    targets="query,value",
    epochs=1,
    lr=1e-3,
    dropout=0.1,
    batch_size=16,
    max_length=480,
    max_train_examples=2000,
    max_eval_examples=800,
    out="runs/rank_sweep",
)
REQUIRED = ("rank", "seed", "trial", "val_auroc", "test_auroc")  # columns a resumable runs.csv must have

DESCRIPTION = """\
The paper's LoRA rank study (Taylor et al. 2024): AUROC at rank r minus AUROC at rank 8,
paired per seed, on an embedded default or on your data (--task mimic-mp --data-dir DIR).

Default, 3-4 min on 2 idle CPU cores (the estimate is printed before anything trains):
the real all-MiniLM-L6-v2 on rotten-tomatoes, ranks 2,8,32,128 x seeds 12,34,56 = 12 runs of
1 epoch on 2,000 examples, lr 1e-3, LoRA on query,value, alpha policy rslora, scored on 800
validation and 800 test examples. "Within noise": the paired 95% t-interval contains 0.
The paper's protocol: --ranks 8,16,32,64,128 --epochs 5 --search 20 --max-train-examples 0.
Why this grid, this alpha policy and this budget: docs/rank-sweep.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.parser("benchmarks.rank_sweep", DESCRIPTION)
    a, d = p.add_argument, DEFAULTS
    a(
        "--task",
        default=d["task"],
        help="registered sequence-classification task (default rotten-tomatoes; "
        "mimic-mp, mimic-los, icd9-triage, i2b2-re need --data-dir)",
    )
    cli_args.add(p, d, "--data-dir", "--model")
    cli_args.add(p, d, "--ranks", ranks=f"LoRA ranks (default {d['ranks']}; the paper: 8,16,32,64,128)")
    a(
        "--reference-rank",
        type=int,
        default=8,
        help="rank every Δ is taken against (default 8, as the paper); must be in --ranks",
    )
    cli_args.add(
        p,
        d,
        "--seeds",
        "--alpha-policy",
        "--alpha",
        seeds=f"seed values, one run per rank and seed (default {d['seeds']}, the paper's)",
        alpha_policy="fixed: alpha=--alpha at every rank, scaling alpha/r (the authors' first sweep); "
        "proportional: alpha=r, scaling 1; rslora (default): alpha=--alpha, scaling alpha/sqrt(r) "
        "(docs/rank-sweep.md)",
    )
    a(
        "--method",
        choices=("lora", "dora", "vera"),
        default="lora",
        help="adapter swept over rank: lora (default), dora, or vera (rank of its shared projections; "
        "no alpha, so the alpha policy does not apply)",
    )
    cli_args.add(
        p,
        d,
        "--targets",
        "--epochs",
        targets="LoRA target modules (default query,value: the paper's for BERT)",
        epochs="epochs per run (default 1; the paper: 5)",
    )
    a("--lr", type=float, default=d["lr"], help="learning rate (default 1e-3; ignored with --search)")
    a("--dropout", type=float, default=d["dropout"], help="LoRA dropout (default 0.1; ignored with --search)")
    cli_args.add(
        p,
        d,
        *cli_args.SIZE,
        max_length="max tokens per note, right-truncated (default 480, the paper's)",
    )
    a(
        "--search",
        type=int,
        default=0,
        metavar="N",
        help="the paper's protocol: N random trials of lr, alpha and dropout per rank and seed, keeping "
        "the best by validation AUROC; overrides --alpha-policy/--lr/--dropout (default 0: off)",
    )
    cli_args.add(
        p,
        d,
        "--data-seed",
        "--threads",
        "--workers",  # --workers hook
        "--max-runs",
        data_seed="seed of the data subsets and of seeded splits (default 0; the same for every run)",
        threads="torch threads, or 'auto' (default): time a step with torch's default and with 1 thread "
        "and keep the faster; a resumed sweep reuses the count in runs.csv",
        workers="processes to spread the runs over, each run on one process "
        "(default 1: this process); see benchmarks/sweep_workers.py",
    )
    a(
        "--keep-adapters",
        action="store_true",
        help="save each run's trained adapter (PEFT layout, with manifest) to --out/adapters/r<rank>-s<seed>"
        "[-t<trial>] before it is removed, e.g. for python -m benchmarks.internals --adapters (default: off)",
    )
    cli_args.add(
        p,
        d,
        "--shard",
        "--out",
        "--no-progress",
        shard="run only the K-th of N slices of the plan (a Slurm array task); rerun without it on the "
        "same --out to write the summary (docs/grids.md)",
    )
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

import torch

from benchmarks import grid, sweep_io, sweep_report, sweep_stats
from benchmarks.sweep_plan import Context, calibrate, estimate_seconds, plan_runs
from benchmarks.sweep_run import run_one  # the grid engine's hook (workers import it from here)
from minipeft import files
from minipeft.training import PadCollate
from models import load_pretrained, load_tokenizer


def check_args(args) -> None:
    grid.parse_shard(args.shard)
    if args.reference_rank not in args.ranks:
        raise ValueError(f"--reference-rank {args.reference_rank} is not in --ranks {args.ranks}; add it")
    if min(args.ranks) < 1 or args.epochs < 1 or args.batch_size < 1 or args.search < 0:
        raise ValueError("--ranks, --epochs and --batch-size must be >= 1 and --search >= 0")
    if get_task(args.task).type != SEQ_CLS:
        raise ValueError(
            f"--task {args.task} is a tagging task; the rank sweep scores AUROC and needs a "
            f"sequence-classification task (mimic-mp, mimic-los, icd9-triage, i2b2-re, rotten-tomatoes, ...)"
        )


def choose_threads(ctx, pending, args) -> tuple[float, float]:
    """Calibrate with the current thread count; under --threads auto also with 1 thread, keep the faster."""
    default = torch.get_num_threads()
    per_step, per_eval = calibrate(ctx, pending, args)
    if args.threads == "auto" and default > 1:
        torch.set_num_threads(1)
        one_step, one_eval = calibrate(ctx, pending, args)
        print(
            f"threads: {default} -> {per_step * 1e3:.2f} ms, 1 -> {one_step * 1e3:.2f} ms "
            f"per padded training token; using {1 if one_step < per_step else default}",
            flush=True,
        )
        if one_step < per_step:
            return one_step, one_eval
        torch.set_num_threads(default)
    return per_step, per_eval


def load_context(args) -> Context:
    """Task data, tokenised once; the base model, loaded once."""
    task = get_task(args.task)
    data = load_data(task, args.data_dir, args.data_seed)
    model_dir = Path(args.model) if args.model else asset_dir(MINILM)
    tok = load_tokenizer(model_dir)
    splits = {
        "train": subsample(data.train, args.max_train_examples, args.data_seed),
        "val": subsample(data.validation, args.max_eval_examples, args.data_seed),
        "test": subsample(data.test, args.max_eval_examples, args.data_seed),
    }
    encoded = {k: encode_texts(tok, v, args.max_length) for k, v in splits.items()}
    # every run draws its own head (reset_head); timing the step before that is no use of it
    model = load_pretrained(
        model_dir, head=task.head, num_labels=len(data.labels), seed=0, warn_untrained_head=False
    )
    files = {str(f): sha256_file(f) for f in data.files}
    return Context(
        task=task,
        labels=data.labels,
        model=model,
        model_dir=model_dir,
        encoded=encoded,
        collate=PadCollate(pad_id=tok.pad_id),
        files=files,
    )


def settings_of(args, ctx: Context) -> dict:
    """What every row depends on (ranks and seeds may grow between invocations)."""
    return {
        "task": args.task,
        "model": str(ctx.model_dir),
        "data_files": ctx.files,
        **({} if args.method == "lora" else {"method": args.method}),  # lora: sweeps from before --method
        "alpha_policy": args.alpha_policy,
        "alpha": args.alpha,
        "targets": list(args.targets),
        "epochs": args.epochs,
        "lr": None if args.search else args.lr,
        "dropout": None if args.search else args.dropout,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "search": args.search,
        "train_examples": len(ctx.encoded["train"]),
        "val_examples": len(ctx.encoded["val"]),
        "test_examples": len(ctx.encoded["test"]),
        "data_seed": args.data_seed,
    }


def sweep(args) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    check_args(args)
    if args.threads != "auto":
        torch.set_num_threads(cli_args.positive_int(args.threads, "--threads"))
    out = Path(args.out)
    # never a folder of the user's: new, empty, or an earlier sweep's (sweep.json)
    files.check_dir_owned(out, marker="sweep.json", program="benchmarks.rank_sweep")
    ctx = load_context(args)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_of(args, ctx)
    store = grid.RunStore(out / "runs.csv", sweep_io.COLUMNS, sweep_io.run_key, "rank-sweep", REQUIRED)
    store.check_settings(out / "sweep.json", settings)
    rows = store.read()
    done = {sweep_io.run_key(r) for r in rows}
    runs = plan_runs(args)
    pending = grid.pending_runs(runs, done, args)
    grid.announce("rank sweep", runs, pending, done, store, args)
    earlier = sorted({int(r["threads"]) for r in rows if str(r.get("threads", "")).isdigit()})
    if args.threads == "auto" and earlier:  # float sums depend on the thread count: keep the sweep's own
        torch.set_num_threads(earlier[0])
        args = argparse.Namespace(**{**vars(args), "threads": str(earlier[0])})
        print(f"threads: {earlier[0]}, as the runs already in runs.csv (results depend on the thread count)")
    if pending:
        per_step, per_eval = choose_threads(ctx, pending, args)
        est = estimate_seconds(ctx, pending, args, per_step, per_eval)
        tokens = sum(len(e["input_ids"]) for e in ctx.encoded["train"]) / len(ctx.encoded["train"])
        print(
            f"estimated time: {est / 60:.1f} min for {len(pending)} runs (measured now on "
            f"{torch.get_num_threads()} threads: {per_step * 1e3:.2f} ms per padded training token, about "
            f"{per_step * tokens * args.batch_size:.2f} s per step of {args.batch_size}; a busy machine "
            f"makes this pessimistic)",
            flush=True,
        )
    # the grid engine: 1 or --workers processes, each row merged into runs.csv under a lock
    label = lambda run: f"rank={run.rank} seed={run.seed}"  # noqa: E731
    rows = grid.execute(ctx, pending, args, run_one, store, module="benchmarks.rank_sweep", label=label)
    if args.shard:
        print(f"shard {args.shard} done; rerun without --shard on {out} to write the grid's summary")
        return {"benchmark": "rank_sweep", "shard": args.shard, "runs": len(rows), "out": str(out)}
    return finish(args, out, rows, settings, time.perf_counter() - started, time.process_time() - cpu_started)


def finish(args, out: Path, rows: list[dict], settings: dict, wall: float, cpu: float) -> dict:
    rows = [r for r in rows if int(r["rank"]) in args.ranks and int(r["seed"]) in args.seeds]
    summary = sweep_stats.summarise(rows, args.reference_rank)
    settings = dict(settings, seeds=args.seeds)
    sweep_io.atomic_write(
        out / "summary.md", sweep_report.markdown(summary, args.reference_rank, settings, wall, cpu)
    )
    policy = f"search {args.search}" if args.search else args.alpha_policy
    title = f"{args.task}: LoRA rank sweep, {Path(settings['model']).name}, {policy}"
    sweep_report.plot(summary, args.reference_rank, out / "rank_sweep.png", title)
    print(sweep_report.table(summary, args.reference_rank))
    text, helps = sweep_report.verdict(summary, args.reference_rank)
    print(text)
    return {
        "benchmark": "rank_sweep",
        "config": {k: v for k, v in settings.items() if k != "data_files"},
        "ranks": args.ranks,
        "reference_rank": args.reference_rank,
        **grid.run_facts(rows, wall, cpu),
        "rank_above_reference_helps": helps,
        "verdict": text,
        "results": sweep_report.json_summary(summary, args.reference_rank),
        "out": str(out),
    }


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    doc = run_or_exit(sweep, args)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()

"""The flags, the driver and the command-line skeleton that paper_grid, few_shot and time_budget share.

study_parser(): the common flags (add_common), the study's own, --reference. run_study(): one
invocation (checks, drive, the study's report, the last JSON line); main(): parse, run, print.
drive(): check every input (one-line error before anything trains), refuse a resume with other
settings, plan, print what is done and what is left, print the time estimate, run the pending
runs through the grid engine (benchmarks.grid) and return every row of runs.csv.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from benchmarks import cli_args
from tasks.cli import comma_list, run_or_exit

# torch and the engine load inside the functions that need them: --help stays torch-free


def add_common(p: argparse.ArgumentParser, d: dict) -> None:
    """The flags every study has; `d` holds the study's defaults."""
    a = p.add_argument
    a(
        "--models",
        help="comma-separated HuggingFace BERT folders (default: the fetched all-MiniLM-L6-v2); "
        "each needs config.json, model.safetensors and tokenizer files",
    )
    a(
        "--methods",
        default=d["methods"],
        help=f"comma-separated: lora,ia3,full,frozen,prefix,prompt (default {d['methods']})",
    )
    a(
        "--tasks",
        default=d["tasks"],
        help=f"comma-separated registered tasks (default {d['tasks']}; the paper's: mimic-mp, mimic-los, "
        "icd9-triage, i2b2-re, i2b2-2010, i2b2-2012, i2b2-2014 with --data-dir)",
    )
    a("--data-dir", help="folder of the one task that reads files, or TASK=DIR,TASK=DIR for several")
    cli_args.add(p, d, "--seeds", "--epochs")
    a(
        "--lr",
        help="learning rate for every method, or METHOD=LR,... over the defaults for short runs "
        "(lora 2e-3, ia3 1e-2, full 5e-5, frozen 1e-3, prefix/prompt 3e-3; the paper's 5-epoch "
        "values are 3e-4 for adapters and 3e-5 for full)",
    )
    cli_args.add(
        p,
        d,
        *cli_args.SIZE,
        "--data-seed",
        "--threads",
        "--workers",
        "--shard",
        "--max-runs",
        "--out",
        "--no-progress",
        max_length=f"tokens per example (default {d['max_length']}; the paper: 480)",
        max_eval_examples="score on fixed random subsets of validation and test of this size "
        f"(default {d['max_eval_examples']}; 0 = whole, as the paper)",
        data_seed="seed of the data subsets and seeded splits (default 0)",
        threads="torch threads per process, or 'auto' (default): time a training step with torch's default "
        "and with 1 thread and keep the faster (on a machine shared with other jobs one thread is often "
        "several times faster)",
        out=f"output folder (default {d['out']}); rerun with it to resume",
    )


def study_parser(module: str, description: str, d: dict, own=None) -> argparse.ArgumentParser:
    """A study's parser: the common flags, the study's own (`own(p.add_argument)`), --reference."""
    p = cli_args.parser(module, description)
    add_common(p, d)
    if own is not None:
        own(p.add_argument)
    p.add_argument("--reference", help="method every paired Δ is taken against (default: full if present)")
    return p


def settings_of(args, inputs: dict, extra: dict) -> dict:
    keys = (
        "epochs",
        "lr",
        "batch_size",
        "max_length",
        "max_train_examples",
        "max_eval_examples",
        "data_seed",
    )
    return {**{k: getattr(args, k) for k in keys}, "data_files": inputs["files"], **extra}


def estimate(contexts, pending, args, budget: float | None = None, every: int | None = None) -> float:
    """Seconds for `pending`: each run's set-up, its training tokens (or the budget) and its
    evaluation tokens, at rates timed now per (model, task, method)."""

    from benchmarks import grid_study

    rates, total = {}, 0.0
    for run in pending:
        ctx = contexts.get(run.model, run.task)
        key = (run.model, run.task, run.method)
        if key not in rates:
            rates[key] = grid_study.seconds_per_token(ctx, run, args)
        step, per_eval, setup = rates[key]
        tokens = grid_study.train_tokens(ctx, run, args)
        steps = args.epochs * math.ceil(len(grid_study.train_examples(ctx, run, args)) / args.batch_size)
        train = tokens * step if budget is None else min(budget, tokens * step)
        evals = args.epochs if not every else train / (tokens * step / steps) / every + 1
        scored = evals * grid_study.eval_tokens(ctx, "val", args) + grid_study.eval_tokens(ctx, "test", args)
        total += setup + train + per_eval * scored
    return total


def choose_threads(contexts, run, args) -> None:
    """Under --threads auto: keep torch's default or 1 thread, whichever trains `run` faster now."""
    import torch

    from benchmarks import grid_study

    default = torch.get_num_threads()
    if args.threads != "auto" or default == 1:
        return
    ctx = contexts.get(run.model, run.task)
    many = grid_study.seconds_per_token(ctx, run, args)[0]
    torch.set_num_threads(1)
    one = grid_study.seconds_per_token(ctx, run, args)[0]
    print(
        f"threads: {default} -> {many * 1e3:.3f} ms, 1 -> {one * 1e3:.3f} ms per padded training token; "
        f"using {1 if one < many else default}",
        flush=True,
    )
    if one >= many:
        torch.set_num_threads(default)


def drive(args, name: str, module: str, plan, extra_settings: dict, budget=None, every=None):
    """(rows of runs.csv, settings, checked inputs, wall seconds, cpu seconds); None for a shard."""
    import torch

    from benchmarks import grid, grid_study

    started, cpu0 = time.perf_counter(), time.process_time()
    if args.threads != "auto":
        torch.set_num_threads(cli_args.positive_int(args.threads, "--threads"))
    inputs = grid_study.check_inputs(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = grid_study.store(out, name)
    settings = settings_of(args, inputs, extra_settings)
    store.check_settings(out / "grid.json", settings)
    done = {grid_study.row_key(r) for r in store.read()}
    runs = plan(args, inputs)
    pending = grid.pending_runs(runs, done, args)
    grid.announce(name, runs, pending, done, store, args)
    contexts = grid_study.Contexts(args)
    if pending:
        choose_threads(contexts, pending[0], args)
        est = estimate(contexts, pending, args, budget, every)
        print(
            f"estimated time: {est / 60:.1f} min for {len(pending)} runs on "
            f"{torch.get_num_threads()} threads "
            f"(training and evaluation steps timed now; a busy machine makes this pessimistic)",
            flush=True,
        )
    label = lambda r: f"{Path(r.model).name} {r.task} {r.method} seed={r.seed}"  # noqa: E731
    run_one = __import__(module, fromlist=["run_one"]).run_one
    rows = grid.execute(contexts, pending, args, run_one, store, module=module, label=label)
    if args.shard:
        print(f"shard {args.shard} done; rerun without --shard on {out} to write the tables and figures")
        return None
    return rows, settings, inputs, time.perf_counter() - started, time.process_time() - cpu0


def run_study(args, name: str, plan, report, extra: dict, check=None, budget=None, every=None):
    """A study's whole invocation: --reference and the study's own `check(args)` before anything
    trains, drive(), then `report(...)`; returns the last stdout line (None for a shard)."""
    from benchmarks import grid_report

    grid_report.reference_method(comma_list(args.methods), args.reference)  # before training
    if check is not None:
        check(args)
    done = drive(args, name, f"benchmarks.{name}", plan, extra, budget, every)
    if done is None:
        return None
    rows, settings, inputs, wall, cpu = done
    results = report(args, Path(args.out), rows, settings, inputs, wall, cpu)
    return json_line(name, settings, rows, wall, cpu, results, args.out)


def main(build_parser, main_run, argv=None) -> None:
    """Parse, run (a user mistake: one line on stderr, exit 2), print the JSON line."""
    args = build_parser().parse_args(argv)
    line = run_or_exit(main_run, args)
    if line:
        print(line)


def json_line(name: str, settings: dict, rows: list, wall: float, cpu: float, results, out) -> str:
    from benchmarks import grid

    return json.dumps(
        {
            "benchmark": name,
            "config": {k: v for k, v in settings.items() if k != "data_files"},
            **grid.run_facts(rows, wall, cpu),
            "results": results,
            "out": str(out),
        },
        default=str,
    )

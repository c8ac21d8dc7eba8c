"""`--workers N` of the grid engine (benchmarks.grid): a study's runs over N processes, one run each.

    python -m benchmarks.rank_sweep --workers 4 ...      (and paper_grid, few_shot, time_budget)

A pool of N processes (multiprocessing, "spawn": no forked torch thread pools) each imports the
study's module (`module`, e.g. benchmarks.rank_sweep), loads its context once
(`module.load_context(args)`: base model, tokenised data) and then executes whole runs
(`module.run_one(ctx, run, args)`), one at a time, taking the next pending run when it finishes
one. The parent process alone writes runs.csv: it receives finished rows in completion order and
merges each into the file atomically (benchmarks.grid.RunStore), so a kill at any moment leaves
complete rows only and a restart with the same --out skips them. A run does not depend on which
process executes it (run_one seeds the head, the adapter and the data order from the run's seed).
A run that raises stops the pool and the grid with its error; rows finished before stay in
runs.csv.

Threads per worker: --threads when it is a number, else max(1, cores // N), so N workers do not
oversubscribe the machine. Progress bars are off inside workers; the parent's bar counts runs.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import torch

_STATE: tuple | None = None  # (study module, context, args) inside a worker process


def worker_threads(args, workers: int) -> int:
    threads = str(getattr(args, "threads", "auto"))
    return (
        int(threads) if threads.isdigit() and int(threads) > 0 else max(1, (os.cpu_count() or 1) // workers)
    )


def _init(module: str, args: argparse.Namespace, threads: int) -> None:
    global _STATE
    study = importlib.import_module(module)
    torch.set_num_threads(threads)
    args = argparse.Namespace(**{**vars(args), "no_progress": True})
    _STATE = (study, study.load_context(args), args)


def _work(run):
    study, ctx, args = _STATE
    return run, study.run_one(ctx, run, args)


def rows(
    ctx, runs: Sequence, args, run_one: Callable, module: str = "benchmarks.rank_sweep"
) -> Iterator[tuple[object, dict]]:
    """(run, runs.csv row) for every run: in this process when args.workers <= 1 (in order),
    else from a pool of args.workers processes (in completion order)."""
    requested = int(getattr(args, "workers", 1))
    if requested < 1:
        raise ValueError(f"--workers must be >= 1, got {requested}")
    workers = min(requested, len(runs))
    if workers <= 1:
        for run in runs:
            yield run, run_one(ctx, run, args)
        return
    threads = worker_threads(args, workers)
    print(f"spreading {len(runs)} runs over {workers} processes with {threads} thread(s) each", flush=True)
    pool = multiprocessing.get_context("spawn").Pool(
        workers, initializer=_init, initargs=(module, args, threads)
    )
    try:
        yield from pool.imap_unordered(_work, runs)
        pool.close()
    finally:
        pool.terminate()
        pool.join()

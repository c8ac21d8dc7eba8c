"""The grid engine behind benchmarks.rank_sweep, paper_grid, few_shot and time_budget.

A study supplies a plan (an ordered list of runs, each with a `key`), a context (what every run
shares: data, tokenizer, base model; loaded once per process), `run_one(ctx, run, args) -> row`
and the columns of its runs.csv. The engine does the rest, the same way for every study:

- resume: runs whose key is already in runs.csv are skipped, so a killed grid restarted with the
  same --out only runs what is missing (--max-runs N stops after N new runs);
- --workers N: runs spread over N processes (benchmarks.sweep_workers), one run per process;
- --shard K/N: only the K-th of N contiguous slices of the plan runs. The slices partition the
  plan exactly (every run in one slice, sizes differ by at most one), so a Slurm job array of N
  tasks covers the grid; rerunning without --shard on the same --out finds every run done and
  writes the tables and figures of the whole grid;
- runs.csv: every finished run is merged into it under an exclusive fcntl lock on a sibling file
  `.runs.lock` (read, add the row, write to a temporary name, rename). Processes of any number of
  shards on one file system therefore never lose or half-write a row; a kill leaves the old or
  the new file.
- the settings every row depends on go to a JSON file next to runs.csv; resuming or sharding into
  the same --out with other settings is refused before anything trains.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from benchmarks import sweep_io, sweep_workers

LOCK_NAME = ".runs.lock"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' -> (K, N) with 1 <= K <= N; None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(
            f"--shard {text!r}: expected K/N with 1 <= K <= N (the K-th of N slices, e.g. 1/4 ... 4/4; "
            f"a Slurm array passes $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
        )
    return int(m.group(1)), int(m.group(2))


def shard_of(runs: Sequence, shard: tuple[int, int] | None) -> list:
    """The K-th of N contiguous slices of `runs` (all of them without a shard)."""
    if shard is None:
        return list(runs)
    k, n = shard
    lo, hi = (k - 1) * len(runs) // n, k * len(runs) // n
    return list(runs[lo:hi])


class RunStore:
    """runs.csv of one grid: one row per finished run, identified by key(row); merged under a lock."""

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        key: Callable[[dict], tuple],
        kind: str,
        required: Sequence[str] | None = None,
    ):
        self.path, self.columns, self.key, self.kind = Path(path), tuple(columns), key, kind
        self.required = tuple(columns if required is None else required)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock shared by every process writing this folder (fcntl, released on exit)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / LOCK_NAME, "a+") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in self.required if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{self.path}: columns {missing} are missing (found {reader.fieldnames}); "
                    f"it is not a {self.kind} runs.csv: choose another --out"
                )
            return list(reader)

    def write(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in sorted(rows, key=self.key):
            writer.writerow(row)
        sweep_io.atomic_write(self.path, buf.getvalue())

    def add(self, row: dict) -> list[dict]:
        """Merge one finished run into runs.csv (replacing an older row of the same key); all rows."""
        row = {k: "" if row.get(k) is None else str(row[k]) for k in self.columns}  # as read back
        with self.locked():
            rows = [r for r in self.read() if self.key(r) != self.key(row)] + [row]
            self.write(rows)
        return rows

    def check_settings(self, path: Path, settings: dict) -> None:
        """Write the settings file, or refuse when the one already in --out differs (under the lock)."""
        with self.locked():
            sweep_io.check_settings(path, json.loads(json.dumps(settings, default=str)))


def pending_runs(runs: Sequence, done: set, args) -> list:
    """This invocation's runs: its shard of the plan, minus those done, at most --max-runs."""
    mine = [r for r in shard_of(runs, parse_shard(getattr(args, "shard", None))) if r.key not in done]
    max_runs = getattr(args, "max_runs", None)
    return mine if max_runs is None else mine[:max_runs]


def announce(name: str, runs: Sequence, pending: Sequence, done: set, store: RunStore, args) -> None:
    n_done = sum(r.key in done for r in runs)
    shard = parse_shard(getattr(args, "shard", None))
    where = f" (shard {shard[0]}/{shard[1]}: {len(shard_of(runs, shard))} of them)" if shard else ""
    print(
        f"{name}: {len(runs)} runs planned{where}, {n_done} already in {store.path} (skipped), "
        f"{len(pending)} to do now",
        flush=True,
    )


def execute(
    ctx, pending: Sequence, args, run_one: Callable, store: RunStore, *, module: str, label: Callable
) -> list[dict]:
    """Run `pending` (in this process or over --workers processes), merging each row into runs.csv
    as it finishes; returns every row of runs.csv afterwards (other shards' included)."""
    from tqdm.auto import tqdm

    rows = store.read()
    bar = tqdm(total=len(pending), desc="runs", disable=args.no_progress, dynamic_ncols=True)
    for run, row in sweep_workers.rows(ctx, pending, args, run_one, module=module):
        bar.update(1)
        bar.set_postfix_str(label(run))
        rows = store.add(row)
    bar.close()
    return rows if pending else store.read()


def run_facts(rows: Sequence, wall: float, cpu: float) -> dict:
    """Where and how long a grid ran, for its last JSON line: torch, device, threads, runs, seconds."""
    import torch

    return {
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "runs": len(rows),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
    }

"""The training step under memory-allocator settings that only take effect when a process starts.

    python -m benchmarks.allocator [--settings default,thp,glibc] [--rounds 3] [--variants full,frozen,lora-fused]
                                   [--repeats 10] [--model-dir DIR]

`benchmarks.train_step` compares variants side by side inside one process. Allocator settings are
read when a process starts, so they cannot be compared that way: this runs
`python -m benchmarks.train_step` once per setting per round, the settings in an order rotated
every round, and pairs each setting's run with the same round's `default` run.

Settings (each run gets the environment as given, minus the variables below, plus its own):
  default  nothing set
  thp      THP_MEM_ALLOC_ENABLE=1: PyTorch aligns CPU tensors of 2 MiB or more to 2 MiB and asks
           the kernel for transparent huge pages for them (used when
           /sys/kernel/mm/transparent_hugepage/enabled is [madvise] or [always])
  glibc    MALLOC_MMAP_THRESHOLD_=256 MiB and MALLOC_TRIM_THRESHOLD_=4 GiB: glibc serves
           allocations up to 256 MiB from its heap and never hands freed memory back to the
           system, so fresh tensors reuse pages already mapped (the process keeps its peak size)

Columns per setting and variant: the median over rounds of the run's median step time; "÷ default",
the median over rounds of (this run's median ÷ the same round's default run's median) for the
same variant; "p/full", the median over rounds of the run's own p/full (train_step's median of
per-round ratios to full fine-tuning); "+frz/f" likewise of the run's +frz/f; minor page faults
per step; then every run's p/full, one per round.

`--settings default --rounds N` is the run-to-run spread of `benchmarks.train_step`'s ratios: N
fresh processes, one after another. On a shared machine a ratio moves more between processes
minutes apart than between the rounds of one run, so one run's p/full is one sample of it.
The last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "default": {},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
    "glibc": {"MALLOC_MMAP_THRESHOLD_": str(256 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)},
}
CONTROLLED = sorted({k for env in SETTINGS.values() for k in env})  # removed from every run's environment
ROOT = Path(__file__).resolve().parents[1]  # the folder holding benchmarks/


def environment(setting: str) -> dict:
    """The environment of a run under `setting`: ours, minus every controlled variable, plus its own."""
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(SETTINGS[setting])
    return env


def run_train_step(setting: str, step_args: list[str]) -> dict:
    """One `python -m benchmarks.train_step` process under `setting`; its JSON document."""
    cmd = [sys.executable, "-m", "benchmarks.train_step", *step_args]
    proc = subprocess.run(cmd, cwd=ROOT, env=environment(setting), capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(
            f"benchmarks.allocator: the run under setting {setting!r} ({' '.join(cmd)}) "
            f"exited with {proc.returncode} and no JSON line; its stderr ends:\n{tail}"
        )
    return json.loads(lines[-1])


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Per setting and variant: median ms over rounds, ÷ default paired by round, p/full, faults."""
    out = {}
    for setting, docs in runs.items():
        out[setting] = {}
        for variant in docs[0]["results"]:
            per_round = [d["results"][variant] for d in docs]
            base = [d["results"][variant] for d in runs["default"]] if "default" in runs else None
            out[setting][variant] = {
                "median_ms": statistics.median(r["median_ms"] for r in per_round),
                "ratio_to_default": (
                    statistics.median(r["median_ms"] / b["median_ms"] for r, b in zip(per_round, base))
                    if base
                    else None
                ),
                "time_ratio_paired_full": _median(per_round, "time_ratio_paired_full"),
                "over_frozen_paired_full": _median(per_round, "over_frozen_paired_full"),
                "rounds_p_full": [r.get("time_ratio_paired_full") for r in per_round],
                "minor_faults_per_step": _median(per_round, "minor_faults_per_step"),
                "rounds_ms": [r["median_ms"] for r in per_round],
            }
    return out


def _median(per_round: list[dict], key: str):
    """The median over rounds of a train_step result field, or None where a run lacks it (e.g. +frz/f
    without both full and frozen among the variants)."""
    values = [r.get(key) for r in per_round]
    return None if None in values else statistics.median(values)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--settings",
        default="default,thp,glibc",
        help="comma-separated settings (above); default is needed for '÷ default'",
    )
    ap.add_argument("--rounds", type=int, default=3, help="runs per setting, settings rotated every round")
    ap.add_argument("--variants", default="full,frozen,lora-fused", help="benchmarks.train_step variants")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per variant in each run")
    ap.add_argument(
        "--model-dir", default=None, help="checkpoint folder (default: the cached all-MiniLM-L6-v2)"
    )
    args = ap.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        ap.error(f"--settings: unknown {','.join(unknown)}; expected some of {','.join(SETTINGS)}")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, found {args.rounds}")
    return args, settings


def main(argv=None):
    args, settings = parse_args(argv)
    step_args = [
        "--variants",
        args.variants,
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
    ]
    if args.model_dir:
        step_args += ["--model-dir", str(args.model_dir)]
    runs = {s: [] for s in settings}
    for i in range(args.rounds):
        k = i % len(settings)
        for setting in settings[k:] + settings[:k]:  # rotated: none always first
            runs[setting].append(run_train_step(setting, step_args))
    res = summarize(runs)
    fmt = lambda v, f: "-" if v is None else format(v, f)
    print(
        f"{'setting':8} {'variant':12} {'median ms':>10} {'÷ default':>9} {'p/full':>7} {'+frz/f':>7} {'faults':>8}"
        "  p/full per round"
    )
    for setting, by_variant in res.items():
        for variant, r in by_variant.items():
            print(
                f"{setting:8} {variant:12} {r['median_ms']:10.1f} {fmt(r['ratio_to_default'], '.3f'):>9} "
                f"{fmt(r['time_ratio_paired_full'], '.3f'):>7} {fmt(r['over_frozen_paired_full'], '.3f'):>7} "
                f"{fmt(r['minor_faults_per_step'], '.0f'):>8}  "
                + " ".join(fmt(t, ".3f") for t in r["rounds_p_full"])
            )
    print(
        json.dumps(
            {
                "benchmark": "allocator",
                "config": vars(args),
                "settings": {s: SETTINGS[s] for s in settings},
                "results": res,
            }
        )
    )


if __name__ == "__main__":
    main()

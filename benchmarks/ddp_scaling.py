"""The same small `tasks.finetune` run under torchrun with 1 and 2 processes (CPU, gloo).

    python -m benchmarks.ddp_scaling [--repeats 3] [--train 96] [--epochs 1] [--max-length 64]

Every configuration is one `python -m torch.distributed.run --nproc_per_node=P -m tasks.finetune`
command (LoRA on all-MiniLM-L6-v2, rotten-tomatoes, a fixed subset, dropout 0, the same global
batch and seed), started round-robin in each repeat so that the configurations share the
machine's load alike. Configurations (processes × threads per process, OMP_NUM_THREADS):
  1x1   one process, one thread
  1xC   one process, C threads (C = --threads, default the machine's cores)
  2x1   two processes, one thread each (DistributedDataParallel, gloo on 127.0.0.1)
Reported per configuration: wall time of the whole command (start-up, data, training, evaluation,
writing) and `train_seconds` from its metrics.json (optimiser steps only), median and spread. A
warm-up run (not timed) fills the OS file cache first. The last stdout line is one JSON document.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import cli_args

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(procs: int, threads: int, out: Path, args) -> tuple[float, float]:
    """(wall seconds, train seconds) of one finetune command under torchrun."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        GLOO_SOCKET_IFNAME="lo",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={procs}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "tasks.finetune",
        "--task",
        args.task,
        "--method",
        "lora",
        "--dropout",
        "0",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--max-train-examples",
        str(args.train),
        "--max-eval-examples",
        str(args.eval),
        "--seed",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "metrics.json").read_text())["train_seconds"]


def spread(values: list[float]) -> dict:
    v = sorted(values)
    return {"median_s": statistics.median(v), "min_s": v[0], "max_s": v[-1]}


def main(argv=None) -> None:
    p = cli_args.parser("benchmarks.ddp_scaling", __doc__)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default 3)")
    p.add_argument("--task", default="rotten-tomatoes", help="task name (default rotten-tomatoes)")
    p.add_argument("--train", type=int, default=96, help="training examples (default 96)")
    p.add_argument("--eval", type=int, default=64, help="validation and test examples (default 64)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size (default 16)")
    p.add_argument("--max-length", type=int, default=64, help="tokens per example (default 64)")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of the 1xC configuration (default: the machine's cores)",
    )
    args = p.parse_args(argv)
    import torch  # for its version only; after parsing, so that --help answers at once

    configs = {"1x1": (1, 1), f"1x{args.threads}": (1, args.threads), "2x1": (2, 1)}
    walls = {k: [] for k in configs}
    trains = {k: [] for k in configs}
    tmp = Path(tempfile.mkdtemp(prefix="ddp-scaling-"))
    try:
        run_once(1, 1, tmp / "warmup", args)
        for r in range(args.repeats):
            for name, (procs, threads) in configs.items():
                wall, train = run_once(procs, threads, tmp / f"{name}-{r}", args)
                walls[name].append(wall)
                trains[name].append(train)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {
        k: {
            "processes": configs[k][0],
            "threads": configs[k][1],
            "wall": spread(walls[k]),
            "train": spread(trains[k]),
        }
        for k in configs
    }
    print(f"{'config':>7} | {'wall median (min-max) s':>24} | {'train median (min-max) s':>25}")
    for k, r in results.items():
        w, t = r["wall"], r["train"]
        print(
            f"{k:>7} | {w['median_s']:8.1f} ({w['min_s']:.1f}-{w['max_s']:.1f}) {'':>6}| "
            f"{t['median_s']:8.2f} ({t['min_s']:.2f}-{t['max_s']:.2f})"
        )
    print(
        json.dumps(
            {
                "benchmark": "ddp_scaling",
                "config": vars(args),
                "torch": torch.__version__,
                "device": "cpu",
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average": os.getloadavg(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()

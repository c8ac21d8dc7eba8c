"""Does the paper's batch 32 x 480 tokens fit in memory on a BERT-base-sized model through our trainer?

    python -m benchmarks.memory [--method lora,full] [--micro 8] [--accum 4] [--checkpointing on]
                                [--seq 480] [--layers 12] [--hidden 768] [--budget-gib 24] [--threads 1]

A random BERT-base (`models.config.BertConfig()` defaults: 12 layers, hidden 768, 12 heads,
intermediate 3072) with a 2-class `BertForSequenceClassification` head takes ONE optimiser step
through `minipeft.training.train.train` on micro x accum random examples of exactly --seq tokens
(TrainConfig(batch_size=micro, grad_accum=accum, grad_checkpointing=...)). Methods:
  lora  LoRA r=8, alpha=8, dropout 0.1 on query,value; the classifier trained (the paper's recipe)
  full  every parameter trained
Every configuration (method x checkpointing) runs in its own fresh Python process, because the peak
RSS is a per-process high-water mark: one configuration's peak must not hide inside another's.
Reported per configuration (numbers come from the training loop's `TrainResult.memory`):
  saved MiB   bytes autograd saved for backward in one micro-batch (exact, saved_tensors_hooks;
              parameters excluded), the activation memory that checkpointing reduces
  RSS GiB     the process's peak resident set size (model, gradients, AdamW moments, activations,
              the Python/torch runtime: everything the process held at its worst moment)
  CUDA GiB    torch.cuda.max_memory_allocated on CUDA machines (absent on CPU)
  seconds     wall time of train() (one step plus a 1-example evaluation), median over --repeats
The verdict compares each configuration's peak (CUDA peak on CUDA, else peak RSS) with --budget-gib.
Memory numbers are deterministic for a given configuration, so repeats only serve the timing; a
warm-up is not needed for a memory peak and is not run. The last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import cli_args

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("lora", "full")
GIB = 1024**3
MIB = 1024**2


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.parser("benchmarks.memory", __doc__)
    a = p.add_argument
    a(
        "--method",
        default="lora,full",
        help="comma-separated list of lora (r=8 on query,value + classifier) and full "
        "(every parameter); default lora,full",
    )
    a("--micro", type=int, default=8, help="examples per forward pass, TrainConfig.batch_size (default 8)")
    a(
        "--accum",
        type=int,
        default=4,
        help="micro-batches per optimiser step, TrainConfig.grad_accum; the effective batch is "
        "micro x accum (default 4: 8 x 4 = the paper's 32)",
    )
    a(
        "--checkpointing",
        choices=("on", "off", "both"),
        default="both",
        help="activation checkpointing (recompute each encoder layer in backward): on, off, or "
        "both as separate configurations (default both)",
    )
    seq_help = "tokens per example, all examples this long (default 480, the paper's max length)"
    a("--seq", type=int, default=480, help=seq_help)
    layers_help = "encoder layers (default 12 = BERT-base; shrink for a smoke test)"
    a("--layers", type=int, default=12, help=layers_help)
    a(
        "--hidden",
        type=int,
        default=768,
        help="hidden size, a multiple of 64; heads = hidden/64, intermediate = 4 x hidden "
        "(default 768 = BERT-base; shrink for a smoke test)",
    )
    a("--budget-gib", type=float, default=24.0, help="memory budget of the verdict in GiB (default 24)")
    repeats_help = "processes per configuration; seconds is their median (default 1: memory is deterministic)"
    a("--repeats", type=int, default=1, help=repeats_help)
    threads_help = "torch threads (and OMP_NUM_THREADS) in each measuring process (default 1)"
    a("--threads", type=int, default=1, help=threads_help)
    a(
        "--one",
        action="store_true",
        help="internal: measure one configuration in this process and print its JSON line "
        "(needs exactly one --method and --checkpointing on|off)",
    )
    return p


def parse_args(argv=None):
    """The arguments, checked: a usage error names the flag (exit 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.method.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        p.error(f"--method: expected a comma-separated list of {', '.join(METHODS)}, got {args.method!r}")
    for name in ("micro", "accum", "seq", "layers", "hidden", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.hidden % 64 and args.hidden > 64:
        p.error(f"--hidden must be a multiple of 64 (head size 64) or at most 64, got {args.hidden}")
    if args.one and (len(args.methods) != 1 or args.checkpointing == "both"):
        p.error("--one measures one configuration: give one --method and --checkpointing on or off")
    return args


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    parse_args()

import torch
import torch.nn.functional as F

from minipeft import LoraConfig, inject
from minipeft.training import TrainConfig, seed_everything, train
from models.bert import BertForSequenceClassification
from models.config import BertConfig


def model_config(layers: int, hidden: int, seq: int) -> BertConfig:
    """BERT-base by default; smaller `layers`/`hidden` keep the BERT-base proportions
    (heads = hidden / 64, intermediate = 4 x hidden)."""
    if hidden % 64 and hidden > 64:
        raise ValueError(f"--hidden must be a multiple of 64 (head size 64), got {hidden}")
    heads = max(1, hidden // 64)
    return BertConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq),
    )


def measure(
    method: str, micro: int, accum: int, checkpointing: bool, seq: int, layers: int, hidden: int
) -> dict:
    """One optimiser step of micro x accum random `seq`-token examples; the loop's memory numbers."""
    seed_everything(0)
    model = BertForSequenceClassification(model_config(layers, hidden, seq), num_labels=2)
    if method == "lora":
        inject(
            model,
            LoraConfig(
                r=8, alpha=8, dropout=0.1, targets=("query", "value"), modules_to_save=("classifier",)
            ),
        )
    elif method != "full":
        raise ValueError(f"--method must be one of {METHODS}, got {method!r}")
    g = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(1000, 30000, (seq,), generator=g).tolist(), "label": i % 2}
        for i in range(micro * accum)
    ]

    def loss_fn(m, b):
        return F.cross_entropy(m(b["input_ids"], b["attention_mask"]), b["label"])  # logits (batch, 2)

    def eval_fn(m, batches):
        return {"none": 0.0}

    cfg = TrainConfig(
        epochs=1,
        batch_size=micro,
        grad_accum=accum,
        grad_checkpointing=checkpointing,
        select_metric="none",
        progress=False,
        eval_batch_size=1,
        patience=None,
    )
    t0 = time.perf_counter()
    result = train(model, data, data[:1], loss_fn, eval_fn, cfg)
    seconds = time.perf_counter() - t0
    return {
        "method": method,
        "micro": micro,
        "accum": accum,
        "checkpointing": checkpointing,
        "seconds": seconds,
        "steps": result.steps,
        "trainable_params": result.trainable_params,
        "params": sum(p.numel() for p in model.parameters()),
        **result.memory,
    }


def run_isolated(method: str, checkpointing: bool, args) -> dict:
    """`measure` in a fresh `python -m benchmarks.memory --one ...` process; its JSON line."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--one",
        "--method",
        method,
        "--checkpointing",
        "on" if checkpointing else "off",
        "--micro",
        str(args.micro),
        "--accum",
        str(args.accum),
        "--seq",
        str(args.seq),
        "--layers",
        str(args.layers),
        "--hidden",
        str(args.hidden),
        "--threads",
        str(args.threads),
    ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:  # e.g. -9: killed by the kernel's out-of-memory killer
        print(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return {
            "method": method,
            "micro": args.micro,
            "accum": args.accum,
            "checkpointing": checkpointing,
            "seconds": None,
            "saved_bytes_max": None,
            "peak_rss_bytes": None,
            "cuda_peak_bytes": None,
            "error": f"exit {proc.returncode}",
        }
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"done: {json.dumps(row)}", file=sys.stderr)  # partial results survive an interrupted sweep
    return row


def peak_bytes(row: dict) -> int | None:
    """The number compared with the budget: CUDA peak on CUDA, else peak RSS."""
    return row.get("cuda_peak_bytes") or row.get("peak_rss_bytes")


def summarise(runs: list[dict]) -> dict:
    """Repeats of one configuration -> one row (memory: the largest seen; seconds: median, spread;
    "error" when any repeat's process failed)."""
    secs = sorted(r["seconds"] for r in runs if r["seconds"] is not None)
    row = dict(runs[0])
    for key in ("saved_bytes_max", "peak_rss_bytes", "cuda_peak_bytes"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        row[key] = max(vals) if vals else None
    errors = [r["error"] for r in runs if "error" in r]
    row.pop("error", None)
    if errors:
        row["error"] = errors[0]
    row.update(
        seconds=statistics.median(secs) if secs else None,
        seconds_min=secs[0] if secs else None,
        seconds_max=secs[-1] if secs else None,
        repeats=len(runs),
    )
    return row


def _gib(b):
    return "-" if b is None else f"{b / GIB:.2f}"


def print_table(rows: list[dict], budget_gib: float) -> None:
    head = (
        f"{'method':<7} {'micro x accum':>13} {'checkpointing':>13} {'saved MiB/micro':>15} "
        f"{'peak RSS GiB':>12} {'CUDA GiB':>8} {'seconds':>8}  verdict ({budget_gib:g} GiB)"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        saved = "-" if r["saved_bytes_max"] is None else f"{r['saved_bytes_max'] / MIB:.2f}"
        print(
            f"{r['method']:<7} {str(r['micro']) + ' x ' + str(r['accum']):>13} "
            f"{'on' if r['checkpointing'] else 'off':>13} {saved:>15} {_gib(r['peak_rss_bytes']):>12} "
            f"{_gib(r.get('cuda_peak_bytes')):>8} {secs:>8}  {r['verdict']}"
        )


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        row = measure(
            args.methods[0],
            args.micro,
            args.accum,
            args.checkpointing == "on",
            args.seq,
            args.layers,
            args.hidden,
        )
        print(json.dumps(row))
        return
    flags = {"on": [True], "off": [False], "both": [False, True]}[args.checkpointing]
    rows = []
    for method in args.methods:
        for ck in flags:
            row = summarise([run_isolated(method, ck, args) for _ in range(args.repeats)])
            peak = peak_bytes(row)
            row["fits_budget"] = None if peak is None else peak <= args.budget_gib * GIB
            row["verdict"] = {True: "fits", False: "does not fit", None: "unknown"}[row["fits_budget"]]
            if "error" in row:
                row["verdict"] = f"process failed ({row['error']})"
            rows.append(row)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"random BERT ({args.layers} layers, hidden {args.hidden}), {args.micro} x {args.accum} examples "
        f"of {args.seq} tokens per optimiser step, {args.threads} thread(s), device {device}"
    )
    print_table(rows, args.budget_gib)
    for r in rows:
        ckpt = "on" if r["checkpointing"] else "off"
        what = f"{r['method']} micro {r['micro']} x accum {r['accum']}, checkpointing {ckpt}"
        if r["fits_budget"] is None:
            print(f"verdict: {what}: no peak measured -> {r['verdict']}")
        else:
            print(
                f"verdict: {what}: peak {_gib(peak_bytes(r))} GiB {'<=' if r['fits_budget'] else '>'} "
                f"budget {args.budget_gib:g} GiB -> {r['verdict']}"
            )
    config = {k: v for k, v in vars(args).items() if k not in ("one", "method")}
    print(
        json.dumps(
            {
                "benchmark": "memory",
                "config": config,
                "torch": torch.__version__,
                "device": device,
                "cuda_device": torch.cuda.get_device_name(0) if device == "cuda" else None,
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    main()

"""`python -m benchmarks.internals`: what LoRA learned, measured against full fine-tuning.

Trains (or reuses from --out) LoRA adapters at two ranks and two seeds plus one full fine-tune,
then analyses the saved outputs with minipeft.analysis; or, with --adapters / --full-model,
analyses a user's own outputs without training. Writes report.md, internals.json and PNG figures
to --out; the last stdout line is a JSON summary. A killed run restarted with the same --out
skips the runs already saved (runs.csv, adapters/, full/).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import cli_args
from tasks.cli import ArgumentParser, run_or_exit

DEFAULTS = dict(
    task="rotten-tomatoes",
    ranks="8,64",
    seeds="12,34",
    alpha_policy="fixed",
    alpha=8.0,
    targets="query,value",
    epochs=1,
    lr=1e-3,
    full_lr=3e-5,
    dropout=0.1,
    batch_size=16,
    max_length=480,
    max_train_examples=4000,
    max_eval_examples=400,
    out="runs/internals",
)

DESCRIPTION = """\
What an adapter learned, measured (minipeft.analysis): for LoRA at two ranks and two seeds and one
full fine-tune of the same model on the same data,
  1. subspace similarity phi of the A matrices, r=8 vs r=64 and seed vs seed (Hu et al. 2021 §7.2),
  2. the amplification factor ||dW||_F / ||U^T W V||_F (Hu et al. 2021 §7.3),
  3. the singular-value spectrum of dW and its 90%-variance rank (Biderman et al. 2024),
  4. intruder dimensions of W0 + dW against W0 (Shuttleworth et al. 2024),
  5. ||dW||_F and ||dW||_F / ||W0||_F per layer and module; IA3 vector statistics.

Default (about 3 min on 2 idle CPU cores; the estimate is printed before anything trains): the
real all-MiniLM-L6-v2 checkpoint on rotten-tomatoes, LoRA on query,value at r=8 and r=64 with
alpha 8 and scaling alpha/r (Hu et al.'s own), seeds 12 and 34, plus one full fine-tune (seed 12,
lr 3e-5); every run 1 epoch over 4,000 training examples (lr 1e-3 for LoRA: one short epoch is the
whole budget), scored on 400 validation and 400 test examples.

Your own outputs, without training:
  python -m benchmarks.internals --adapters runs/a/adapter runs/b/adapter --full-model runs/f/model \\
      --model DIR --out runs/internals-mine
Adapters come from tasks.finetune (<out>/adapter) or benchmarks.rank_sweep --keep-adapters
(<out>/adapters/r8-s12, ...); the full model from tasks.finetune --method full (<out>/model).
"""


def build_parser() -> ArgumentParser:
    p = cli_args.parser("benchmarks.internals", DESCRIPTION, cls=ArgumentParser)
    a, d = p.add_argument, DEFAULTS
    a("--adapters", nargs="+", metavar="DIR", help="analyse these saved LoRA/IA3 adapters (no training)")
    a("--full-model", metavar="DIR", help="analyse this fully fine-tuned model folder (no training)")
    cli_args.add(
        p, d, "--model", model="base HuggingFace BERT folder (default: the fetched all-MiniLM-L6-v2)"
    )
    a("--task", default=d["task"], help="sequence-classification task to train on (default rotten-tomatoes)")
    cli_args.add(
        p,
        d,
        "--data-dir",
        "--ranks",
        "--seeds",
        "--alpha-policy",
        "--alpha",
        "--targets",
        "--epochs",
        ranks=f"LoRA ranks (default {d['ranks']}, as Hu et al.)",
        seeds=f"seeds, one LoRA run per rank and seed (default {d['seeds']})",
        alpha_policy="LoRA scaling: fixed alpha/r (default, Hu et al.'s), proportional (alpha=r), "
        "rslora alpha/sqrt(r)",
        alpha="LoRA alpha of the fixed and rslora policies (default 8)",
        targets="LoRA target modules (default query,value: W_q, W_v)",
    )
    a("--lr", type=float, default=d["lr"], help="LoRA learning rate (default 1e-3)")
    a(
        "--full-lr",
        type=float,
        default=d["full_lr"],
        help="full fine-tuning learning rate (default 3e-5, the paper's)",
    )
    a("--no-full", action="store_true", help="train no full fine-tune (the comparisons with it are skipped)")
    a("--dropout", type=float, default=d["dropout"], help="LoRA dropout (default 0.1)")
    cli_args.add(
        p,
        d,
        *cli_args.SIZE,
        "--data-seed",
        "--threads",
        max_eval_examples="validation and test subsets of this size (default 400; 0 = all)",
        threads="torch threads, or 'auto' (default): as benchmarks.rank_sweep --threads",
    )
    a("--layer", type=int, help="layer shown in the heatmaps and spectra (default: the middle layer)")
    a(
        "--top-k",
        type=int,
        default=10,
        help="singular vectors of W0 + dW checked for intruders (default 10, as Shuttleworth et al.)",
    )
    a(
        "--require-lora",
        action="store_true",
        help="fail if an adapter is not LoRA (default: IA3 adapters get the IA3 statistics and are "
        "left out of the LoRA-only analyses, subspace similarity and amplification)",
    )
    a("--no-figures", action="store_true", help="write no PNG figures (report.md and internals.json only)")
    cli_args.add(p, d, "--out", "--no-progress")
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

import torch

from benchmarks import internals_analyse, internals_figures, internals_load, internals_report, internals_train
from minipeft import files
from models.assets import MINILM, asset_dir


def check_args(args) -> None:
    if min(args.ranks) < 1 or args.epochs < 1 or args.batch_size < 1 or args.top_k < 1:
        raise ValueError("--ranks, --epochs, --batch-size and --top-k must be >= 1")
    if (
        args.full_model is None
        and args.adapters is None
        and args.no_full
        and len(args.ranks) * len(args.seeds) < 2
    ):
        raise ValueError("nothing to compare: give two --ranks or --seeds, or drop --no-full")


def check_lora_only(updates, require_lora: bool) -> None:
    """With --require-lora, an IA3 adapter is refused, naming its folder."""
    for u in updates:
        if require_lora and u.kind == "IA3":
            raise ValueError(
                f"{u.source}/adapter_config.json: peft_type IA3, but --require-lora asks for LoRA-only "
                "analyses (subspace similarity and amplification need LoRA's A and B); drop the IA3 "
                "adapter or --require-lora"
            )


def run(args) -> dict:
    started, cpu0 = time.perf_counter(), time.process_time()
    check_args(args)
    out = Path(args.out)
    model_dir = Path(args.model) if args.model else asset_dir(MINILM)
    trained = None
    if args.adapters or args.full_model:
        adapter_dirs, full_dir = [Path(d) for d in args.adapters or []], args.full_model
    else:
        trained = internals_train.train_all(args, out)
        adapter_dirs, full_dir = trained["adapters"], trained["full"]
    if args.threads == "auto":  # float64 SVDs of these sizes gain little from threads, lose much when shared
        torch.set_num_threads(1)
    elif trained is None:
        torch.set_num_threads(cli_args.positive_int(args.threads, "--threads"))
    print(
        f"analysing {len(adapter_dirs)} adapter(s){' and a full fine-tune' if full_dir else ''} ...",
        flush=True,
    )
    t0 = time.perf_counter()
    _, updates = internals_load.load_all(model_dir, adapter_dirs, full_dir)
    check_lora_only(updates, args.require_lora)
    if trained:
        for u in updates:
            u.metrics = trained["metrics"].get(str(u.source), {})
    doc = internals_analyse.analyse(updates, args.layer, args.top_k)
    doc["analysis_seconds"] = round(time.perf_counter() - t0, 1)
    doc["model"] = str(model_dir)
    doc["settings"] = trained["settings"] if trained else None
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    doc["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    out.mkdir(parents=True, exist_ok=True)
    figures = {} if args.no_figures else internals_figures.figures(doc, out)
    files.write_json(out / "internals.json", doc)
    files.write_text(out / "report.md", internals_report.markdown(doc, figures))
    print(internals_report.summary_text(doc), flush=True)
    return {
        "benchmark": "internals",
        "model": str(model_dir),
        "updates": [u["name"] for u in doc["updates"]],
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "wall_seconds": doc["wall_seconds"],
        "cpu_seconds": doc["cpu_seconds"],
        "headline": doc["headline"],
        "out": str(out),
    }


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    doc = run_or_exit(run, args)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()

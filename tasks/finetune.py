"""Fine-tune a BERT-compatible checkpoint on one task with LoRA, IA3, prefix or prompt tuning, full
fine-tuning or a frozen encoder.

    python -m tasks.finetune --task rotten-tomatoes --method lora --out runs/rt-lora
    python -m tasks.finetune --task mimic-mp --data-dir /data/mimic-mp --method lora --seed 12 --out runs/mp

Defaults follow the paper (Taylor et al. 2024, §1.5): 5 epochs, batch 32, lr 3e-4 for adapters and
3e-5 for full and frozen, max length 480, LoRA r=8 alpha=8 dropout 0.1 on query,value; the task head
always trains; the best epoch by validation macro-F1 (entity F1 for NER) is kept and scored on test.

Prefix and prompt tuning (`--method prefix|prompt`, `--num-virtual-tokens 10`) prepend virtual
tokens that take positions: --max-length plus --num-virtual-tokens must fit the checkpoint's
max_position_embeddings (the paper: 480 + 10 <= 512).

Writes into --out: the best adapter in adapter/ (PEFT layout with adapter_manifest.json, for every
adapter method; full and frozen: the model in HF layout in model/), metrics.json (validation and
test), task.json (labels, max length: what tasks.predict needs), and the training loop's log.jsonl
and result.json. Input problems are reported before training starts. A killed run restarted with
the same --out resumes from its last checkpoint.

--out must be new, empty, or a run folder of this program with the same settings (run.json says
so); any other folder is refused, so no file of yours is overwritten. The run is finished, and
its checkpoints deleted, only when the adapter, task.json and metrics.json are all on disk.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from models.assets import default_model_dir, sha256_file
from tasks.cli import ArgumentParser, comma_list, run_or_exit
from tasks.encode import ALIGNMENTS, check_vocab, encode_tagged, encode_texts
from tasks.methods import DEFAULT_LR, METHODS, PROMPT_METHODS, MethodSpec, build
from tasks.registry import SEQ_CLS, get_task, load_data, subsample, task_names


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m tasks.finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--task", required=True, help=f"task name: {', '.join(task_names())}")
    a(
        "--data-dir",
        help="folder with your files in the task's layout (the clinical tasks); embedded "
        "defaults read the asset cache unless given",
    )
    a("--text-column", default="text", help="--task csv: the column holding the text (default text)")
    a("--label-column", default="label", help="--task csv: the column holding the label (default label)")
    a("--id-column", help="--task csv: a column of row ids (default: split-row numbers)")
    a("--model", help="HuggingFace BERT folder (default: the cached all-MiniLM-L6-v2 checkpoint)")
    a(
        "--method",
        default="lora",
        choices=METHODS,
        help="frozen: head only; docs/methods.md",
    )
    a("--rank", type=int, help="default 8; vera 256")
    a("--alpha", type=float, default=8.0, help="scaling alpha/r (default 8)")
    a("--dropout", type=float, default=0.1, help="adapter dropout (default 0.1)")
    a(
        "--init",
        default="kaiming",
        choices=("kaiming", "gaussian", "pissa", "olora"),
        help="pissa/olora (lora): A, B from W's SVD/QR",
    )
    a("--loraplus-ratio", type=float, metavar="R", help="LoRA+: B's lr is R x --lr (paper: 16)")
    a(
        "--targets",
        type=comma_list,
        default=("preset",),
        help="comma-separated module names to adapt, or 'preset' (default: the paper's rule on the "
        "checkpoint; BERT lora query,value, ia3 key,value,output.dense; 'tiny'/'mobile' in the name: "
        "query,key,value) or 'preset:NAME' (bert, tiny, mobile, distilbert)",
    )
    a(
        "--feedforward",
        type=comma_list,
        default=(),
        help="IA3: comma-separated targets scaled on their input (default: the preset's, BERT output.dense)",
    )
    a(
        "--num-virtual-tokens",
        type=int,
        default=10,
        help="prefix/prompt: virtual tokens; they use positions, so max length + this "
        "<= max_position_embeddings (default 10, the paper's)",
    )
    a("--epochs", type=int, default=5, help="training epochs (default 5)")
    a("--batch-size", type=int, default=32, help="examples per forward pass (default 32)")
    a("--grad-accum", type=int, default=1, help="forward passes per optimiser step (default 1)")
    a(
        "--lr",
        type=float,
        help="peak learning rate (default 3e-4 for lora/ia3/prefix/prompt, 3e-5 for full/frozen)",
    )
    a("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    a("--warmup-ratio", type=float, default=0.06, help="linear warm-up share of the steps (default 0.06)")
    a("--max-length", type=int, default=480, help="tokens per example incl. [CLS]/[SEP] (default 480)")
    a("--patience", type=int, default=5, help="epochs without improvement before stopping (default 5)")
    a("--select-by", help="validation metric that picks the best epoch (default: f1_macro; NER entity_f1)")
    a(
        "--label-alignment",
        default="all",
        choices=ALIGNMENTS,
        help="NER: label every sub-token (all, as the paper; the default) or only each word's first (first)",
    )
    a("--max-train-examples", type=int, help="train on a random subset of this size (drawn with --seed)")
    a("--max-eval-examples", type=int, help="cap validation and test at this many examples (smoke runs)")
    a(
        "--checkpoint-every",
        type=int,
        default=0,
        help="optimiser steps between resumable checkpoints (default 0: at epoch ends only)",
    )
    a("--grad-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    a(
        "--compile",
        action="store_true",
        help="torch.compile, whole graph (GPUs; slower on a CPU: docs/cuda.md)",
    )
    a("--seed", type=int, default=0, help="seeds data order, head initialisation, dropout (paper: 12,34,56)")
    a("--device", default="auto", help="auto | cpu | cuda (default auto)")
    a("--no-progress", action="store_true", help="no progress bars")
    a("--out", required=True, help="output folder (reused with the same arguments: resume)")
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

import minipeft
from minipeft.prompt import prompt_counts
from minipeft.training import PadCollate, TrainConfig, distributed, evaluate, seed_everything, train
from models import load_pretrained, load_tokenizer
from tasks.finetune_checks import check_args, check_max_length, method_spec
from tasks.finetune_outputs import check_out, run_settings, write_outputs
from tasks.finetune_report import describe_adapted, log, ner_selection_warnings, summary
from tasks.metrics import json_safe
from tasks.objective import PAD_VALUES, make_token_cls_eval, seq_cls_eval, seq_cls_loss, token_cls_loss

# names that tests and other programs use as tasks.finetune.<name> (the parts live in the modules above)
__all__ = [
    "build_parser",
    "run",
    "main",
    "subsample",
    "check_max_length",
    "run_settings",
    "describe_adapted",
    "ner_selection_warnings",
]


def encode_split(task, tokenizer, examples, labels, args) -> list[dict]:
    if task.type == SEQ_CLS:
        return encode_texts(tokenizer, examples, args.max_length)
    encoded, word_ids = encode_tagged(tokenizer, examples, args.max_length, args.label_alignment)
    for enc, wids, ex in zip(encoded, word_ids, examples):
        enc["word_ids"], enc["word_tags"] = wids, list(ex.tags)
    return encoded


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def hyperparameters(args, spec: MethodSpec, lr: float) -> dict:
    keys = (
        "epochs",
        "batch_size",
        "grad_accum",
        "weight_decay",
        "warmup_ratio",
        "max_length",
        "patience",
        "label_alignment",
        "max_train_examples",
        "max_eval_examples",
        "seed",
        "loraplus_ratio",
    )
    return {**spec.describe(), "lr": lr, **{k: getattr(args, k, None) for k in keys}}


def load_inputs(args, task, model_dir: Path):
    """Data (checked), tokenizer and encoded splits: everything that can fail on user input."""
    columns = {
        "text_column": args.text_column,
        "label_column": args.label_column,
        "id_column": args.id_column,
    }
    data = load_data(task, args.data_dir, args.seed, **columns)
    for note in data.notes:
        log(note)
    tokenizer = load_tokenizer(model_dir)
    check_vocab(tokenizer, model_dir)
    splits = {
        "train": subsample(data.train, args.max_train_examples, args.seed),
        "validation": subsample(data.validation, args.max_eval_examples, args.seed),
        "test": subsample(data.test, args.max_eval_examples, args.seed),
    }
    encoded = {k: encode_split(task, tokenizer, v, data.labels, args) for k, v in splits.items()}
    log(
        f"{task.name}: {len(data.labels)} labels, "
        + ", ".join(f"{k} {len(v)}" for k, v in encoded.items())
        + f" examples (max length {args.max_length})"
    )
    return data, tokenizer, encoded


def train_config(args, task, lr: float) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        lr=lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        seed=args.seed,
        select_metric=args.select_by or task.select_by,
        patience=args.patience,
        grad_checkpointing=args.grad_checkpointing,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=True,  # deleted by write_outputs once every output is on disk
        progress=not args.no_progress,
        loraplus_ratio=args.loraplus_ratio,
        measure_memory=not args.compile,  # saved-tensor hooks would see the compiled graph's choice
    )


def run(args) -> dict:
    """Check the inputs, train, evaluate the best epoch, write metrics.json and the adapter/model."""
    started, t0 = now(), time.perf_counter()
    check_args(args)
    task = get_task(args.task)
    out = Path(args.out)
    main_rank = distributed.context().is_main
    if main_rank:
        check_out(out, args, claim=False)
    model_dir = Path(args.model) if args.model else default_model_dir()
    spec = method_spec(args, task, model_dir)
    preset, prompt = spec.preset, args.method in PROMPT_METHODS
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.method]
    data, tokenizer, encoded = load_inputs(args, task, model_dir)
    if main_rank:  # distributed hook: rank 0 alone writes
        check_out(out, args, claim=True)

    seed_everything(args.seed)
    model = load_pretrained(model_dir, head=task.head, labels=data.labels, seed=args.seed)
    model, adapted = build(model, spec)
    if args.compile:  # in place: the same module, parameters and state-dict keys
        model.compile(fullgraph=True)
    what = (
        f"{spec.num_virtual_tokens} virtual tokens, trainable {prompt_counts(model)}"
        if prompt
        else describe_adapted(args.method, adapted, spec.head)
    )
    log(f"method {args.method} (preset {preset.name}): {what}; {minipeft.summary(model)}")
    hp = hyperparameters(args, spec, lr)
    provenance = {
        "task": task.name,
        "labels": list(data.labels),
        "base_model": str(model_dir),
        "data_files": {str(f): sha256_file(f) for f in data.files},
        "seed": args.seed,
        "hyperparameters": hp,
        "started": started,
    }
    config = train_config(args, task, lr)
    is_seq = task.type == SEQ_CLS
    eval_fn = seq_cls_eval if is_seq else make_token_cls_eval(data.labels)
    collate = PadCollate(pad_id=tokenizer.pad_id, pad_values=PAD_VALUES)
    result = train(
        model,
        encoded["train"],
        encoded["validation"],
        seq_cls_loss if is_seq else token_cls_loss,
        eval_fn,
        config,
        out_dir=out,
        provenance=provenance,
        collate=collate,
        desc=f"{task.name}/{args.method}",
    )

    if task.type != SEQ_CLS:
        for warning in ner_selection_warnings(
            result.history, result.best_epoch, result.best_metric, config.select_metric
        ):
            log(f"WARNING: {warning}")
    metrics = {
        "test": json_safe(
            evaluate(
                model, encoded["test"], eval_fn, collate=collate, batch_size=args.batch_size * args.grad_accum
            )
        )
    }
    metrics["validation"] = (
        json_safe(result.best_metrics)
        if result.best_metrics
        else json_safe(
            evaluate(model, encoded["validation"], eval_fn, collate=collate, batch_size=args.batch_size)
        )
    )
    ended = now()
    doc = {
        "task": task.name,
        "primary_metric": task.primary,
        "select_by": config.select_metric,
        **metrics,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "samples_per_second": result.samples_per_second,
        "trainable_params": result.trainable_params,
        "memory": result.memory,
        "hyperparameters": hp,
        "started": started,
        "ended": ended,
    }
    provenance.update(metrics=metrics, ended=ended)
    if distributed.context().is_main:  # distributed hook: rank 0 alone writes
        write_outputs(model, args, out, model_dir, task, data.labels, doc, provenance)
    return doc


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    doc = run_or_exit(run, args)
    if not distributed.context().is_main:  # distributed hook: one summary line per job
        return
    print(json.dumps(summary(doc, args)))


if __name__ == "__main__":
    main()

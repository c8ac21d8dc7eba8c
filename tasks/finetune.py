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
import dataclasses
import json
import sys
import time
from pathlib import Path

from models.assets import default_model_dir, sha256_file
from tasks.cli import ArgumentParser, run_or_exit
from tasks.encode import ALIGNMENTS, check_vocab, encode_tagged, encode_texts
from tasks.methods import (
    ADAPTER_METHODS,
    DEFAULT_LR,
    LOW_RANK_METHODS,
    METHODS,
    PROMPT_METHODS,
    MethodSpec,
    build,
    resolve_preset,
)
from tasks.registry import SEQ_CLS, get_task, load_data, subsample, task_names


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


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
        type=_csv_list,
        default=("preset",),
        help="comma-separated module names to adapt, or 'preset' (default: the paper's rule on the "
        "checkpoint; BERT lora query,value, ia3 key,value,output.dense; 'tiny'/'mobile' in the name: "
        "query,key,value) or 'preset:NAME' (bert, tiny, mobile, distilbert)",
    )
    a(
        "--feedforward",
        type=_csv_list,
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
        help="torch.compile, whole graph (docs/cuda.md)",
    )
    a("--seed", type=int, default=0, help="seeds data order, head initialisation, dropout (paper: 12,34,56)")
    a("--device", default="auto", help="auto | cpu | cuda (default auto)")
    a("--no-progress", action="store_true", help="no progress bars")
    a("--out", required=True, help="output folder (reused with the same arguments: resume)")
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

from safetensors.torch import load_file

import minipeft
from minipeft import files
from minipeft.audit import MANIFEST_FILE, build_manifest
from minipeft.prompt import prompt_counts
from minipeft.prompt_io import CONFIG_FILE, WEIGHTS_FILE, save_prompt
from minipeft.training import PadCollate, TrainConfig, distributed, evaluate, seed_everything, train
from minipeft.training.checkpoint import clean_run_files
from models import load_pretrained, load_tokenizer, save_pretrained
from tasks.metrics import json_safe
from tasks.objective import PAD_VALUES, make_token_cls_eval, seq_cls_eval, seq_cls_loss, token_cls_loss


def encode_split(task, tokenizer, examples, labels, args) -> list[dict]:
    if task.type == SEQ_CLS:
        return encode_texts(tokenizer, examples, args.max_length)
    encoded, word_ids = encode_tagged(tokenizer, examples, args.max_length, args.label_alignment)
    for enc, wids, ex in zip(encoded, word_ids, examples):
        enc["word_ids"], enc["word_tags"] = wids, list(ex.tags)
    return encoded


def write_json(path: Path, doc: dict) -> None:
    files.write_json(path, doc, default=str)


RUN_MARKER = "run.json"
PROGRAM = "tasks.finetune"
# flags that may change between a killed run and its resumption (they change no result)
RESUME_FREE = ("out", "device", "no_progress", "checkpoint_every")


def run_settings(args) -> dict:
    """The settings run.json records; a resumption must repeat them."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in RESUME_FREE}


def check_out(out: Path, args, claim: bool) -> None:
    """--out must be new, empty, or this program's unfinished run with the same settings;
    claim=True writes run.json (after the inputs were checked), claim=False only checks."""
    doc = files.read_marker(out, RUN_MARKER) if out.is_dir() and not out.is_symlink() else None
    if doc and doc.get("finished"):
        raise FileExistsError(
            f"{out / RUN_MARKER}: that run is finished (its outputs and metrics.json are on disk); "
            "choose another --out"
        )
    files.claim_dir(out, program=PROGRAM, settings=run_settings(args), marker=RUN_MARKER, dry_run=not claim)


POSITIVE = ("epochs", "batch_size", "grad_accum", "patience", "rank", "num_virtual_tokens")


def check_args(args) -> None:
    """Numbers a run cannot use, named by their flag before anything loads."""
    for name in POSITIVE:
        v = getattr(args, name)
        if v is not None and v < 1:  # --rank None: the method's default (tasks.methods.DEFAULT_RANK)
            extra = " (0 would stop after the first epoch)" if name == "patience" else ""
            raise ValueError(f"--{name.replace('_', '-')} {v}: expected a whole number >= 1{extra}")
    for name in ("max_train_examples", "max_eval_examples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} {v}: expected >= 1 (or leave it out)")
    if args.lr is not None and not (args.lr > 0 and args.lr < float("inf")):
        raise ValueError(f"--lr {args.lr}: expected a finite number > 0, e.g. 3e-4")
    if not 0 <= args.warmup_ratio <= 1:
        raise ValueError(f"--warmup-ratio {args.warmup_ratio}: expected a share in [0, 1]")
    if not 0 <= args.weight_decay < float("inf"):
        raise ValueError(f"--weight-decay {args.weight_decay}: expected a finite number >= 0")


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


def save_prompt_adapter(wrapper, target: Path, model_dir: Path, provenance: dict) -> Path:
    """save_prompt's PEFT files plus the adapter_manifest.json that save_adapter writes for LoRA/IA3
    (tensor hashes, config hash, base fingerprint, provenance), built from the files as written."""
    save_prompt(wrapper, target, base_model_name_or_path=str(model_dir))
    config = json.loads((target / CONFIG_FILE).read_text())
    manifest = build_manifest(
        wrapper,
        config,
        load_file(str(target / WEIGHTS_FILE)),
        json.loads(json.dumps(provenance, default=str)),
    )
    write_json(target / MANIFEST_FILE, manifest)
    return target


def save_model(
    model, method: str, out: Path, model_dir: Path, task, labels, provenance: dict, task_doc
) -> Path:
    """The adapter (lora/ia3/prefix/prompt) or the whole model in HF layout (full/frozen), with
    task.json inside; the folder replaces an earlier one as a whole (minipeft.files.replace_dir)."""
    if method in ADAPTER_METHODS or method in PROMPT_METHODS:
        target = out / "adapter"
        with files.replace_dir(target, minipeft.io.ADAPTER_FILES, PROGRAM) as tmp:
            if method in PROMPT_METHODS:
                save_prompt_adapter(model, tmp, model_dir, provenance)
            else:
                kind = "SEQ_CLS" if task.type == SEQ_CLS else "TOKEN_CLS"
                minipeft.save_adapter(model, tmp, task_type=kind, provenance=provenance)
            write_json(tmp / "task.json", task_doc)
        return target
    target = out / "model"
    cfg = model.config
    if dataclasses.is_dataclass(cfg) and {"id2label", "label2id"} <= {
        f.name for f in dataclasses.fields(cfg)
    }:
        model.config = dataclasses.replace(
            cfg, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)}
        )
    save_pretrained(model, target, tokenizer_dir=model_dir)
    write_json(target / "task.json", task_doc)
    return target


def log(msg: str) -> None:
    print(f"[finetune] {msg}", file=sys.stderr, flush=True)


def describe_adapted(method: str, adapted: list[str], head: tuple[str, ...]) -> str:
    """'12 LoRA layers + head': the adapter layers counted apart from the trained head."""
    if method == "full":
        return "every parameter trains"
    if method == "frozen":
        return "the base frozen, the head trains"
    layers = [p for p in adapted if p not in head]
    name = {"lora": "LoRA", "ia3": "IA³"}.get(method, method)
    return f"{len(layers)} {name} layer{'s' if len(layers) != 1 else ''}" + (
        " + head" if len(layers) < len(adapted) else ""
    )


def ner_selection_warnings(history: list[dict], best_epoch, best_metric, metric: str) -> list[str]:
    """What a person must know when NER picked a suspicious epoch: the validation score is 0 (no
    entity found), or the first epoch won although later ones ran (rare entities often appear only
    after many epochs, and early stopping can end the run before they do)."""
    out = []
    if best_metric is not None and best_metric == 0:
        out.append(
            f"the best validation {metric} is 0: the model finds no entity. Rare entity types may need "
            "many more epochs: raise --epochs and --patience"
        )
    if len(history) > 1 and best_epoch == history[0]["epoch"]:
        out.append(
            f"the first epoch had the best validation {metric} of {len(history)} run, so the model "
            "returned is the one after one epoch: raise --patience (and --epochs), or check the data"
        )
    return out


def check_max_length(model_dir: Path, max_length: int, virtual_tokens: int = 0) -> None:
    """Refuse a length the position table cannot hold; prefix/prompt tokens take `virtual_tokens`
    positions."""
    cfg_file = model_dir / "config.json"
    limit = read_config(model_dir).get("max_position_embeddings") if cfg_file.is_file() else None
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = None  # load_pretrained names a bad value with its file
    if max_length < 3 or (limit and max_length > limit):
        raise ValueError(
            f"--max-length {max_length}: expected 3..{limit or 512} tokens "
            f"({cfg_file} has max_position_embeddings={limit})"
        )
    if limit and max_length + virtual_tokens > limit:
        raise ValueError(
            f"--max-length {max_length} + --num-virtual-tokens {virtual_tokens} = "
            f"{max_length + virtual_tokens} positions, but {cfg_file} has max_position_embeddings="
            f"{limit}; use --max-length {limit - virtual_tokens} or fewer (the paper: 480 + 10)"
        )


def read_config(model_dir: Path) -> dict:
    from models.hf_config import read_json_object

    return read_json_object(model_dir / "config.json")


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


def check_loraplus(method: str, ratio) -> None:
    if ratio is None:
        return
    if not ratio > 0:  # also refuses nan
        raise ValueError(
            f"--loraplus-ratio must be > 0 (B's learning rate is ratio x --lr; the paper uses 16), "
            f"found {ratio}; leave it out to train with one learning rate"
        )
    if method not in LOW_RANK_METHODS:
        raise ValueError(
            f"--loraplus-ratio applies to {', '.join(LOW_RANK_METHODS)} (a low-rank pair), not "
            f"--method {method}; drop --loraplus-ratio"
        )


def check_model_dir(model_dir: Path) -> None:
    """The checkpoint's folder and config.json, checked before any data is read."""
    from models.families import family_of

    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"--model {model_dir}: no such folder; expected a HuggingFace model folder (config.json, "
            "model.safetensors, tokenizer files)"
        )
    family_of(model_dir / "config.json").config.from_json(model_dir / "config.json")


def method_spec(args, task, model_dir: Path) -> MethodSpec:
    """The method's settings, checked (lengths, targets, adapter options) before any data is read."""
    prompt = args.method in PROMPT_METHODS
    check_model_dir(model_dir)
    check_max_length(model_dir, args.max_length, args.num_virtual_tokens if prompt else 0)
    preset, targets = resolve_preset(args.targets, model_dir)
    spec = MethodSpec(
        args.method,
        preset,
        args.rank,
        args.alpha,
        args.dropout,
        targets,
        args.feedforward,
        args.num_virtual_tokens,
        "SEQ_CLS" if task.type == SEQ_CLS else "TOKEN_CLS",
        args.init,
    )
    check_loraplus(args.method, args.loraplus_ratio)
    spec.adapter_config(), spec.prompt_config()  # invalid adapter settings fail here
    return spec


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


def write_outputs(model, args, out: Path, model_dir: Path, task, labels, doc: dict, provenance: dict) -> None:
    """The adapter/model folder (task.json inside), task.json, metrics.json; then the run is marked
    finished and only then are its checkpoints deleted: a kill at any point resumes or is done."""
    task_doc = {
        "task": task.name,
        "type": task.type,
        "labels": list(labels),
        "max_length": args.max_length,
        "label_alignment": args.label_alignment,
        "method": args.method,
        "base_model": str(model_dir),
    }
    save_model(model, args.method, out, model_dir, task, labels, provenance, task_doc)
    write_json(out / "task.json", task_doc)
    write_json(out / "metrics.json", doc)
    files.mark_finished(out, RUN_MARKER, ended=doc["ended"])
    clean_run_files(out)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    doc = run_or_exit(run, args)
    test = doc["test"]
    if not distributed.context().is_main:  # distributed hook: one summary line per job
        return
    print(
        json.dumps(
            {
                "task": doc["task"],
                "method": args.method,
                "best_epoch": doc["best_epoch"],
                "test": {
                    k: test.get(k) for k in ("accuracy", "roc_auc", "f1_macro", "entity_f1") if k in test
                },
                "train_seconds": round(doc["train_seconds"], 1),
                "out": str(args.out),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Classify a new CSV of notes with a trained adapter (or a fully fine-tuned model).

    python -m tasks.predict --adapter runs/mp/adapter --input new_notes.csv --output predictions.csv
    python -m tasks.predict --model runs/mp-full/model --input new_notes.csv --output predictions.csv

The adapter folder is what `tasks.finetune` wrote (PEFT layout plus task.json with the label names
and max length; LoRA/IA3, or prefix/prompt tuning when adapter_config.json's peft_type says so); its base model is --model, else the one recorded at training time, else the cached
default checkpoint. The output CSV has one row per note, in input order: `id`, `label` (the
predicted label name) and `prob_<label>` for every class. Notes are read as RFC 4180 CSV (quoted,
multi-line, long fields), batched by length, and the output is written atomically.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm


from minipeft.batching import LengthBucketSampler, PadCollate
from minipeft.files import write_text
from models import load_pretrained, load_tokenizer
from tasks.adapters import attach, load_base_for_adapter
from tasks.cli import run_or_exit
from tasks.data_csv import read_csv
from tasks.fetch import default_model_dir
from tasks.objective import model_inputs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", help="adapter folder written by tasks.finetune (lora/ia3/prefix/prompt)")
    p.add_argument("--model", help="with --adapter: the base model folder; alone: a fine-tuned model folder "
                                   "(tasks.finetune --method full|frozen writes it to OUT/model)")
    p.add_argument("--input", required=True, help="CSV of notes, with a header")
    p.add_argument("--output", required=True, help="CSV to write: id,label,prob_<label>...")
    p.add_argument("--text-column", default="text", help="column holding the note (default text)")
    p.add_argument("--id-column", default="id", help="column holding the note id (default id; when absent "
                                                     "the 0-based row number is used)")
    p.add_argument("--batch-size", type=int, default=32, help="notes per forward pass (default 32)")
    p.add_argument("--max-length", type=int, help="tokens per note (default: the training run's)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def read_task_info(folder: Path) -> dict:
    """task.json written by tasks.finetune, else the labels from config.json's id2label."""
    if (folder / "task.json").is_file():
        return json.loads((folder / "task.json").read_text())
    cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    id2label = cfg.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    return {"type": "seq-cls", "labels": labels}


def load_classifier(adapter: str | None, model: str | None):
    """(model in eval mode, tokenizer folder, task info) for an adapter on its base, or a full model."""
    if adapter is None and model is None:
        raise ValueError("pass --adapter DIR (with an optional --model BASE) or --model DIR of a fine-tuned model")
    folder = Path(adapter or model)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    info = read_task_info(folder)
    if info.get("type", "seq-cls") != "seq-cls":
        raise ValueError(f"{folder}: trained for {info.get('task')} ({info['type']}); tasks.predict classifies "
                         f"whole notes (sequence classification) only")
    labels = info.get("labels") or None
    if adapter is None:
        net = load_pretrained(folder, head="sequence-classification", num_labels=len(labels) if labels else None)
        base = folder
    else:
        base = Path(model or info.get("base_model") or default_model_dir())
        if not labels:
            raise ValueError(f"{folder}: no task.json with the label names; it is written by tasks.finetune")
        net = load_base_for_adapter(base, "sequence-classification", len(labels))
        net, _ = attach(net, folder)
    labels = labels or [str(i) for i in range(num_labels(net))]
    return net.eval(), base, {**info, "labels": list(labels)}


def num_labels(net) -> int:
    """Classes of a model, or of the model inside a prefix/prompt wrapper."""
    return net.num_labels if hasattr(net, "num_labels") else net.base_model.num_labels


@torch.no_grad()
def predict_probs(net, ids: list[list[int]], pad_id: int, batch_size: int, device: str,
                  progress: bool = True) -> torch.Tensor:
    """Softmax probabilities (n, labels) in input order; batches are length-sorted for speed."""
    net.to(device)
    collate = PadCollate(pad_id=pad_id)
    order = LengthBucketSampler([len(x) for x in ids], batch_size, shuffle=False).batches()
    out = torch.empty(len(ids), num_labels(net), dtype=torch.float64)             # (n, labels)
    for idx in tqdm(order, desc="predict", unit="batch", disable=not progress):
        batch = collate([{"input_ids": ids[i]} for i in idx])
        logits = net(**{k: v.to(device) for k, v in model_inputs(batch).items()})  # (batch, labels)
        out[idx] = torch.softmax(logits.float(), dim=-1).double().cpu()
    return out


def write_predictions(path: Path, ids: list[str], probs: torch.Tensor, labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["id", "label"] + [f"prob_{lab}" for lab in labels])
    for i, p in zip(ids, probs.tolist()):
        w.writerow([i, labels[max(range(len(p)), key=p.__getitem__)]] + [f"{x:.6f}" for x in p])
    write_text(path, buf.getvalue(), newline="")


def run(args) -> Path:
    rows = read_csv(Path(args.input), (args.text_column,))       # input errors before any model loads
    if not rows:
        raise ValueError(f"{args.input}: no notes below the header")
    net, base, info = load_classifier(args.adapter, args.model)
    tokenizer = load_tokenizer(base)
    max_length = args.max_length or info.get("max_length") or 512
    texts = [r[args.text_column] for _, r in rows]
    has_id = args.id_column in rows[0][1]
    ids = [r[args.id_column] if has_id else str(k) for k, (_, r) in enumerate(rows)]
    token_ids, _ = tokenizer.encode_lists(texts, max_length=max_length)
    probs = predict_probs(net, token_ids, tokenizer.pad_id, args.batch_size, args.device, not args.no_progress)
    out = Path(args.output)
    write_predictions(out, ids, probs, info["labels"])
    return out


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    out = run_or_exit(run, args)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

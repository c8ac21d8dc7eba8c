"""Predict with a trained adapter (or a fully fine-tuned model): whole notes or tagged words.

    python -m tasks.predict --adapter runs/mp/adapter --input new_notes.csv --output predictions.csv
    python -m tasks.predict --model runs/mp-full/model --input new_notes.csv --output predictions.csv
    python -m tasks.predict --adapter runs/ner/adapter --input notes.txt.conll --output tagged.conll

The adapter folder is what `tasks.finetune` wrote (PEFT layout plus task.json with the task type,
label names and max length; LoRA/IA3, or prefix/prompt tuning when adapter_config.json's peft_type
says so); its base model is --model, else the one recorded at training time, else the cached
default checkpoint.

Note classification (mortality, length of stay, ICD-9, relations): the input is RFC 4180 CSV
(quoted, multi-line, long fields); the output CSV has one row per note, in input order: `id`,
`label` (the predicted label name) and `prob_<label>` for every class.

Named entities (i2b2 tasks): the input is CoNLL, one token per line (a gold tag in the last column
is optional), a blank line between sentences. The output is CoNLL in the same order: `token
predicted-tag`, or `token gold-tag predicted-tag` when the input had tags (conlleval's layout), and
then the entity scores are printed. A word's tag is the prediction at its first sub-token; words
cut off by --max-length are tagged O and counted in a warning.

Inputs are checked before any model loads; outputs are written atomically, with LF line ends.
An existing --output is replaced only when it is an earlier output of this program (our CSV
header, or CoNLL lines ending in this model's tags), never the input; anything else is refused.
Empty or whitespace-only notes are predicted and counted in a warning.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from tasks.cli import ArgumentParser, run_or_exit
from tasks.data_conll import read_conll
from tasks.data_csv import read_csv
from tasks.encode import check_vocab, encode_tagged, word_predictions
from tasks.fetch import default_model_dir
from tasks.registry import HEADS, SEQ_CLS, TOKEN_CLS, TaggedExample


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m tasks.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--adapter", help="adapter folder written by tasks.finetune (lora/ia3/prefix/prompt)")
    p.add_argument(
        "--model",
        help="with --adapter: the base model folder; alone: a fine-tuned model folder "
        "(tasks.finetune --method full|frozen writes it to OUT/model)",
    )
    p.add_argument(
        "--input", required=True, help="CSV of notes with a header, or CoNLL tokens for an NER adapter"
    )
    p.add_argument(
        "--output", required=True, help="CSV to write (id,label,prob_<label>...), or CoNLL for NER"
    )
    p.add_argument("--text-column", default="text", help="column holding the note (default text)")
    p.add_argument(
        "--id-column",
        default="id",
        help="column holding the note id (default id; when absent the 0-based row number is used)",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="notes or sentences per forward pass (default 32)"
    )
    p.add_argument("--max-length", type=int, help="tokens per note (default: the training run's)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

import torch
from tqdm import tqdm

from minipeft.files import refuse_symlink, write_text
from minipeft.reading import read_json_object
from minipeft.training.batching import LengthBucketSampler, PadCollate
from models import load_pretrained, load_tokenizer
from tasks.adapters import attach, load_base_for_adapter
from tasks.metrics import ner_metrics
from tasks.objective import model_inputs


def read_object(file: Path) -> dict:
    """A JSON file of a run holding an object, or a ValueError naming it."""
    return read_json_object(file, "write it again with tasks.finetune")


def read_task_info(folder: Path) -> dict:
    """task.json written by tasks.finetune, else the labels from config.json's id2label."""
    if (folder / "task.json").is_file():
        info, file = read_object(folder / "task.json"), folder / "task.json"
    else:
        file = folder / "config.json"
        id2label = (read_object(file).get("id2label") if file.is_file() else None) or {}
        if not isinstance(id2label, dict) or not all(str(k).isdigit() for k in id2label):
            raise ValueError(f"{file}: id2label={id2label!r:.80}; expected {{'0': name, '1': name, ...}}")
        info = {"type": "seq-cls", "labels": [id2label[k] for k in sorted(id2label, key=int)]}
    labels, length = info.get("labels"), info.get("max_length")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"{file}: labels={labels!r:.80}; expected a list of label names")
    if labels is not None and len(set(labels)) != len(labels):
        raise ValueError(f"{file}: labels {labels!r:.80} repeat a name; expected each label once")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 3):
        raise ValueError(f"{file}: max_length={length!r}; expected a whole number >= 3")
    return info


def task_info(adapter: str | None, model: str | None) -> tuple[Path, dict]:
    """(the adapter or model folder, its task info), checked before anything heavy loads."""
    if adapter is None and model is None:
        raise ValueError(
            "pass --adapter DIR (with an optional --model BASE) or --model DIR of a fine-tuned model"
        )
    folder = Path(adapter or model)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    info = read_task_info(folder)
    kind = info.get("type", SEQ_CLS)
    if not isinstance(kind, str) or kind not in HEADS:
        raise ValueError(f"{folder}/task.json: type {kind!r}; expected one of {', '.join(HEADS)}")
    if kind == TOKEN_CLS and not info.get("labels"):
        raise ValueError(f"{folder}: no task.json with the tag names; it is written by tasks.finetune")
    return folder, {**info, "type": kind}


def load_classifier(adapter: str | None, model: str | None, found: tuple[Path, dict]):
    """(model in eval mode, tokenizer folder, task info) for an adapter on its base, or a full model,
    with the head the task was trained with (sequence or token classification); `found` is
    task_info(adapter, model)."""
    folder, info = found
    head = HEADS[info["type"]]
    labels = info.get("labels") or None
    if adapter is None:
        net = load_pretrained(folder, head=head, num_labels=len(labels) if labels else None)
        base = folder
    else:
        base = Path(model or info.get("base_model") or default_model_dir())
        if not labels:
            raise ValueError(f"{folder}: no task.json with the label names; it is written by tasks.finetune")
        net = load_base_for_adapter(base, head, len(labels))
        net, _ = attach(net, folder)
    labels = labels or [str(i) for i in range(num_labels(net))]
    return net.eval(), base, {**info, "labels": list(labels)}


def num_labels(net) -> int:
    """Classes of a model, or of the model inside a prefix/prompt wrapper."""
    return net.num_labels if hasattr(net, "num_labels") else net.base_model.num_labels


@torch.no_grad()
def predict_probs(
    net, ids: list[list[int]], pad_id: int, batch_size: int, device: str, progress: bool = True
) -> torch.Tensor:
    """Softmax probabilities (n, labels) in input order; batches are length-sorted for speed."""
    net.to(device)
    collate = PadCollate(pad_id=pad_id)
    order = LengthBucketSampler([len(x) for x in ids], batch_size, shuffle=False).batches()
    out = torch.empty(len(ids), num_labels(net), dtype=torch.float64)  # (n, labels)
    for idx in tqdm(order, desc="predict", unit="batch", disable=not progress):
        batch = collate([{"input_ids": ids[i]} for i in idx])
        logits = net(**{k: v.to(device) for k, v in model_inputs(batch).items()})  # (batch, labels)
        out[idx] = torch.softmax(logits.float(), dim=-1).double().cpu()
    return out


def write_predictions(path: Path, ids: list[str], probs: torch.Tensor, labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label"] + [f"prob_{lab}" for lab in labels])
    for i, p in zip(ids, probs.tolist()):
        w.writerow([i, labels[max(range(len(p)), key=p.__getitem__)]] + [f"{x:.6f}" for x in p])
    write_text(path, buf.getvalue(), newline="")


@torch.no_grad()
def predict_tags(
    net,
    tokenizer,
    sentences: list[list[str]],
    labels: list[str],
    max_length: int,
    batch_size: int,
    device: str,
    progress: bool = True,
) -> tuple[list[list[str]], int]:
    """(predicted tag names per word for every sentence, in input order; words cut off by
    `max_length`, tagged O): the tag at each word's first sub-token, as training evaluated it."""
    examples = [TaggedExample(str(i), tuple(ws), (0,) * len(ws)) for i, ws in enumerate(sentences)]
    encoded, word_ids = encode_tagged(tokenizer, examples, max_length)
    net.to(device)
    collate = PadCollate(pad_id=tokenizer.pad_id)
    outside = labels.index("O") if "O" in labels else 0
    order = LengthBucketSampler([len(e["input_ids"]) for e in encoded], batch_size, shuffle=False).batches()
    tags: list[list[str]] = [[] for _ in sentences]
    for idx in tqdm(order, desc="tag", unit="batch", disable=not progress):
        batch = collate([{k: encoded[i][k] for k in ("input_ids", "token_type_ids")} for i in idx])
        best = net(**{k: v.to(device) for k, v in model_inputs(batch).items()}).argmax(-1).cpu().tolist()
        for i, toks in zip(idx, best):  # (seq,) per sentence
            words = word_predictions(toks, word_ids[i], len(sentences[i]), outside)
            tags[i] = [labels[t] for t in words]
    # words after the last one that kept a sub-token were cut by max_length (a word that the
    # tokenizer turns into nothing, mid-sentence, is tagged O too but is not counted as cut)
    cut = sum(len(ws) - 1 - max(wids, default=-1) for ws, wids in zip(sentences, word_ids))
    return tags, cut


def write_conll(path: Path, sentences: list[list[str]], pred: list[list[str]], gold=None) -> None:
    """One `token [gold] predicted` line per word, a blank line between sentences."""
    blocks = []
    for k, (words, tags) in enumerate(zip(sentences, pred)):
        cols = zip(words, gold[k], tags) if gold is not None else zip(words, tags)
        blocks.append("\n".join(" ".join(c) for c in cols))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n\n".join(blocks) + "\n")


def looks_like_ours(path: Path, labels: list[str], conll: bool) -> bool:
    """An earlier output of this program: our CSV header, or CoNLL lines of 2-3 fields ending in
    one of `labels`. Anything else at --output is the user's and is not replaced."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return False
    if not conll:
        head = text.split("\n", 1)[0].split(",")
        return head[:2] == ["id", "label"] and all(h.startswith("prob_") for h in head[2:])
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    return bool(lines) and all(2 <= len(f) <= 3 and f[-1] in labels for f in lines)


def check_output(args, labels: list[str], conll: bool) -> Path:
    """--output may be new or an earlier output of ours; never the input, a folder or a link."""
    out, src = Path(args.output), Path(args.input)
    refuse_symlink(out, "--output")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ValueError(f"--output {out} is the --input file; choose another path for the predictions")
    if out.is_dir():
        raise IsADirectoryError(21, "--output is a folder; give a file path", str(out))
    if out.exists() and not looks_like_ours(out, labels, conll):
        raise ValueError(
            f"--output {out}: the file exists and is not an earlier output of tasks.predict; refusing to "
            "replace it. Choose another path, or delete the file first"
        )
    return out


def run_tagging(args, found: tuple[Path, dict]) -> Path:
    check_output(args, found[1]["labels"], conll=True)
    rows = read_conll(Path(args.input), tags_optional=True)  # input errors before any model loads
    if not rows:
        raise ValueError(
            f"{args.input}: no sentences; expected CoNLL, one token per line, a blank line between sentences"
        )
    sentences = [words for _, words, _ in rows]
    tagged = [all(t is not None for t in tags) for _, _, tags in rows]
    if any(tagged) and not all(tagged):
        line = rows[tagged.index(False) if tagged[0] else tagged.index(True)][0]
        raise ValueError(
            f"{args.input}: sentence at line {line}: some lines carry a gold tag and some do not; "
            f"expected a tag on every line or on none"
        )
    net, base, info = load_classifier(args.adapter, args.model, found)
    tokenizer = load_tokenizer(base)
    check_vocab(tokenizer, base)
    max_length = args.max_length or info.get("max_length") or 512
    pred, cut = predict_tags(
        net,
        tokenizer,
        sentences,
        info["labels"],
        max_length,
        args.batch_size,
        args.device,
        not args.no_progress,
    )
    gold = [tags for _, _, tags in rows] if all(tagged) else None
    out = Path(args.output)
    write_conll(out, sentences, pred, gold)
    if cut:
        print(
            f"warning: {cut} word(s) beyond --max-length {max_length} tokens were tagged O", file=sys.stderr
        )
    if gold is not None:
        print(
            "entity scores: " + json.dumps({k: round(v, 4) for k, v in ner_metrics(gold, pred).items()}),
            file=sys.stderr,
        )
    return out


def check_args(args) -> None:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: expected a whole number >= 1")
    if args.max_length is not None and args.max_length < 3:
        raise ValueError(f"--max-length {args.max_length}: expected >= 3 ([CLS], a token, [SEP])")


def run(args) -> Path:
    check_args(args)
    found = task_info(args.adapter, args.model)
    if found[1]["type"] == TOKEN_CLS:
        return run_tagging(args, found)
    try:  # input errors before any model loads
        rows = read_csv(Path(args.input), (args.text_column,))
    except KeyError as e:
        raise KeyError(
            f"{e.args[0]}; pass --text-column NAME to read the notes from another column"
        ) from None
    if not rows:
        raise ValueError(f"{args.input}: no notes below the header")
    check_output(args, [], conll=False)
    empty = [line for line, r in rows if not r[args.text_column].strip()]
    if empty:
        print(
            f"warning: {args.input}: {len(empty)} empty or whitespace-only note(s) (line "
            f"{', '.join(map(str, empty[:5]))}{' ...' if len(empty) > 5 else ''}); their predictions "
            "reflect no text, only the model's prior",
            file=sys.stderr,
        )
    net, base, info = load_classifier(args.adapter, args.model, found)
    tokenizer = load_tokenizer(base)
    check_vocab(tokenizer, base)
    max_length = args.max_length or info.get("max_length") or 512
    texts = [r[args.text_column] for _, r in rows]
    has_id = args.id_column in rows[0][1]
    ids = [r[args.id_column] if has_id else str(k) for k, (_, r) in enumerate(rows)]
    token_ids, _ = tokenizer.encode_lists(texts, max_length=max_length)
    probs = predict_probs(
        net, token_ids, tokenizer.pad_id, args.batch_size, args.device, not args.no_progress
    )
    out = Path(args.output)
    write_predictions(out, ids, probs, info["labels"])
    return out


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    out = run_or_exit(run, args)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""What tasks.finetune tells a person: progress notes on stderr, the adapted layers in one phrase,
warnings about a suspicious best epoch in NER, and the one-line JSON summary on stdout."""

from __future__ import annotations

import sys

SUMMARY_METRICS = ("accuracy", "roc_auc", "f1_macro", "entity_f1")


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


def summary(doc: dict, args) -> dict:
    """The line main() prints: the task, method, best epoch, headline test metrics, time and --out."""
    test = doc["test"]
    return {
        "task": doc["task"],
        "method": args.method,
        "best_epoch": doc["best_epoch"],
        "test": {k: test.get(k) for k in SUMMARY_METRICS if k in test},
        "train_seconds": round(doc["train_seconds"], 1),
        "out": str(args.out),
    }

"""The paper's metrics: classification scores from scikit-learn, entity-level F1 for BIO tags by hand.

Classification (`compute_seq_cls_metrics` in the paper's code): softmax probabilities in; AUROC on
the positive-class probability for two classes, one-vs-rest macro AUROC for more; F1 macro, micro
and weighted; precision and recall macro; accuracy.

NER: entities are chunks of BIO tags. The default chunking is conlleval's (seqeval's default): an
`I-X` that does not continue an `X` chunk starts a new one, and a chunk ends where the type changes.
Strict mode (seqeval `mode="strict"`, IOB2) keeps only chunks that open with `B-X` and continue
with `I-X`; a stray `I-X` is no entity. A predicted entity counts when type, start and end all
match a gold entity; precision, recall and F1 are micro-averaged over entities.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score


def roc_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUROC of the class-1 probability. Multiclass: one-vs-rest macro over the classes
    present in `y` (all of them in any real split); NaN when `y` holds a single class."""
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    if len(present) == probs.shape[1]:
        return float(
            roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1])))
        )
    return float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in present]))


def classification_metrics(y_true, probs) -> dict[str, float]:
    """All sequence-classification metrics from gold label indices (n,) and probabilities (n, C)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)  # (n, classes)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probabilities of shape {p.shape} do not match {len(y)} labels")
    pred = p.argmax(axis=1)
    labels = list(range(p.shape[1]))
    kw = dict(labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": roc_auc(y, p),
        "f1_macro": float(f1_score(y, pred, average="macro", **kw)),
        "f1_micro": float(f1_score(y, pred, average="micro", **kw)),
        "f1_weighted": float(f1_score(y, pred, average="weighted", **kw)),
        "precision_macro": float(precision_score(y, pred, average="macro", **kw)),
        "recall_macro": float(recall_score(y, pred, average="macro", **kw)),
    }


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O" or "-" not in tag:
        return "O", ""
    prefix, kind = tag.split("-", 1)
    return prefix, kind


def chunks(tags: list[str], strict: bool = False) -> set[tuple[str, int, int]]:
    """Entities of one BIO sequence as (type, first index, last index), both inclusive."""
    found, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):  # the sentinel closes an open chunk
        prefix, t = _split_tag(tag)
        continues = kind is not None and prefix == "I" and t == kind
        if kind is not None and not continues:
            found.add((kind, start, i - 1))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None and not strict):
            kind, start = t, i
    return found


def entity_scores(gold: list[list[str]], pred: list[list[str]], strict: bool = False) -> dict[str, float]:
    """Micro precision, recall and F1 over entities of all sentences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    n_gold = n_pred = n_hit = 0
    for s, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: {len(g)} gold tags but {len(p)} predicted")
        cg, cp = chunks(g, strict), chunks(p, strict)
        n_gold, n_pred, n_hit = n_gold + len(cg), n_pred + len(cp), n_hit + len(cg & cp)
    precision = n_hit / n_pred if n_pred else 0.0
    recall = n_hit / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity F1 (conlleval chunking and strict), entity precision/recall, token accuracy."""
    default = entity_scores(gold, pred, strict=False)
    strict = entity_scores(gold, pred, strict=True)
    tokens = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return {
        "entity_f1": default["f1"],
        "entity_precision": default["precision"],
        "entity_recall": default["recall"],
        "entity_f1_strict": strict["f1"],
        "token_accuracy": right / tokens if tokens else 0.0,
    }


def json_safe(metrics: dict) -> dict:
    """NaN and infinities become None, so metrics.json is strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}

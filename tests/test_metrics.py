"""Metrics against formulas written here: pairwise AUROC, counted F1, hand-chunked BIO entities."""

import math

import numpy as np
import pytest

from tasks.metrics import chunks, classification_metrics, entity_scores, json_safe, ner_metrics


def pairwise_auc(y_pos, score):
    """P(score of a positive > score of a negative), ties count 1/2 (the Mann-Whitney statistic)."""
    pos = [s for s, y in zip(score, y_pos) if y]
    neg = [s for s, y in zip(score, y_pos) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_binary_metrics_against_formulas():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = softmax(rng.normal(size=(40, 2)) + 1.5 * np.eye(2)[y])
    m = classification_metrics(y, p)
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["roc_auc"] == pytest.approx(pairwise_auc(y == 1, p[:, 1]))
    f1 = []
    for c in (0, 1):
        tp = ((pred == c) & (y == c)).sum()
        prec, rec = tp / (pred == c).sum(), tp / (y == c).sum()
        f1.append(2 * prec * rec / (prec + rec))
    assert m["f1_macro"] == pytest.approx(np.mean(f1))
    assert m["f1_weighted"] == pytest.approx(np.average(f1, weights=[(y == 0).sum(), (y == 1).sum()]))
    assert m["f1_micro"] == pytest.approx(m["accuracy"])  # single-label: micro F1 = accuracy


def test_multiclass_auroc_is_one_vs_rest_macro():
    rng = np.random.default_rng(1)
    y = np.arange(30) % 3
    p = softmax(rng.normal(size=(30, 3)) + np.eye(3)[y])
    expected = np.mean([pairwise_auc(y == c, p[:, c]) for c in range(3)])
    assert classification_metrics(y, p)["roc_auc"] == pytest.approx(expected)


def test_auroc_over_present_classes_and_nan_for_one_class():
    p = softmax(np.random.default_rng(2).normal(size=(6, 3)))
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 absent from this split
    expected = np.mean([pairwise_auc(y == c, p[:, c]) for c in (0, 1)])
    assert classification_metrics(y, p)["roc_auc"] == pytest.approx(expected)
    m = classification_metrics(np.zeros(4, int), softmax(np.ones((4, 2))))
    assert math.isnan(m["roc_auc"]) and json_safe(m)["roc_auc"] is None


def test_chunks_conlleval_default_by_hand():
    assert chunks(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert chunks(["I-PER", "I-PER", "O"]) == {("PER", 0, 1)}  # I after O opens a chunk
    assert chunks(["B-PER", "I-LOC", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}  # type change
    assert chunks(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert chunks(["O", "I-MISC"]) == {("MISC", 1, 1)}  # open chunk closed at end


def test_chunks_strict_by_hand():
    assert chunks(["I-PER", "I-PER", "O"], strict=True) == set()
    assert chunks(["B-PER", "I-LOC", "I-LOC"], strict=True) == {("PER", 0, 0)}
    assert chunks(["B-PER", "I-PER", "O", "B-LOC"], strict=True) == {("PER", 0, 1), ("LOC", 3, 3)}


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"], ["B-LOC", "O"]]
    # default: predicted PER(0,1) LOC(3,3) | LOC(0,0); gold PER LOC | ORG -> 2 hits of 3 and 3
    d = entity_scores(gold, pred)
    assert (d["precision"], d["recall"]) == (2 / 3, 2 / 3) and d["f1"] == pytest.approx(2 / 3)
    # strict: the stray I-LOC is no entity -> predicted PER | LOC, 1 hit; P = 1/2, R = 1/3
    s = entity_scores(gold, pred, strict=True)
    assert (s["precision"], s["recall"]) == (1 / 2, 1 / 3) and s["f1"] == pytest.approx(
        2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)
    )
    m = ner_metrics(gold, pred)
    assert m["token_accuracy"] == 4 / 6 and m["entity_f1_strict"] == s["f1"]


def test_boundary_error_is_a_miss():
    d = entity_scores([["B-X", "I-X", "I-X"]], [["B-X", "I-X", "O"]])
    assert (d["precision"], d["recall"], d["f1"]) == (0.0, 0.0, 0.0)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])


def test_matches_seqeval_when_installed():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(3)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    gold = [[tags[i] for i in rng.integers(0, 5, 12)] for _ in range(30)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(0, 5)] for t in g] for g in gold]
    assert entity_scores(gold, pred)["f1"] == pytest.approx(seqeval.f1_score(gold, pred))
    from seqeval.scheme import IOB2

    strict = entity_scores(gold, pred, strict=True)
    assert strict["f1"] == pytest.approx(seqeval.f1_score(gold, pred, mode="strict", scheme=IOB2))
    assert strict["precision"] == pytest.approx(
        seqeval.precision_score(gold, pred, mode="strict", scheme=IOB2)
    )

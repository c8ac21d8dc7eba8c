"""The embedded default data sets: counts recomputed from the raw files here, disjoint fixed splits."""

import bz2
import csv
import html
import io
import zipfile

import pytest

from models.assets import DRUG_REVIEWS, ROTTEN_TOMATOES, asset_dir
from tasks import defaults
from tasks.registry import get_task, load_data


def _cached(asset):
    try:
        return asset_dir(asset)
    except FileNotFoundError as e:
        pytest.skip(f"embedded data set not fetched: {e}")


def _texts(data, split):
    return [e.text for e in data.split(split)]


def test_rotten_tomatoes_counts_and_splits():
    folder = _cached(ROTTEN_TOMATOES)
    with bz2.open(folder / defaults.RT_FILE, "rt", encoding="utf-8", newline="") as f:
        raw = [r for r in csv.DictReader(f) if r["category"] != "plot"]
    unique = {r["text"].strip(): r["category"] for r in raw}
    data = load_data(get_task("rotten-tomatoes"), None, seed=0)
    parts = [_texts(data, s) for s in ("train", "validation", "test")]
    assert sum(map(len, parts)) == len(unique)  # duplicates removed, plots dropped
    assert set().union(*map(set, parts)) == set(unique)
    assert not (
        set(parts[0]) & set(parts[2]) or set(parts[1]) & set(parts[2]) or set(parts[0]) & set(parts[1])
    )
    for e in data.test[:50]:
        assert data.labels[e.label] == unique[e.text]
    fresh = sum(v == "fresh" for v in unique.values()) / len(unique)
    assert sum(e.label for e in data.test) / len(data.test) == pytest.approx(fresh, abs=1e-3)  # stratified
    assert len(data.test) == pytest.approx(0.2 * len(unique), abs=2)
    assert _texts(load_data(get_task("rotten-tomatoes"), None, seed=34), "test") == parts[2]  # fixed split


def test_drug_reviews_unescaped_and_shipped_test_kept():
    folder = _cached(DRUG_REVIEWS)
    with zipfile.ZipFile(folder / defaults.DRUG_FILE) as zf:
        raw_test = list(
            csv.DictReader(io.StringIO(zf.read("drugsComTest.tsv").decode(), newline=""), delimiter="\t")
        )
    data = load_data(get_task("drug-reviews"), None, seed=0)
    assert len(data.test) == len(raw_test)  # the shipped test split, whole
    for r, e in zip(raw_test, data.test):
        assert e.text == html.unescape(r["review"]).strip().strip('"').strip()
        assert data.labels[e.label] == r["rating"]
    everything = [t for s in ("train", "validation", "test") for t in _texts(data, s)]
    assert len(everything) == len(set(everything))  # no duplicates, no leakage
    assert not any("&#039;" in t or t.startswith('"') for t in everything)
    assert len(data.validation) == pytest.approx(0.15 * (len(data.train) + len(data.validation)), abs=2)


def test_condition_labels_derivation_matches_pinned_set():
    _cached(DRUG_REVIEWS)
    assert defaults.condition_labels() == defaults.CONDITION_LABELS
    data = load_data(get_task("drug-reviews-condition"), None, seed=0)
    assert {e.label for e in data.train} == set(range(len(defaults.CONDITION_LABELS)))


def test_stratified_split_proportions():
    rows = [(str(i), f"t{i}", "a" if i < 70 else "b") for i in range(100)]
    parts = defaults.stratified_split(rows, lambda r: r[2], (0.7, 0.1, 0.2), seed=1)
    assert [len(p) for p in parts] == [70, 10, 20]
    assert [sum(r[2] == "a" for r in p) for p in parts] == [49, 7, 14]
    assert sorted(r[0] for p in parts for r in p) == sorted(r[0] for r in rows)


def test_dedupe_drops_conflicts_and_repeats():
    rows = [("1", "x", "a"), ("2", "x", "a"), ("3", "y", "a"), ("4", "y", "b"), ("5", "z", "b")]
    kept, dups, conflicts = defaults.dedupe(rows)
    assert kept == [("1", "x", "a"), ("5", "z", "b")] and (dups, conflicts) == (3, 1)

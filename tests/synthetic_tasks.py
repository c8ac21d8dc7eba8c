"""Small synthetic files in the paper's layouts, written the way the real pipelines write them.

MIMIC files are `csv.QUOTE_ALL` with admission-section notes that span many lines and hold commas,
doubled quotes and (optionally) one field longer than the csv module's default 128 KiB limit, so the
real readers are exercised. Labels follow a keyword in the note, so a model can learn them.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

WORDS = ("fever", "cough", "pain", "nausea", "stable", "sepsis", "fracture", "chest", "renal", "liver")
SPLIT_SIZES = {"train": 24, "valid": 8, "test": 8}


def note(rng: random.Random, label: int, long: bool = False) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20)))
    text = (
        f'CHIEF COMPLAINT: "{WORDS[label % len(WORDS)]}", marker{label}\n\n'
        f"PRESENT ILLNESS: {body},\nwith a second line\r\nand a third\n\n"
        f"MEDICAL HISTORY: marker{label} noted"
    )
    return text + (" padding" * 20_000 if long else "")


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(header)
        w.writerows(rows)


def write_mimic(folder: Path, task: str = "mp", original_names: bool = False, seed: int = 0) -> Path:
    """mimic-mp (id,text,hospital_expire_flag) or mimic-los (id,text,los_label) in `folder`."""
    rng = random.Random(seed)
    column, n_classes = ("hospital_expire_flag", 2) if task == "mp" else ("los_label", 4)
    prefix = "MP_IN_adm" if task == "mp" else "LOS_WEEKS_adm"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(SPLIT_SIZES.items()):
        name = f"{prefix}_{'val' if split == 'valid' else split}.csv" if original_names else f"{split}.csv"
        labels = [k % n_classes for k in range(n)]
        rows = [
            [100000 + 1000 * i + k, note(rng, y, long=(split == "train" and k == 0)), y]
            for k, y in enumerate(labels)
        ]
        write_csv(folder / name, ["id", "text", column], rows)
    return folder


TRIAGE = (
    "Cardiology",
    "Obstetrics",
    "Respiratory",
    "Neurology",
    "Gastroenterology",
    "AcuteMedicine",
    "Oncology",
)


def write_icd9(folder: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in SPLIT_SIZES.items():
        rows = [[note(rng, k % 7), TRIAGE[k % 7], k % 7] for k in range(n)]
        write_csv(folder / f"{split}.csv", ["text", "triage-category", "label"], rows)
    return folder


def write_i2b2_re(folder: Path, jsonl: bool = False, seed: int = 0, arrow: bool = False) -> Path:
    """train/valid as CSV, JSON lines, or (`arrow`) a datasets.save_to_disk DatasetDict folder with
    train/validation splits and ClassLabel labels, as the paper's pipeline saved it (needs the
    test-only `datasets` package: the test is skipped without it)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", 27), ("valid", 18)):
        rows = [
            [f"the @problem$ was treated with {rng.choice(WORDS)} rel{k % 9} @treatment$ .", k % 9]
            for k in range(n)
        ]
        if arrow:
            splits["validation" if split == "valid" else split] = rows
        elif jsonl:
            (folder / f"{split}.jsonl").write_text(
                "".join(json.dumps({"sentence": s, "labels": y}) + "\n" for s, y in rows)
            )
        else:
            write_csv(folder / f"{split}.csv", ["sentence", "labels"], rows)
    if arrow:
        datasets = pytest.importorskip("datasets")
        features = datasets.Features(
            {
                "sentence": datasets.Value("string"),
                "labels": datasets.ClassLabel(names=[f"rel{k}" for k in range(9)]),
            }
        )
        datasets.DatasetDict(
            {
                s: datasets.Dataset.from_dict(
                    {"sentence": [r[0] for r in rows], "labels": [r[1] for r in rows]}, features=features
                )
                for s, rows in splits.items()
            }
        ).save_to_disk(str(folder))
    return folder


def ner_sentence(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(rng.randint(3, 8)):
        kind = rng.choice(("O", "O", "problem", "test", "treatment"))
        if kind == "O":
            out.append((rng.choice(("the", "patient", "was", "given", "for")), "O"))
        else:
            words = {"problem": ["chest", "pain"], "test": ["ct", "scan"], "treatment": ["aspirin"]}[kind]
            out += [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(words)]
    return out


def write_conll(folder: Path, seed: int = 0, sizes=(("train", 20), ("dev", 6), ("test", 6))) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        blocks = ["\n".join(f"{w} {t}" for w, t in ner_sentence(rng)) for _ in range(n)]
        (folder / f"{split}.txt.conll").write_text("\n\n".join(blocks) + "\n")
    return folder

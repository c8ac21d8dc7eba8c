"""tasks.data_arrow reads `datasets` save_to_disk folders without pyarrow: checked against what the
real `datasets` (a test-only extra) writes and reads back, and for its errors."""

import csv
import json

import pytest

from tasks import data_arrow
from tasks.data_csv import load_i2b2_re

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")

LABELS = tuple(str(i) for i in range(9))
TEXTS = ["plain", "", "héllo wörld ✓ 病", 'commas, "quotes"\nand a\r\nline break', "x" * 70_000]


def _texts(n):
    return [TEXTS[i % len(TEXTS)] + f" #{i}" for i in range(n)]


def test_columns_equal_what_datasets_reads_back(tmp_path):
    """Several record batches (writer_batch_size), several shards, ClassLabel and int columns, and
    columns of other types (float, list, struct, nullable) stepped over."""
    n = 2_345
    features = datasets.Features(
        {
            "score": datasets.Value("float32"),
            "sentence": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "meta": {"a": datasets.Value("int32"), "b": datasets.Value("string")},
            "labels": datasets.ClassLabel(num_classes=9),
            "n": datasets.Value("int16"),
            "flag": datasets.Value("bool"),
            "maybe": datasets.Value("string"),
        }
    )
    data = {
        "score": [i / 7 for i in range(n)],
        "sentence": _texts(n),
        "tokens": [["a"] * (i % 4) for i in range(n)],
        "meta": [{"a": i, "b": str(i)} for i in range(n)],
        "labels": [i % 9 for i in range(n)],
        "n": [i - 1000 for i in range(n)],
        "flag": [i % 3 == 0 for i in range(n)],
        "maybe": [None if i % 5 == 0 else "y" for i in range(n)],
    }
    ds = datasets.Dataset.from_dict(data, features=features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path), num_shards={"train": 3})
    shards = json.loads((tmp_path / "train" / "state.json").read_text())["_data_files"]
    assert len(shards) == 3
    back = datasets.load_from_disk(str(tmp_path))["train"]
    folder, files, rows = data_arrow.read_split(tmp_path, "train", ("sentence", "labels", "n", "flag"))
    assert [f.name for f in files] == [s["filename"] for s in shards]
    assert [r for r, _ in rows] == list(range(1, n + 1))
    assert [d["sentence"] for _, d in rows] == back["sentence"]
    assert [int(d["labels"]) for _, d in rows] == back["labels"]
    assert [int(d["n"]) for _, d in rows] == back["n"]
    assert [d["flag"] == "1" for _, d in rows] == back["flag"]
    with pytest.raises(ValueError, match=r"data-00000-of-00003.arrow: column 'maybe' row 1: missing value"):
        data_arrow.read_split(tmp_path, "train", ("maybe",))
    late = datasets.Dataset.from_dict(
        {"s": ["a"] * 1500 + [None]}, features=datasets.Features({"s": datasets.Value("string")})
    )
    datasets.DatasetDict({"train": late}).save_to_disk(str(tmp_path / "late"))  # two record batches
    with pytest.raises(ValueError, match=r"column 's' row 1501: missing value"):
        data_arrow.read_split(tmp_path / "late", "train", ("s",))


def test_large_strings_and_the_file_format(tmp_path):
    table = pa.table(
        {
            "sentence": pa.array(["a", "bé", ""], type=pa.large_string()),
            "labels": pa.array([1, 2, 3], type=pa.uint8()),
        }
    )
    with pa.ipc.new_file(tmp_path / "f.arrow", table.schema) as w:
        w.write_table(table)
    assert data_arrow.read_arrow(tmp_path / "f.arrow", ("labels", "sentence")) == {
        "labels": [1, 2, 3],
        "sentence": ["a", "bé", ""],
    }


def test_i2b2_re_from_a_dataset_folder_equals_the_same_rows_as_csv(tmp_path):
    rows = {
        "train": [(f"the @problem$ causes @problem$ {i}", i % 9) for i in range(40)],
        "validation": [(f"@test$ shows @problem$ {i}", (i * 4) % 9) for i in range(21)],
    }
    folder = tmp_path / "hf"
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "labels": datasets.ClassLabel(num_classes=9)}
    )
    datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(
                {"sentence": [t for t, _ in r], "labels": [y for _, y in r]}, features=features
            )
            for s, r in rows.items()
        }
    ).save_to_disk(str(folder))
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for split, name in (("train", "train.csv"), ("validation", "valid.csv")):
        with open(csv_dir / name, "w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            w.writerow(["sentence", "labels"])
            w.writerows(rows[split])
    a, b = load_i2b2_re(folder, LABELS, seed=7), load_i2b2_re(csv_dir, LABELS, seed=7)
    for split in ("train", "validation", "test"):
        assert [(e.text, e.label) for e in getattr(a, split)] == [
            (e.text, e.label) for e in getattr(b, split)
        ]
    assert len(a.validation) == 11 and len(a.test) == 10 and a.notes == b.notes
    assert all(f.suffix == ".arrow" and f.is_file() for f in a.files) and len(a.files) == 2


def _save(folder, splits, features=None):
    datasets.DatasetDict(
        {s: datasets.Dataset.from_dict(d, features=features) for s, d in splits.items()}
    ).save_to_disk(str(folder))
    return folder


def test_errors_name_the_file_and_what_was_found(tmp_path):
    ok = {"sentence": ["a", "b"], "labels": [0, 1]}
    no_val = _save(tmp_path / "a", {"train": ok})
    with pytest.raises(FileNotFoundError, match=r"dataset_dict.json: no validation split; .*found train"):
        load_i2b2_re(no_val, LABELS, 0)
    wrong_col = _save(tmp_path / "b", {"train": {"text": ["a"], "labels": [0]}, "validation": ok})
    with pytest.raises(
        KeyError, match=r"train/data-00000-of-00001.arrow: no column 'sentence'; found text, labels"
    ):
        load_i2b2_re(wrong_col, LABELS, 0)
    bad_label = _save(tmp_path / "c", {"train": ok, "validation": {"sentence": ["a"], "labels": [12]}})
    with pytest.raises(ValueError, match=r"validation: row 1: labels='12' is not in the task's label set"):
        load_i2b2_re(bad_label, LABELS, 0)
    floats = _save(tmp_path / "d", {"train": {"sentence": ["a"], "labels": [0.5]}, "validation": ok})
    with pytest.raises(ValueError, match=r"column 'labels' has Arrow type float; expected strings"):
        load_i2b2_re(floats, LABELS, 0)
    shard = ok_dir = _save(tmp_path / "e", {"train": ok, "validation": ok})
    shard = ok_dir / "train" / "data-00000-of-00001.arrow"
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"data-00000-of-00001.arrow: .*(truncated|bad message length)"):
        load_i2b2_re(ok_dir, LABELS, 0)
    table = pa.table({"sentence": pa.array(["a", "b"]).dictionary_encode(), "labels": pa.array([0, 1])})
    with pa.ipc.new_stream(tmp_path / "dict.arrow", table.schema) as w:
        w.write_table(table)
    with pytest.raises(ValueError, match=r"dict.arrow: column 'sentence' is dictionary-encoded"):
        data_arrow.read_arrow(tmp_path / "dict.arrow", ("sentence",))

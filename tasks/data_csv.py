"""Readers for the paper's CSV layouts: MIMIC mortality and length of stay, ICD9-Triage, i2b2-2010 RE.

Files are RFC 4180 CSV (van Aken's scripts write every field quoted; notes span many lines and can be
longer than the csv module's default 128 KiB field limit). Every file is decoded as strict UTF-8 first,
so undecodable bytes are reported with the file and line, and every row's label is checked against
the task's label set, all before training starts.

Layouts (paper §3.1):
    mimic-mp     id,text,hospital_expire_flag   train.csv/valid.csv/test.csv
                                                or MP_IN_adm_{train,val,test}.csv
    mimic-los    id,text,los_label              train.csv/valid.csv/test.csv
                                                or LOS_WEEKS_adm_{train,val,test}.csv
    icd9-triage  text,triage-category,label     train.csv/valid.csv/test.csv
    i2b2-re      sentence,labels                train.csv/valid.csv (or .jsonl), or a datasets save_to_disk
                                                folder (tasks/data_arrow.py); valid is split 50/50 by seed
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tasks import data_arrow
from tasks.task import Dataset, TextExample

_FIELD_LIMIT = 2**31 - 1  # larger than any note; C long on every platform


@dataclass(frozen=True)
class CsvLayout:
    """Where a task's files are and which columns carry what."""

    text: str  # text column
    label: str  # label column
    id: str | None = None  # id column (None: ids are made from split and row)
    names: dict | None = None  # split -> candidate file names, first found wins


GENERIC = {"train": ("train.csv",), "validation": ("valid.csv", "val.csv", "dev.csv"), "test": ("test.csv",)}


def _names(prefix: str) -> dict:
    return {
        "train": ("train.csv", f"{prefix}_train.csv"),
        "validation": ("valid.csv", "val.csv", "dev.csv", f"{prefix}_val.csv"),
        "test": ("test.csv", f"{prefix}_test.csv"),
    }


MIMIC_MP = CsvLayout(text="text", label="hospital_expire_flag", id="id", names=_names("MP_IN_adm"))
MIMIC_LOS = CsvLayout(text="text", label="los_label", id="id", names=_names("LOS_WEEKS_adm"))
ICD9_TRIAGE = CsvLayout(text="text", label="label", names=GENERIC)
I2B2_RE = CsvLayout(text="sentence", label="labels")


def decode_utf8(path: Path) -> str:
    """The file as text; undecodable bytes raise ValueError naming the file, line and byte."""
    data = path.read_bytes()
    if b"\x00" in data:
        at = data.index(b"\x00")
        line = data[:at].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line}: a NUL byte at offset {at}; text files hold "
            "none (is it UTF-16 or binary?). Remove it or re-save the file as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line}: byte 0x{data[e.start]:02x} at offset {e.start} is "
            f"not valid UTF-8 ({e.reason}); re-save the file as UTF-8"
        ) from None


def read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of an RFC 4180 CSV as (first line number, row dict); checks the header has `required`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.reader(io.StringIO(decode_utf8(path), newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(
            f"{path}: the file is empty; expected a header with columns {', '.join(required)}"
        ) from None
    except csv.Error as e:
        raise ValueError(
            f"{path}: line 1: malformed CSV header ({e}); names with commas or quotes must be quoted, "
            "and quotes inside doubled (RFC 4180)"
        ) from None
    header = [h.strip() for h in header]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ValueError(
            f"{path}: column(s) {', '.join(repr(h) for h in twice)} appear more than once in the header; "
            "expected unique names (which one holds the data?). Rename or drop the duplicate"
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise KeyError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}; "
            f"found columns {', '.join(header) or '(none)'}"
        )
    rows, start = [], reader.line_num + 1
    try:
        for values in reader:
            if values:  # a blank line between records is no record
                if len(values) != len(header):
                    raise ValueError(
                        f"{path}: line {start}: {len(values)} fields, the header has "
                        f"{len(header)} ({', '.join(header)}); check the quoting"
                    )
                rows.append((start, dict(zip(header, values))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise ValueError(
            f"{path}: line {start}: malformed CSV ({e}); fields with commas, quotes or "
            f"line breaks must be quoted, and quotes inside doubled (RFC 4180)"
        ) from None
    return rows


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of a JSON-lines file as (line number, dict), each checked for the `required` keys."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for n, line in enumerate(decode_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {n}: not a JSON object ({e.msg})") from None
        missing = [c for c in required if not isinstance(row, dict) or c not in row]
        if missing:
            found = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise KeyError(f"{path}: line {n}: missing key(s) {', '.join(missing)}; found {found}")
        rows.append((n, {k: str(v) for k, v in row.items()}))
    return rows


def label_index(
    value: str, labels: tuple[str, ...], path: Path, line: int, column: str, unit: str = "line"
) -> int:
    """Map a label cell to its index; integers written as floats ("1.0") are accepted. Errors name
    `path` and `unit` `line` (a file's line, or a data set's row)."""
    v = value.strip()
    if v not in labels:
        try:
            f = float(v)
            v = str(int(f)) if f.is_integer() else v
        except ValueError:
            pass
    if v not in labels:
        raise ValueError(
            f"{path}: {unit} {line}: {column}={value!r} is not in the task's label set "
            f"{{{', '.join(labels)}}}; fix the row or choose the matching --task"
        )
    return labels.index(v)


def check_texts(texts_at: list[tuple[int, str]], path: Path, column: str, unit: str = "line") -> None:
    """Refuse empty or whitespace-only texts (a prediction for nothing) and NUL characters (binary
    junk; CSV/CoNLL files are checked byte-wise already, Arrow rows here), naming count and lines."""
    nul = [line for line, text in texts_at if "\x00" in text]
    if nul:
        raise ValueError(
            f"{path}: {len(nul)} {column} value(s) hold a NUL character ({unit} {nul[0]} first); "
            "expected plain text. Remove the NUL characters"
        )
    empty = [line for line, text in texts_at if not text.strip()]
    if empty:
        shown = ", ".join(str(n) for n in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise ValueError(
            f"{path}: {len(empty)} row(s) with an empty or whitespace-only {column} ({unit} {shown}); "
            "expected text in every row. Remove those rows or fill them in"
        )


def examples_from_rows(
    rows, path: Path, layout: CsvLayout, labels: tuple[str, ...], split: str, unit: str = "line"
):
    check_texts([(line, row[layout.text]) for line, row in rows], path, layout.text, unit)
    out = []
    for i, (line, row) in enumerate(rows):
        ident = row[layout.id].strip() if layout.id else f"{split}-{i}"
        out.append(
            TextExample(
                id=ident,
                text=row[layout.text],
                label=label_index(row[layout.label], labels, path, line, layout.label, unit),
            )
        )
    return out


def find_file(data_dir: Path, candidates: tuple[str, ...], split: str) -> Path:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: no such directory")
    for name in candidates:
        if (data_dir / name).is_file():
            return data_dir / name
    present = sorted(p.name for p in data_dir.iterdir())
    raise FileNotFoundError(
        f"{data_dir}: no {split} file; expected one of {', '.join(candidates)}; "
        f"found {', '.join(present) or 'an empty directory'}"
    )


def load_csv_task(data_dir: Path, layout: CsvLayout, labels: tuple[str, ...]) -> Dataset:
    """The three splits of a task with one CSV file per split (MIMIC MP/LoS, ICD9-Triage)."""
    required = tuple(c for c in (layout.id, layout.text, layout.label) if c)
    splits, files = {}, []
    for split in ("train", "validation", "test"):
        path = find_file(data_dir, layout.names[split], split)
        splits[split] = examples_from_rows(read_csv(path, required), path, layout, labels, split)
        files.append(path)
    return Dataset(labels=labels, files=tuple(files), **splits)


def label_set(values: list[str]) -> tuple[str, ...]:
    """The distinct labels, sorted: as numbers when every one is an integer ("2" before "10"),
    else as text. Stable across runs and machines, whatever order the rows come in."""
    found = {v.strip() for v in values}
    if all(v.lstrip("-").isdigit() for v in found):
        return tuple(sorted(found, key=int))
    return tuple(sorted(found))


def load_generic_csv(
    data_dir: Path, text_column: str = "text", label_column: str = "label", id_column: str | None = None
) -> Dataset:
    """Any text classification: one CSV per split, the columns named by the caller. The label set
    is the distinct values of train.csv's label column; a validation or test label outside it is
    refused, naming the file and line (a class the model never saw in training cannot be scored)."""
    layout = CsvLayout(text=text_column, label=label_column, id=id_column, names=GENERIC)
    required = tuple(c for c in (id_column, text_column, label_column) if c)
    rows, files = {}, []
    for split in ("train", "validation", "test"):
        path = find_file(data_dir, layout.names[split], split)
        rows[split] = (path, read_csv(path, required))
        files.append(path)
    train_path, train_rows = rows["train"]
    labels = label_set([row[label_column] for _, row in train_rows])
    if len(labels) < 2:
        raise ValueError(
            f"{train_path}: column {label_column} has {len(labels)} distinct value(s) {list(labels)}; "
            "a classifier needs at least 2 (is --label-column the right column?)"
        )
    for split in ("validation", "test"):
        path, split_rows = rows[split]
        for line, row in split_rows:
            if row[label_column].strip() not in labels:
                raise ValueError(
                    f"{path}: line {line}: {label_column}={row[label_column]!r} is not among the labels "
                    f"of {train_path.name} {{{', '.join(labels)}}}; a class never seen in training "
                    "cannot be learned: add examples of it to train.csv or drop the row"
                )
    splits = {split: examples_from_rows(r, path, layout, labels, split) for split, (path, r) in rows.items()}
    return Dataset(labels=labels, files=tuple(files), **splits)


def split_half(examples: list, seed: int) -> tuple[list, list]:
    """Shuffle with `seed` and cut in two halves (first half validation, second half test)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = (len(order) + 1) // 2
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


RE_SPLITS = (
    ("train", ("train",)),
    ("validation", ("validation", "valid", "val", "dev")),
    ("test", ("test",)),
)


def load_i2b2_re(data_dir: Path, labels: tuple[str, ...], seed: int) -> Dataset:
    """i2b2-2010 relations: train + validation files, or a `datasets` save_to_disk folder with train
    and validation splits (as the paper's pipeline saves it); validation split 50/50 into validation
    and test with the run's seed (as the paper's code did). A test file or split is used as is."""
    layout, required = I2B2_RE, (I2B2_RE.text, I2B2_RE.label)
    if data_arrow.is_dataset_folder(data_dir):
        return _with_test(*_re_from_dataset_folder(data_dir, labels), labels, seed)
    files, splits = [], {}
    for split, stems in RE_SPLITS:
        stems = tuple(s for s in stems if s != "validation")
        candidates = tuple(f"{s}.{ext}" for s in stems for ext in ("csv", "jsonl"))
        if split == "test" and not any((data_dir / c).is_file() for c in candidates):
            continue
        path = find_file(data_dir, candidates, split)
        reader = read_jsonl if path.suffix == ".jsonl" else read_csv
        splits[split] = examples_from_rows(reader(path, required), path, layout, labels, split)
        files.append(path)
    return _with_test(splits, files, labels, seed)


def _re_from_dataset_folder(data_dir: Path, labels: tuple[str, ...]):
    """({split: examples}, the .arrow shard files read) from a save_to_disk DatasetDict folder."""
    present = data_arrow.splits_of(data_dir)
    splits, files = {}, []
    for split, names in RE_SPLITS:
        name = next((n for n in names if n in present), None)
        if name is None:
            if split == "test":
                continue
            raise FileNotFoundError(
                f"{data_dir / 'dataset_dict.json'}: no {split} split; expected one of "
                f"{', '.join(names)}; found {', '.join(present) or 'none'}"
            )
        folder, shards, rows = data_arrow.read_split(data_dir, name, (I2B2_RE.text, I2B2_RE.label))
        splits[split] = examples_from_rows(rows, folder, I2B2_RE, labels, split, unit="row")
        files += shards
    return splits, files


def _with_test(splits: dict, files: list, labels: tuple[str, ...], seed: int) -> Dataset:
    """The Dataset, its validation split 50/50 by `seed` into validation and test when no test split came."""
    notes = ()
    if "test" not in splits:
        splits["validation"], splits["test"] = split_half(splits["validation"], seed)
        notes = (
            f"validation split 50/50 with seed {seed}: {len(splits['validation'])} "
            f"validation, {len(splits['test'])} test",
        )
    return Dataset(labels=labels, files=tuple(files), notes=notes, **splits)

"""Reader for the paper's NER files: CoNLL-style `token label` lines, a blank line between sentences.

Files `train.txt.conll`, `dev.txt.conll`, `test.txt.conll` as written by the bio-lm preprocessing of
i2b2 2010, 2012 and 2014. Tags are BIO (`O`, `B-TYPE`, `I-TYPE`). The tag list is the union over the
three files (as the paper's code built it), `O` first, then sorted; when the task names its entity
types (2010, 2012) a tag of another type is refused, compared case-insensitively.
"""

from __future__ import annotations

from pathlib import Path

from tasks.data_csv import decode_utf8, find_file
from tasks.task import Dataset, TaggedExample

CONLL_NAMES = {"train": ("train.txt.conll",), "validation": ("dev.txt.conll",), "test": ("test.txt.conll",)}
GENERIC_NAMES = {  # the generic `conll` task: also the shorter names
    "train": ("train.txt.conll", "train.conll"),
    "validation": ("dev.txt.conll", "dev.conll", "valid.conll"),
    "test": ("test.txt.conll", "test.conll"),
}


def read_conll(path: Path, tags_optional: bool = False) -> list[tuple[int, list[str], list[str]]]:
    """Sentences of a CoNLL file as (first line, words, tags). The label is the last field of a line.

    With `tags_optional` (text to tag), a line may hold the token alone; its tag is then None."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sentences, words, tags, start = [], [], [], 0
    for n, line in enumerate(decode_utf8(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append((start, words, tags))
            words, tags = [], []
            continue
        if len(fields) < 2 and not tags_optional:
            raise ValueError(f"{path}: line {n}: expected 'token label', found {line.strip()!r}")
        if not words:
            start = n
        words.append(fields[0])
        tags.append(fields[-1] if len(fields) > 1 else None)
    if words:
        sentences.append((start, words, tags))
    return sentences


def check_tag(tag: str, entity_types: tuple[str, ...], path: Path, line: int) -> None:
    if tag == "O":
        return
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(
            f"{path}: sentence at line {line}: tag {tag!r} is not BIO (expected O, B-TYPE or I-TYPE)"
        )
    if entity_types and kind.lower() not in {t.lower() for t in entity_types}:
        raise ValueError(
            f"{path}: sentence at line {line}: entity type {kind!r} is not in this task's "
            f"set {{{', '.join(entity_types)}}}; check the files or choose the matching --task"
        )


def check_case(found: dict[str, tuple[Path, int]]) -> None:
    """Refuse entity types that differ only in case (B-problem and B-Problem would be two classes)."""
    spellings: dict[str, set[str]] = {}
    for t in found:
        if t != "O":
            kind = t.partition("-")[2]
            spellings.setdefault(kind.lower(), set()).add(kind)
    clash = sorted(sorted(v) for v in spellings.values() if len(v) > 1)
    if clash:
        where = {k: found.get(f"B-{k}") or found.get(f"I-{k}") for k in clash[0]}
        shown = ", ".join(f"{k!r} ({p}: sentence at line {n})" for k, (p, n) in where.items())
        raise ValueError(
            f"entity types differ only in case: {shown}; expected one spelling per type. "
            "Write every tag of a type the same way"
        )


def tag_list(found: set[str]) -> tuple[str, ...]:
    """`O` first, then types in order with B before I (stable across runs and machines)."""
    rest = sorted(found - {"O"}, key=lambda t: (t.partition("-")[2], t.partition("-")[0]))
    return ("O",) + tuple(rest)


def load_conll_task(data_dir: Path, entity_types: tuple[str, ...] = (), names: dict = CONLL_NAMES) -> Dataset:
    raw, files = {}, []
    for split, candidates in names.items():
        path = find_file(data_dir, candidates, split)
        raw[split] = (path, read_conll(path))
        files.append(path)
    found = {}
    for path, sentences in raw.values():
        for line, _, tags in sentences:
            for t in tags:
                if t not in found:
                    check_tag(t, entity_types, path, line)
                    found[t] = (path, line)
    check_case(found)
    labels = tag_list(set(found))
    index = {t: i for i, t in enumerate(labels)}
    splits = {
        split: [
            TaggedExample(id=f"{split}-{i}", words=tuple(w), tags=tuple(index[t] for t in tg))
            for i, (_, w, tg) in enumerate(sentences)
        ]
        for split, (_, sentences) in raw.items()
    }
    return Dataset(labels=labels, files=tuple(files), **splits)

"""The task registry: every task the command lines know, with its label set, type, metrics and loader.

A task joins a loader (files -> examples) to a head (sequence or token classification) and to the
metrics the paper reports for it. Loaders take the user's `--data-dir` (the paper's clinical tasks,
which nobody may ship) or read the embedded defaults from the asset cache, and return a `Dataset`
whose three splits are validated here, before any training starts.

    task = get_task("mimic-mp")
    data = load_data(task, "/data/mimic-mp", seed=12)     # Dataset(labels, train, validation, test, files)
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from tasks import catalog  # noqa: F401  (declares the built-in tasks)
from tasks.task import (  # noqa: F401  (re-exported: the names users import from here)
    _TASKS,
    CLS_METRICS,
    HEADS,
    NER_METRICS,
    SEQ_CLS,
    SPLITS,
    TOKEN_CLS,
    Dataset,
    TaggedExample,
    Task,
    TextExample,
    register,
)


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise KeyError(f"unknown task '{name}'; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def load_data(task: Task, data_dir: str | Path | None, seed: int, **options) -> Dataset:
    """Run the task's loader and check the result: three non-empty splits, labels in range.
    `options` are passed on when the task declares them (Task.options) and ignored otherwise."""
    if task.needs_data_dir and data_dir is None:
        raise ValueError(f"task '{task.name}' reads your own files: pass --data-dir DIR ({task.description})")
    kwargs = {k: v for k, v in options.items() if k in task.options and v is not None}
    data = task.loader(Path(data_dir) if data_dir is not None else None, seed, **kwargs)
    for split in SPLITS:
        if not data.split(split):
            raise ValueError(
                f"task '{task.name}': the {split} split is empty "
                f"(files: {', '.join(str(f) for f in data.files) or 'none'}); "
                f"every split needs at least one example"
            )
    n = len(data.labels)
    for split in SPLITS:
        for ex in data.split(split):
            found = (ex.label,) if isinstance(ex, TextExample) else ex.tags
            assert all(0 <= i < n for i in found), (task.name, split, ex.id)  # loaders map labels
    return replace(data, notes=data.notes + check_ids(data, task))


def check_ids(data: Dataset, task: Task) -> tuple[str, ...]:
    """Refuse one id with two labels (which is right?); warn, with the count, about test or
    validation ids that are also training ids (leakage inflates the scores). Returns the warnings."""
    files = ", ".join(str(f) for f in data.files) or "the task's files"
    label_of: dict[str, tuple[str, int]] = {}
    for split in SPLITS:
        for ex in data.split(split):
            if not isinstance(ex, TextExample):
                continue
            seen = label_of.setdefault(ex.id, (split, ex.label))
            if seen[1] != ex.label:
                raise ValueError(
                    f"task '{task.name}' ({files}): id {ex.id!r} has label {data.labels[seen[1]]!r} in "
                    f"{seen[0]} and {data.labels[ex.label]!r} in {split}; expected one label per id. "
                    "Fix or drop the conflicting rows"
                )
    train = {ex.id for ex in data.train}
    notes = []
    for split in ("validation", "test"):
        leaked = sum(ex.id in train for ex in data.split(split))
        if leaked:
            notes.append(
                f"warning: {leaked} of {len(data.split(split))} {split} ids also appear in train "
                f"({files}); the {split} scores are inflated by leakage. Split by id to avoid it"
            )
    return tuple(notes)


def subsample(examples: list, n: int | None, seed: int) -> list:
    """n examples drawn without replacement by random.Random(seed), kept in their original order;
    all of them when n is None, 0 or at least len(examples). The same seed draws the same subset
    in tasks.finetune and benchmarks.rank_sweep, so their runs see the same data."""
    if n is not None and n < 0:
        raise ValueError(f"--max-train-examples/--max-eval-examples must be >= 0 (0: all), got {n}")
    if not n or n >= len(examples):
        return examples
    return [examples[i] for i in sorted(random.Random(seed).sample(range(len(examples)), n))]

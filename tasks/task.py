"""What a task is: its examples, its three splits, and the table of registered tasks.

Data readers build `TextExample`/`TaggedExample` lists into a `Dataset`; `tasks.catalog` declares every
built-in `Task` with `register`. Lookups (`get_task`, `load_data`) live in `tasks.registry`, which imports
the catalog; this module imports nothing of the package, so readers and catalog never import back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEQ_CLS = "seq-cls"
TOKEN_CLS = "token-cls"
SPLITS = ("train", "validation", "test")
HEADS = {
    SEQ_CLS: "sequence-classification",
    TOKEN_CLS: "token-classification",
}  # type -> load_pretrained head

CLS_METRICS = (
    "accuracy",
    "roc_auc",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
)
NER_METRICS = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_strict", "token_accuracy")


@dataclass(frozen=True)
class TextExample:
    """One note (or sentence) and its label index into the task's label list."""

    id: str
    text: str
    label: int


@dataclass(frozen=True)
class TaggedExample:
    """One pre-split sentence and one tag index per word."""

    id: str
    words: tuple[str, ...]
    tags: tuple[int, ...]


@dataclass(frozen=True)
class Dataset:
    """The three splits of one task, the label list they index, and the files they came from."""

    labels: tuple[str, ...]
    train: list
    validation: list
    test: list
    files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()  # human-readable remarks from the loader (dedup counts, ...)

    def split(self, name: str) -> list:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


@dataclass(frozen=True)
class Task:
    """A registered task. `labels` is the closed label set; empty means 'read from the files' (NER)."""

    name: str
    type: str  # SEQ_CLS | TOKEN_CLS
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    primary: str  # the headline metric the paper reports
    select_by: str  # the validation metric that picks the best epoch
    loader: Callable[..., Dataset] = field(repr=False, compare=False)
    description: str = ""
    needs_data_dir: bool = True  # False: an embedded default read from the asset cache
    entity_types: tuple[str, ...] = ()  # NER: the closed set of entity types, if known
    options: tuple[str, ...] = ()  # keyword arguments the loader takes (the generic csv's columns)

    @property
    def head(self) -> str:
        return HEADS[self.type]


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task '{task.name}' is registered twice")
    if task.primary not in task.metrics or task.select_by not in task.metrics:
        raise ValueError(
            f"task '{task.name}': primary '{task.primary}' and select_by "
            f"'{task.select_by}' must be among its metrics {task.metrics}"
        )
    _TASKS[task.name] = task
    return task

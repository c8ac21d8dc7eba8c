"""config.json reading and writing shared by the BERT, DistilBERT and MobileBERT config dataclasses.

Plain functions over a frozen dataclass with the fields `id2label`, `label2id`, `model_type`,
`name_or_path` and `extra` (unknown keys, kept and written back), so each family keeps its own
flat config class and its own checks, with no base class. BertConfig keeps its own `from_dict`
(position-embedding check, its num_labels rule) and builds with `split_keys` and `construct`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path

# fields that are not architecture: never read from config.json nor written to it
NOT_ARCHITECTURE = ("extra", "name_or_path", "recompute_attention", "first_position_only")


def split_keys(cls, d: dict, ignore=()) -> tuple:
    """(known, extra): the config.json keys that are fields of `cls`, and the rest (minus `ignore`)."""
    names = {f.name for f in fields(cls)} - set(NOT_ARCHITECTURE)
    known = {k: v for k, v in d.items() if k in names}
    extra = {k: v for k, v in d.items() if k not in names and k not in ignore}
    return known, extra


def construct(cls, known: dict, extra: dict, d: dict, source: str):
    """cls(**known, extra, name_or_path from `_name_or_path`); its errors name `source`."""
    try:
        return cls(**known, extra=extra, name_or_path=str(d.get("_name_or_path", "")))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from e


def from_dict(cls, d: dict, source: str = "config"):
    """Build `cls` from a config.json dict; unknown keys go to `extra`; `source` names the file."""
    expected = cls.__dataclass_fields__["model_type"].default
    if d.get("model_type", expected) != expected:
        raise ValueError(
            f"{source}: model_type={d.get('model_type')!r}; {cls.__name__} reads model_type {expected!r} only"
        )
    known, extra = split_keys(cls, d)
    if "num_labels" in extra and "id2label" not in known:  # HF writes id2label, but be lenient
        known["id2label"] = {i: f"LABEL_{i}" for i in range(int(extra.pop("num_labels")))}
    return construct(cls, known, extra, d, source)


def from_json(cls, path):
    """Read `path` (a config.json or the folder holding it) with `cls.from_dict`."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no config.json; expected a HuggingFace model folder (config.json + model.safetensors)"
        )
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return cls.from_dict(d, source=str(path))


def to_dict(cfg, architectures, **fixed) -> dict:
    """HF's config.json layout (what `transformers` reads back); `fixed` keys follow `architectures`."""
    d = {k: v for k, v in asdict(cfg).items() if k not in NOT_ARCHITECTURE}
    out = {
        k: v
        for k, v in cfg.extra.items()
        if k not in ("architectures", "transformers_version", "_name_or_path")
    }
    out.update(architectures=list(architectures), **fixed, **d)
    if cfg.id2label is None:
        out.pop("id2label"), out.pop("label2id")
    else:
        out["id2label"] = {str(i): v for i, v in cfg.id2label.items()}
        out["label2id"] = cfg.label2id or {v: i for i, v in cfg.id2label.items()}
    return out


def check_family(cfg, act: str, width: str, heads: str, activations, fix: str = "") -> None:
    """The checks every family's __post_init__ makes: its own model_type, a known activation in the
    field `act`, and a `width` (field or property) that splits evenly into `heads` attention heads."""
    expected = type(cfg).__dataclass_fields__["model_type"].default
    if cfg.model_type != expected:
        raise ValueError(f"{type(cfg).__name__} got model_type={cfg.model_type!r}; expected {expected!r}")
    if getattr(cfg, act) not in activations:
        raise ValueError(
            f"{act}={getattr(cfg, act)!r} is not supported; expected one of {tuple(activations)}{fix}"
        )
    if getattr(cfg, width) % getattr(cfg, heads):
        raise ValueError(f"{width}={getattr(cfg, width)} is not a multiple of {heads}={getattr(cfg, heads)}")


def normalise_labels(cfg, derive_label2id: bool = True) -> None:
    """JSON keys are strings: id2label -> {int: str}, label2id -> {str: int} (in __post_init__);
    a missing label2id is derived from id2label (not for BertConfig, which keeps it None)."""
    if cfg.id2label is not None:
        object.__setattr__(cfg, "id2label", {int(k): str(v) for k, v in cfg.id2label.items()})
        if cfg.label2id is None and derive_label2id:
            object.__setattr__(cfg, "label2id", {v: k for k, v in cfg.id2label.items()})
    if cfg.label2id is not None:
        object.__setattr__(cfg, "label2id", {str(k): int(v) for k, v in cfg.label2id.items()})


def with_labels(cfg, num_labels: int):
    """A copy whose head has `num_labels` classes (keeps existing names when the count fits)."""
    if cfg.id2label and len(cfg.id2label) == num_labels:
        return cfg
    id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return replace(cfg, id2label=id2label, label2id={v: i for i, v in id2label.items()})

"""config.json reading, writing and checking, shared by every family's config (models/config.py).

Plain functions over a frozen dataclass with the fields `id2label`, `label2id`, `model_type`,
`name_or_path` and `extra` (unknown keys, kept and written back) and the class-level settings
CHECK, FIXED and ARCHITECTURES (models.config.ModelConfig binds them as methods, once for every
family). `validate` is the one check every config's __post_init__ runs; a family adds its own
after it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields, replace
from pathlib import Path

from models.common import ACTIVATIONS

# fields that are not architecture: never read from config.json nor written to it
NOT_ARCHITECTURE = ("extra", "name_or_path", "recompute_attention", "first_position_only")


def split_keys(cls, d: dict, ignore=()) -> tuple:
    """(known, extra): the config.json keys that are fields of `cls`, and the rest (minus `ignore`)."""
    names = {f.name for f in fields(cls)} - set(NOT_ARCHITECTURE)
    known = {k: v for k, v in d.items() if k in names}
    extra = {k: v for k, v in d.items() if k not in names and k not in ignore}
    return known, extra


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def check_types(cls, known: dict, source: str) -> None:
    """Each config.json value has its field's type (from the annotation: int, float, str, bool,
    dict, `| None`), integers are >= 0 and floats finite; else ValueError naming file and key."""
    for f in fields(cls):
        if f.name not in known:
            continue
        v, parts = known[f.name], [p.strip() for p in str(f.type).split("|")]
        if v is None and "None" in parts:
            continue
        allowed = tuple(t for p in parts for t in _TYPES.get(p, ()))
        if not allowed:
            continue
        ok = isinstance(v, allowed) and (bool in allowed or not isinstance(v, bool))
        if ok and isinstance(v, (int, float)) and not isinstance(v, bool):
            ok = math.isfinite(v) and (v >= 0 or "float" in parts)
        if not ok:
            raise ValueError(
                f"{source}: {f.name}={v!r} ({type(v).__name__}); expected "
                f"{' or '.join(parts)}{' >= 0' if parts[0] == 'int' else ''}. Fix the value in config.json"
            )


def construct(cls, known: dict, extra: dict, d: dict, source: str):
    """cls(**known, extra, name_or_path from `_name_or_path`); its errors name `source`."""
    check_types(cls, known, source)
    try:
        return cls(**known, extra=extra, name_or_path=str(d.get("_name_or_path", "")))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from e


def default_labels(n, source: str) -> dict:
    """{i: LABEL_i} for config.json's num_labels, which must be a whole number >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{source}: num_labels={n!r}; expected a whole number >= 1. Fix config.json")
    return {i: f"LABEL_{i}" for i in range(n)}


def from_dict(cls, d: dict, source: str = "config"):
    """Build `cls` from a config.json dict; unknown keys go to `extra`; `source` names the file.
    HF writes id2label; a bare num_labels (older files) becomes LABEL_0..LABEL_{n-1}."""
    expected = cls.__dataclass_fields__["model_type"].default
    if d.get("model_type", expected) != expected:
        raise ValueError(
            f"{source}: model_type={d.get('model_type')!r}; {cls.__name__} reads model_type {expected!r} "
            f"only (load_pretrained picks the config class from model_type)"
        )
    for key, only in cls.FIXED.items():
        if d.get(key) not in (None, only):
            raise ValueError(
                f"{source}: {key}={d[key]!r} is not supported; expected {only!r} (or the key absent): "
                f"our {cls.__name__.removesuffix('Config')} implements only that"
            )
    known, extra = split_keys(cls, d, ignore=tuple(cls.FIXED))
    n = extra.pop("num_labels", None)
    if n is not None and not known.get("id2label"):
        known["id2label"] = default_labels(n, source)
    return construct(cls, known, extra, d, source)


def from_json(cls, path):
    """Read `path` (a config.json or the folder holding it) with `cls.from_dict`."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no config.json; expected a HuggingFace model folder (config.json + model.safetensors)"
        )
    return cls.from_dict(read_json_object(path), source=str(path))


def read_json_object(path, fix: str = "fix the file") -> dict:
    """A JSON file that must hold an object; anything else raises ValueError naming the file, with
    `fix` (what the user should do, e.g. "write it again with tasks.finetune") at the end."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); {fix}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object {{...}}, found a {type(d).__name__}; {fix}")
    return d


def to_dict(cfg, architectures=None) -> dict:
    """HF's config.json layout (what `transformers` reads back). architectures: default the class's
    ARCHITECTURES (the bare encoder); the FIXED keys follow it."""
    architectures = architectures or type(cfg).ARCHITECTURES
    fixed = type(cfg).FIXED
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


def validate(cfg) -> None:
    """The checks and normalisation every family's __post_init__ runs first: its own model_type, a
    known activation, a width that splits evenly into the attention heads (the class's CHECK =
    (activation field, width field or property, heads field)), then labels with int/str keys."""
    act, width, heads = type(cfg).CHECK
    expected = type(cfg).__dataclass_fields__["model_type"].default
    if cfg.model_type != expected:
        raise ValueError(f"{type(cfg).__name__} got model_type={cfg.model_type!r}; expected {expected!r}")
    if getattr(cfg, act) not in ACTIVATIONS:
        raise ValueError(
            f"{act}={getattr(cfg, act)!r} is not supported; expected one of {tuple(ACTIVATIONS)} "
            f"(use a checkpoint with one of these activations)"
        )
    if getattr(cfg, heads) < 1 or getattr(cfg, width) < 1:
        raise ValueError(f"{heads}={getattr(cfg, heads)} and {width}={getattr(cfg, width)} must be >= 1")
    if getattr(cfg, width) % getattr(cfg, heads):
        raise ValueError(f"{width}={getattr(cfg, width)} is not a multiple of {heads}={getattr(cfg, heads)}")
    _normalise_labels(cfg)


def _normalise_labels(cfg) -> None:
    """JSON keys are strings: id2label -> {int: str}, label2id -> {str: int}; a missing label2id
    is derived from id2label."""
    if cfg.id2label is not None:
        object.__setattr__(cfg, "id2label", {int(k): str(v) for k, v in cfg.id2label.items()})
        if cfg.label2id is None:
            object.__setattr__(cfg, "label2id", {v: k for k, v in cfg.id2label.items()})
    if cfg.label2id is not None:
        object.__setattr__(cfg, "label2id", {str(k): int(v) for k, v in cfg.label2id.items()})


def with_labels(cfg, num_labels: int):
    """A copy whose head has `num_labels` classes (keeps existing names when the count fits)."""
    if cfg.id2label and len(cfg.id2label) == num_labels:
        return cfg
    id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return replace(cfg, id2label=id2label, label2id={v: i for i, v in id2label.items()})

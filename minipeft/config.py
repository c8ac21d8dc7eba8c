"""Adapter configurations: frozen, flat, validated on construction.

`targets` is either a tuple of names (a module path matches when it equals the name or ends with
"." + name, PEFT's rule) or one string, a regular expression matched against the whole path
(`re.fullmatch`). `modules_to_save` lists modules trained in place and saved with the adapter
(the classifier head); like PEFT, a path matches an entry when it ends with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LORA_INITS = ("kaiming", "gaussian")


def _as_targets(value, field: str, cls: str):
    """A str stays a regex (checked to compile); any other iterable of str becomes a tuple."""
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(
                f"{cls}.{field}={value!r} is not a valid regular expression ({e}); "
                f"pass a tuple of names for suffix matching instead"
            ) from None
        return value
    items = tuple(value)
    bad = [t for t in items if not isinstance(t, str) or not t]
    if bad:
        raise ValueError(f"{cls}.{field} must hold non-empty module names, found {bad!r}")
    return items


def _as_names(value, field: str, cls: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(
            f"{cls}.{field} must be a tuple of module names, found the string {value!r}; write ({value!r},)"
        )
    return _as_targets(value, field, cls)


@dataclass(frozen=True)
class LoraConfig:
    """LoRA: y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ with s = alpha / r (alpha / √r with rsLoRA)."""

    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    targets: tuple[str, ...] | str = ("query", "value")
    modules_to_save: tuple[str, ...] = ()
    use_rslora: bool = False
    init: str = "kaiming"  # "kaiming": A kaiming-uniform(a=√5), B = 0; "gaussian": A ~ N(0, 1/r)
    fused: bool = True  # forward through minipeft.ops (same math, less memory)

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"LoraConfig.r must be an int >= 1, found {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"LoraConfig.alpha must be a positive number, found {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout must satisfy 0 <= dropout < 1, found {self.dropout!r}")
        if self.init not in LORA_INITS:
            raise ValueError(f"LoraConfig.init must be one of {LORA_INITS}, found {self.init!r}")
        object.__setattr__(self, "targets", _as_targets(self.targets, "targets", "LoraConfig"))
        object.__setattr__(
            self, "modules_to_save", _as_names(self.modules_to_save, "modules_to_save", "LoraConfig")
        )
        if not self.targets:
            raise ValueError("LoraConfig.targets is empty; name at least one module, e.g. ('query', 'value')")

    @property
    def scaling(self) -> float:
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r


@dataclass(frozen=True)
class IA3Config:
    """IA³: output-scaled (x Wᵀ + b) ⊙ l, or input-scaled (x ⊙ l) Wᵀ + b for `feedforward` targets."""

    targets: tuple[str, ...] | str = ("key", "value", "output.dense")
    feedforward: tuple[str, ...] | str = ("output.dense",)
    modules_to_save: tuple[str, ...] = ()
    fused: bool = True

    def __post_init__(self):
        object.__setattr__(self, "targets", _as_targets(self.targets, "targets", "IA3Config"))
        object.__setattr__(self, "feedforward", _as_targets(self.feedforward, "feedforward", "IA3Config"))
        object.__setattr__(
            self, "modules_to_save", _as_names(self.modules_to_save, "modules_to_save", "IA3Config")
        )
        if not self.targets:
            raise ValueError("IA3Config.targets is empty; name at least one module, e.g. ('key', 'value')")
        if isinstance(self.targets, str) != isinstance(self.feedforward, str):
            raise ValueError(
                "IA3Config.targets and .feedforward must both be tuples of names or both "
                f"regular expressions, found {self.targets!r} and {self.feedforward!r}"
            )
        if not isinstance(self.targets, str):
            extra = sorted(set(self.feedforward) - set(self.targets))
            if extra:
                raise ValueError(
                    f"IA3Config.feedforward must be a subset of targets; {extra} are not in "
                    f"targets {self.targets}; add them to targets or drop them"
                )

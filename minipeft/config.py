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

LORA_INITS = ("kaiming", "gaussian", "pissa", "olora")
RESIDUAL_INITS = ("pissa", "olora")  # inits that start from W's own directions (see minipeft.lora_init)


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
    """LoRA: y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ with s = alpha / r (alpha / √r with rsLoRA).

    `init="pissa"|"olora"` (PEFT's init_lora_weights) starts A and B from W's principal singular
    directions or its QR basis, the base acting as the residual W - s·B₀A₀ (minipeft.lora_init).
    DoRA, PEFT's `use_dora=True`, is its own type, DoraConfig: another layer, another file layout.
    """

    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    targets: tuple[str, ...] | str = ("query", "value")
    modules_to_save: tuple[str, ...] = ()
    use_rslora: bool = False
    init: str = "kaiming"  # "kaiming": A kaiming-uniform(a=√5), B = 0; "gaussian": A ~ N(0, 1/r);
    # "pissa" / "olora": A, B from the SVD / QR of W, the base acting as the residual (PEFT's
    # init_lora_weights)
    fused: bool = True  # forward through minipeft.ops (same math, less memory)

    def __post_init__(self):
        _check_low_rank(self, LORA_INITS)

    @property
    def scaling(self) -> float:
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r


def _check_low_rank(c, inits: tuple[str, ...]) -> None:
    """Validate and normalise the fields LoraConfig and DoraConfig share."""
    cls = type(c).__name__
    if not isinstance(c.r, int) or isinstance(c.r, bool) or c.r < 1:
        raise ValueError(f"{cls}.r must be an int >= 1, found {c.r!r}")
    if not isinstance(c.alpha, (int, float)) or not c.alpha > 0:
        raise ValueError(f"{cls}.alpha must be a positive number, found {c.alpha!r}")
    if not isinstance(c.dropout, (int, float)) or not 0.0 <= c.dropout < 1.0:
        raise ValueError(f"{cls}.dropout must satisfy 0 <= dropout < 1, found {c.dropout!r}")
    if c.init not in inits:
        more = " (pissa/olora change the base's directions, which DoRA re-normalises; use LoraConfig)"
        raise ValueError(
            f"{cls}.init must be one of {inits}, found {c.init!r}{more if c.init in LORA_INITS else ''}"
        )
    object.__setattr__(c, "targets", _as_targets(c.targets, "targets", cls))
    object.__setattr__(c, "modules_to_save", _as_names(c.modules_to_save, "modules_to_save", cls))
    if not c.targets:
        raise ValueError(f"{cls}.targets is empty; name at least one module, e.g. ('query', 'value')")


@dataclass(frozen=True)
class DoraConfig:
    """DoRA (Liu et al. 2024), PEFT's LoraConfig(use_dora=True): W' = m ⊙ (W + s·B A) / ‖W + s·B A‖,
    a learned magnitude m per output row (minipeft.dora). Fields and defaults as LoraConfig; init
    is "kaiming" or "gaussian" (B = 0 either way, so the layer starts equal to its base)."""

    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    targets: tuple[str, ...] | str = ("query", "value")
    modules_to_save: tuple[str, ...] = ()
    use_rslora: bool = False
    init: str = "kaiming"
    fused: bool = True  # forward through minipeft.ops.dora_linear

    def __post_init__(self):
        _check_low_rank(self, ("kaiming", "gaussian"))

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


@dataclass(frozen=True)
class VeraConfig:
    """VeRA (Kopiczko et al. 2024): y = x Wᵀ + b + λ_b ⊙ (B[:out] (λ_d ⊙ (A[:, :in] dropout(x)))),
    with one frozen random pair A (r, max in), B (max out, r) shared by every target, drawn from
    `projection_prng_key`, and trainable λ_d (r,) = d_initial, λ_b (out,) = 0 per layer.
    Field names and defaults are PEFT's VeraConfig (`vera_dropout` is `dropout` here)."""

    r: int = 256
    targets: tuple[str, ...] | str = ("query", "value")
    dropout: float = 0.0
    d_initial: float = 0.1
    projection_prng_key: int = 0
    save_projection: bool = True  # write A and B into the adapter file (PEFT's default)
    modules_to_save: tuple[str, ...] = ()
    fused: bool = True

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"VeraConfig.r must be an int >= 1, found {self.r!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"VeraConfig.dropout must satisfy 0 <= dropout < 1, found {self.dropout!r}")
        if not isinstance(self.d_initial, (int, float)) or isinstance(self.d_initial, bool):
            raise ValueError(f"VeraConfig.d_initial must be a number, found {self.d_initial!r}")
        key = self.projection_prng_key
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < 2**63:
            raise ValueError(f"VeraConfig.projection_prng_key must be an int in [0, 2**63), found {key!r}")
        object.__setattr__(self, "targets", _as_targets(self.targets, "targets", "VeraConfig"))
        object.__setattr__(
            self, "modules_to_save", _as_names(self.modules_to_save, "modules_to_save", "VeraConfig")
        )
        if not self.targets:
            raise ValueError("VeraConfig.targets is empty; name at least one module, e.g. ('query', 'value')")

"""The adapter interface: what every adapter layer type provides, so that inject, merge, remove,
disabled, save_adapter / load_adapter and the audit handle all of them with one code path.

An adapter layer stands in for one nn.Linear. Its class is registered once, in minipeft.registry,
under its config type; nothing else in the library names it. The class provides:

    ROLE                 the audit role of its parameters ("lora", "ia3", ...)
    ADAPTER_PARAMS       names of the trainable adapter tensors (everything else stays frozen)
    PEFT_TYPE            adapter_config.json's peft_type ("LORA", "IA3", ...)
    PEFT_MARKERS         {field: value} that tell this type from others of the same PEFT_TYPE
                         (usually {}; DoRA would be {"use_dora": True} under "LORA")
    PEFT_REQUIRED        PEFT config fields that config_from_peft needs (missing -> KeyError)
    PEFT_OPTIONAL        PEFT config fields it also reads, with a default when absent
    from_config(base, path, config)       the layer around `base` (the nn.Linear at `path`)
    forward(x)           the adapted layer; the base alone while `self.disabled` is True
    merged()             (W', b'): the base weight and bias with the update folded in
    delta_weight()       ΔW (out, in) in fp32, the weight update the adapter applies to W
    peft_tensors()       {key under the layer: tensor} in PEFT's names and shapes
    load_peft_tensors(t) copy such a dict (shapes already checked) into the layer
    peft_config(config)  this type's adapter_config.json fields (the common ones are io's)
    config_from_peft(d, file, modules_to_save)   the config back from PEFT's JSON

and the instance attributes `base` (the original nn.Linear, unregistered, for remove()),
`weight` / `bias` (the base's own Parameters, registered under the same names so state-dict keys
do not change; `adopt_linear` sets these up) and `disabled` (a bool, False after construction).
A config type is a frozen dataclass with at least `targets` and `modules_to_save`.

This is a structural protocol (duck typing), not a base class: an adapter subclasses nn.Module and
nothing else. `missing_members` checks a class against it when the class is registered.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Protocol

import torch
import torch.nn as nn

CLASS_MEMBERS = (
    "ROLE",
    "ADAPTER_PARAMS",
    "PEFT_TYPE",
    "PEFT_MARKERS",
    "PEFT_REQUIRED",
    "PEFT_OPTIONAL",
    "from_config",
    "forward",
    "merged",
    "delta_weight",
    "peft_tensors",
    "load_peft_tensors",
    "peft_config",
    "config_from_peft",
)
RESERVED_ROLES = ("base", "head", "prompt")  # given by the audit to everything that is not a layer's


class AdapterLayer(Protocol):
    """One adapted nn.Linear; see the module docstring for each member's contract."""

    ROLE: ClassVar[str]
    ADAPTER_PARAMS: ClassVar[tuple[str, ...]]
    PEFT_TYPE: ClassVar[str]
    PEFT_MARKERS: ClassVar[dict]
    PEFT_REQUIRED: ClassVar[tuple[str, ...]]
    PEFT_OPTIONAL: ClassVar[tuple[str, ...]]
    base: nn.Linear
    weight: nn.Parameter
    bias: nn.Parameter | None
    disabled: bool

    @classmethod
    def from_config(cls, base: nn.Linear, path: str, config) -> AdapterLayer: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def delta_weight(self) -> torch.Tensor: ...

    def peft_tensors(self) -> dict[str, torch.Tensor]: ...

    def load_peft_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...

    @staticmethod
    def peft_config(config) -> dict: ...

    @staticmethod
    def config_from_peft(d: dict, file: Path, modules_to_save: tuple[str, ...]): ...


def missing_members(layer_type: type) -> list[str]:
    """Names of AdapterLayer members that `layer_type` lacks (empty: it satisfies the protocol)."""
    return [n for n in CLASS_MEMBERS if not hasattr(layer_type, n)]


def adopt_linear(module: nn.Module, base: nn.Linear) -> None:
    """Make `module` stand in for `base`: base's own weight and bias Parameters registered under the
    same names (so state-dict keys do not change), its sizes copied, and base kept, unregistered, in
    `module.base` for `remove()`. Also sets `module.disabled = False`."""
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{type(module).__name__} wraps an nn.Linear, found {type(base).__name__}")
    object.__setattr__(module, "base", base)  # kept, but not a submodule: keys stay unchanged
    module.in_features, module.out_features = base.in_features, base.out_features
    module.register_parameter("weight", base.weight)  # (out, in), frozen by inject()
    module.register_parameter("bias", base.bias)  # (out,) or None
    module.disabled = False


def module_names(value) -> str | list[str]:
    """A config's target-like field as PEFT writes it: a regex string as is, names sorted."""
    return value if isinstance(value, str) else sorted(value)


def path_matches(path: str, names) -> bool:
    """PEFT's rule for feedforward_modules-like fields: a regex fullmatch, or a path suffix."""
    return bool(re.fullmatch(names, path)) if isinstance(names, str) else any(path.endswith(n) for n in names)

"""Putting adapters into a model and taking them out: inject, merge, remove, disabled.

Works on any nn.Module. Target matching follows PEFT: a tuple entry matches a module path equal to
it or ending with "." + entry; a single string is a regex matched with `re.fullmatch`. IA³'s
`feedforward` and `modules_to_save` entries match paths that simply end with them (PEFT's rule
there, which is why `output.dense` also covers `attention.output.dense`).
The model remembers what was injected in `model._minipeft` (an AdapterState); adapters are found
by isinstance, saved modules by that record, never by parameter-name substrings.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import re
from dataclasses import dataclass, field

import torch.nn as nn

from minipeft import registry

ADAPTER_TYPES = registry.ADAPTERS.values()  # a live view: every registered layer class
STATE_ATTR = "_minipeft"


@dataclass
class AdapterState:
    """What inject() did to a model, so that save/remove/audit can undo or describe it."""

    configs: list = field(default_factory=list)  # registered config objects, in injection order
    saved: tuple[str, ...] = ()  # resolved modules_to_save paths
    requires_grad: dict = field(default_factory=dict)  # parameter name -> flag before injection
    loaded_from: dict | None = None  # set by load_adapter: folder, manifest check, ...


def adapter_state(model: nn.Module) -> AdapterState | None:
    return model.__dict__.get(STATE_ATTR)


def adapters(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every adapter layer (a registered layer class), in model order."""
    types = registry.layer_types()
    return [(p, m) for p, m in model.named_modules() if isinstance(m, types)]


def saved_modules(model: nn.Module) -> tuple[str, ...]:
    state = adapter_state(model)
    return state.saved if state else ()


def _nearest(model: nn.Module, name: str, only_linear: bool = False) -> list[str]:
    """Module paths, and their last one or two components, closest to `name` (difflib)."""
    paths = [p for p, m in model.named_modules() if p and (isinstance(m, nn.Linear) or not only_linear)]
    pool = set(paths) | {p.rsplit(".", 1)[-1] for p in paths} | {".".join(p.split(".")[-2:]) for p in paths}
    close = difflib.get_close_matches(name, sorted(pool), n=5, cutoff=0.4)
    return close or sorted({p.rsplit(".", 1)[-1] for p in paths})[:8]  # nothing close: what there is


def _outside(path: str, roots) -> bool:
    return not any(path == r or path.startswith(r + ".") for r in roots)


def match_targets(model: nn.Module, targets, exclude=()) -> dict[str, list[str]]:
    """{entry: [matching module paths]} for a tuple of names, or {regex: [...]} for one string.
    Modules inside adapters or inside `exclude` (the saved modules) are never matched."""
    adapted = [p for p, _ in adapters(model)]
    paths = [
        p
        for p, _ in model.named_modules()
        if p and _outside(p, exclude) and not any(p.startswith(a + ".") for a in adapted)
    ]
    if isinstance(targets, str):
        return {targets: [p for p in paths if re.fullmatch(targets, p)]}
    return {t: [p for p in paths if p == t or p.endswith("." + t)] for t in targets}


def resolve_saved(model: nn.Module, names) -> list[str]:
    """Outermost module paths ending with any of `names` (PEFT's modules_to_save rule)."""
    found = []
    for path, _ in model.named_modules():
        if path and any(path.endswith(n) for n in names) and _outside(path, found):
            found.append(path)
    return found


def _check_saved(model: nn.Module, names) -> list[str]:
    found = resolve_saved(model, names)
    for n in names:
        if not any(p.endswith(n) for p in found):
            raise ValueError(
                f"modules_to_save entry {n!r} matches no module; nearest module names: "
                f"{_nearest(model, n)}. Fix the name or drop it from modules_to_save"
            )
    for p in found:
        inner = [q for q, _ in adapters(model) if not _outside(q, [p])]
        if inner:
            raise ValueError(
                f"modules_to_save {p!r} contains adapted layers {inner}; a saved module is "
                "trained whole, so do not also target layers inside it"
            )
    return found


def _check_targets(model: nn.Module, matches: dict[str, list[str]]) -> list[str]:
    paths = []
    for entry, found in matches.items():
        if not found:
            raise ValueError(
                f"target {entry!r} matches no module; nearest module names: "
                f"{_nearest(model, entry)}. Fix the name in the config's targets"
            )
        for p in found:
            m = model.get_submodule(p)
            if isinstance(m, registry.layer_types()):
                raise ValueError(
                    f"{p!r} is already adapted ({type(m).__name__}); a layer takes one adapter. "
                    "Call remove(model) first, or target other layers"
                )
            if not isinstance(m, nn.Linear):
                raise ValueError(
                    f"target {entry!r} matches {p!r}, a {type(m).__name__}, but only nn.Linear "
                    f"is adaptable; nearest nn.Linear names: {_nearest(model, entry, True)}"
                )
            if p not in paths:
                paths.append(p)
    return paths


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _refreeze(model: nn.Module, state: AdapterState) -> None:
    """Everything frozen except adapter vectors/matrices and the saved modules."""
    for p in model.parameters():
        p.requires_grad_(False)
    for _, m in adapters(model):
        for n in m.ADAPTER_PARAMS:
            getattr(m, n).requires_grad_(True)
    for path in state.saved:
        for p in model.get_submodule(path).parameters():
            p.requires_grad_(True)


def inject(model: nn.Module, config) -> list[str]:
    """Adapt the targeted nn.Linear layers in place, freeze the rest, make modules_to_save trainable.
    `config` is any registered config (LoraConfig, IA3Config, ...: minipeft.registry). Returns the
    touched paths: adapted layers (model order), then saved modules."""
    layer_type = registry.layer_for(config)
    state = adapter_state(model)
    saved = _check_saved(model, config.modules_to_save)
    earlier = state.saved if state else ()
    paths = _check_targets(model, match_targets(model, config.targets, exclude=tuple(saved) + earlier))
    if state is None:
        state = AdapterState(requires_grad={n: p.requires_grad for n, p in model.named_parameters()})
        model.__dict__[STATE_ATTR] = state
    for p in paths:
        base = model.get_submodule(p)
        layer = layer_type.from_config(base, p, config)
        _set_module(model, p, layer.train(base.training))  # keep train/eval mode
    state.configs.append(config)
    state.saved = tuple(dict.fromkeys(state.saved + tuple(saved)))
    _refreeze(model, state)
    return paths + [s for s in saved if s not in paths]


def _restore_flags(model: nn.Module, state: AdapterState) -> None:
    for n, p in model.named_parameters():
        if n in state.requires_grad:
            p.requires_grad_(state.requires_grad[n])


def remove(model: nn.Module) -> nn.Module:
    """Take every adapter out in place, putting back the very same base nn.Linear objects and the
    requires_grad flags from before injection. Saved modules keep their (trained) weights."""
    for path, m in adapters(model):
        base = m.base
        if base.weight is not m.weight:  # the Parameter was replaced (e.g. swap_tensors in .to())
            base.weight = m.weight
        if base.bias is not m.bias:
            base.bias = m.bias
        _set_module(model, path, base)
    state = model.__dict__.pop(STATE_ATTR, None)
    if state is not None:
        _restore_flags(model, state)
    return model


def merge(model: nn.Module) -> nn.Module:
    """A new plain model with every adapter folded into its weights (in fp32, cast back once);
    `model` itself is untouched. requires_grad flags are those from before injection."""
    plain = copy.deepcopy(model)
    for path, m in adapters(plain):
        weight, bias = m.merged()
        base = m.base
        base.weight = nn.Parameter(weight, requires_grad=False)
        base.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        _set_module(plain, path, base)
    state = plain.__dict__.pop(STATE_ATTR, None)
    if state is not None:
        _restore_flags(plain, state)
    return plain


@contextlib.contextmanager
def disabled(model: nn.Module):
    """Run the base model alone inside the block: every adapter is bypassed, nothing is changed."""
    mods = [m for _, m in adapters(model)]
    before = [m.disabled for m in mods]
    for m in mods:
        m.disabled = True
    try:
        yield model
    finally:
        for m, flag in zip(mods, before):
            m.disabled = flag

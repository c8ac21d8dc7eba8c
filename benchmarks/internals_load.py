"""Loading what benchmarks.internals analyses: the base weights, saved adapters, a fully fine-tuned model.

Every tensor is keyed by (layer, module), e.g. (3, "attention.self.query"), so an adapter on a
sequence classifier (`bert.encoder.layer.3...`) and a bare fine-tuned encoder (`encoder.layer.3...`)
line up. Every user mistake raises ValueError/KeyError/FileNotFoundError naming the file.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from minipeft import adapters, analysis, load_adapter
from minipeft.audit import MANIFEST_FILE
from minipeft.io import CONFIG_FILE
from models import load_pretrained
from tasks.adapters import load_base_for_adapter, peft_type
from tasks.audit import adapter_head

ARCH_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


@dataclass
class Update:
    """What one fine-tuning run changed, per (layer, module)."""

    name: str  # short label for tables and plots: "r=8 s12", "full s12", a folder name
    kind: str  # LORA | IA3 | FULL
    source: str  # the folder it came from
    rank: int | None = None
    seed: int | None = None
    deltas: dict = field(default_factory=dict)  # (layer, module) -> ΔW (out, in) float64
    base: dict = field(default_factory=dict)  # (layer, module) -> W0 (out, in)
    lora_a: dict = field(default_factory=dict)  # (layer, module) -> A (r, in), LoRA only
    ia3: list = field(default_factory=list)  # ia3_statistics rows, IA3 only
    metrics: dict = field(default_factory=dict)  # test metrics when known

    @property
    def modules(self) -> list[str]:
        return sorted({m for _, m in self.deltas})


def _key(path: str):
    layer, module = analysis.layer_and_module(path)
    return None if layer is None else (layer, module)


def encoder_linears(model: nn.Module) -> dict:
    """(layer, module) -> weight of every nn.Linear inside a numbered layer."""
    out = {}
    for path, m in model.named_modules():
        if isinstance(m, nn.Linear) and _key(path) is not None:
            out[_key(path)] = m.weight.detach()
    return out


def _seed_of(adapter_dir: Path) -> int | None:
    file = adapter_dir / MANIFEST_FILE
    if not file.is_file():
        return None
    prov = json.loads(file.read_text(encoding="utf-8")).get("provenance") or {}
    seed = prov.get("seed", (prov.get("hyperparameters") or {}).get("seed"))
    return int(seed) if isinstance(seed, int) else None


def _named(adapter_dir: Path, err: Exception) -> Exception:
    msg = err.args[0] if err.args else str(err)
    if str(adapter_dir) in str(msg):
        return err
    return type(err)(f"{adapter_dir}: {msg}")


class BaseCache:
    """The base model, loaded once per head shape an adapter needs."""

    def __init__(self, model_dir: Path):
        self.model_dir, self.models = Path(model_dir), {}

    def get(self, head, labels):
        if (head, labels) not in self.models:
            self.models[(head, labels)] = load_base_for_adapter(self.model_dir, head, labels)
        return self.models[(head, labels)]


def _loaded(bases: BaseCache, adapter_dir: Path):
    """(a copy of the base with the adapter loaded, its config); each candidate head in turn
    (tasks.audit.adapter_head: one when the adapter records its task type)."""
    heads, labels = adapter_head(adapter_dir, bases.model_dir)
    for i, head in enumerate(heads):
        model = copy.deepcopy(bases.get(head, labels))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unverified (PEFT-written) adapter is fine here
                return model, load_adapter(model, adapter_dir)
        except (ValueError, KeyError) as e:
            if i == len(heads) - 1:
                raise _named(adapter_dir, e) from None


def load_adapter_update(bases: BaseCache, adapter_dir) -> Update:
    """Load one saved LoRA or IA³ adapter onto a copy of the base and take its ΔW per layer."""
    adapter_dir = Path(adapter_dir)
    kind = peft_type(adapter_dir)
    if kind is None:
        raise FileNotFoundError(
            f"{adapter_dir / CONFIG_FILE}: not found; --adapters takes folders written by "
            "tasks.finetune (<out>/adapter), rank_sweep --keep-adapters or save_adapter"
        )
    if kind not in ("LORA", "IA3"):
        raise ValueError(
            f"{adapter_dir / CONFIG_FILE}: peft_type {kind}; expected LORA or IA3 "
            "(prefix and prompt tuning change no weight matrix, so there is no ΔW to analyse)"
        )
    model, config = _loaded(bases, adapter_dir)
    upd = Update(adapter_dir.name, kind, str(adapter_dir), getattr(config, "r", None), _seed_of(adapter_dir))
    for path, m in adapters(model):
        key = _key(path)
        if key is None:
            continue
        upd.deltas[key] = analysis.delta_weight(m)
        upd.base[key] = m.weight.detach()
        if m.ROLE == "lora":
            upd.lora_a[key] = analysis.lora_factors(m, path)[0]
    upd.ia3 = analysis.ia3_statistics(model)
    return upd


def check_architecture(full_dir: Path, base_dir: Path) -> None:
    """Refuse a fine-tuned model whose config.json describes another architecture than the base."""
    files = [Path(full_dir) / "config.json", Path(base_dir) / "config.json"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found; expected a HuggingFace model folder (config.json)")
    mine, base = (json.loads(f.read_text(encoding="utf-8")) for f in files)
    diff = {k: (mine.get(k), base.get(k)) for k in ARCH_FIELDS if mine.get(k) != base.get(k)}
    if diff:
        raise ValueError(
            f"{files[0]}: another architecture than the base {files[1]} (field: (this, base)) {diff}; "
            "--full-model must be a full fine-tune of --model"
        )


def load_full_update(full_dir, base_dir, base_linears: dict, name: str = "full") -> Update:
    """ΔW = W_ft − W0 of every encoder-layer nn.Linear of a fully fine-tuned model."""
    full_dir = Path(full_dir)
    check_architecture(full_dir, base_dir)
    tuned = encoder_linears(load_pretrained(full_dir, head=None))
    missing = sorted(set(base_linears) - set(tuned))
    if missing:
        raise ValueError(
            f"{full_dir}: no weights for layers {missing[:4]} of the base; another architecture?"
        )
    upd = Update(name, "FULL", str(full_dir), None, _full_seed(full_dir))
    for key, w0 in base_linears.items():
        upd.deltas[key] = analysis.full_delta(tuned[key], w0, f"{full_dir}: {key[1]} of layer {key[0]}")
        upd.base[key] = w0
    return upd


def _full_seed(full_dir: Path) -> int | None:
    for f in (full_dir / "result.json", full_dir.parent / "result.json", full_dir.parent / "metrics.json"):
        if f.is_file():
            doc = json.loads(f.read_text(encoding="utf-8"))
            seed = doc.get("seed", (doc.get("hyperparameters") or {}).get("seed"))
            if isinstance(seed, int):
                return seed
    return None


def load_all(model_dir, adapter_dirs, full_dir) -> tuple[dict, list[Update]]:
    """(base linears by (layer, module), the updates: adapters in the given order, then full)."""
    base_linears = encoder_linears(load_pretrained(model_dir, head=None))
    bases = BaseCache(model_dir)
    updates = [load_adapter_update(bases, d) for d in adapter_dirs]
    if full_dir is not None:
        updates.append(load_full_update(full_dir, model_dir, base_linears))
    names = [u.name for u in updates]
    for u in updates:  # folder names may repeat (several <run>/adapter): use the parent's too
        if names.count(u.name) > 1:
            u.name = f"{Path(u.source).parent.name}/{u.name}"
    return base_linears, updates

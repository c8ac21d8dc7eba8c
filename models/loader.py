"""Load and save HuggingFace BERT folders (config.json + model.safetensors), safetensors only.

Every checkpoint quirk is handled here and nowhere else:
  * keys with or without the `bert.` prefix (BertFor* files have it, BertModel files do not),
  * legacy `LayerNorm.gamma` / `LayerNorm.beta` names,
  * the stray `embeddings.position_ids` buffer of older files,
  * pretraining heads `cls.*` (ignored), `pooler.*` for token classification (ignored),
  * a saved `classifier.*` head: loaded when its shape fits, else a fresh one is initialised (logged).
Anything else missing, unexpected or of the wrong shape is an error naming file, key, expected, found.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.bert import BertForSequenceClassification, BertForTokenClassification, BertModel
from models.config import BertConfig
from models.families import ARCHITECTURES, FAMILIES, Family, family_of

log = logging.getLogger(__name__)

HEADS = {
    None: BertModel,
    "sequence-classification": BertForSequenceClassification,
    "token-classification": BertForTokenClassification,
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
WEIGHTS = "model.safetensors"


def read_safetensors(file: Path) -> dict:
    """All tensors of `file`; a missing, truncated or corrupt file raises naming the file."""
    if not file.exists():
        others = sorted(p.name for p in file.parent.glob("*.bin")) if file.parent.exists() else []
        hint = (
            (
                f" (found {', '.join(others)}: pickle checkpoints are not read; convert them to "
                f"safetensors with transformers' save_pretrained(safe_serialization=True))"
            )
            if others
            else ""
        )
        raise FileNotFoundError(f"{file}: no {file.name}; expected the weights as safetensors{hint}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{file}: not a readable safetensors file ({e}); it may be truncated or "
            f"corrupt, copy or download it again"
        ) from e


def _normalise_key(key: str, prefix: str = "bert") -> str:
    key = key[len(prefix) + 1 :] if key.startswith(prefix + ".") else key
    if key.endswith("LayerNorm.gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith("LayerNorm.beta"):
        key = key[: -len("beta")] + "bias"
    return key


def split_checkpoint(
    tensors: dict, file: Path, drop_pooler: bool, family: Family = FAMILIES["bert"]
) -> tuple[dict, dict]:
    """-> (encoder tensors keyed as the bare model's state_dict, head tensors keyed `classifier.*`
    (and `pre_classifier.*` for DistilBERT))."""
    base, head, renamed_from = {}, {}, {}
    head_prefixes = tuple(m + "." for m in family.head_modules)
    for key, t in tensors.items():
        if key.startswith(family.pretraining) or key.endswith("embeddings.position_ids"):
            continue
        if key.startswith(head_prefixes):
            head[key] = t
            continue
        new = _normalise_key(key, family.prefix)
        if drop_pooler and new.startswith("pooler."):
            continue
        if new in base:
            raise KeyError(
                f"{file}: keys {renamed_from[new]!r} and {key!r} both map to {new!r}; "
                f"the file holds two copies of one tensor"
            )
        base[new], renamed_from[new] = t, key
    return base, head


def load_state(module: nn.Module, tensors: dict, file: Path, prefix: str = "") -> None:
    """Copy `tensors` into `module`, strictly: every key present, none extra, shapes equal."""
    want = module.state_dict()
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    if missing:
        raise KeyError(
            f"{file}: missing {len(missing)} tensor(s), first {prefix}{missing[0]!r} "
            f"(expected shape {tuple(want[missing[0]].shape)}, found no such key); "
            f"is this a BERT checkpoint of the same architecture as config.json?"
        )
    if unexpected:
        raise KeyError(
            f"{file}: {len(unexpected)} unexpected tensor(s), first {unexpected[0]!r} "
            f"(shape {tuple(tensors[unexpected[0]].shape)}); expected only BERT keys "
            f"(embeddings.*, encoder.layer.N.*, pooler.*, classifier.*, cls.*)"
        )
    for key, t in tensors.items():
        if t.shape != want[key].shape:
            raise ValueError(
                f"{file}: tensor {prefix}{key!r} has shape {tuple(t.shape)}, expected "
                f"{tuple(want[key].shape)} from config.json; the weights and config do not match"
            )
    module.load_state_dict(tensors, strict=True, assign=True)  # takes the tensors (meta-built model)


def _num_labels(num_labels: int | None, cfg: BertConfig) -> int:
    if num_labels is not None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        return int(num_labels)
    return cfg.num_labels or 2


def _fresh_pooler_if_absent(encoder: nn.Module, base: dict, file: Path, cfg, seed: int) -> dict:
    """A checkpoint saved without `pooler.*` (e.g. by HF's token classifier) gets a fresh pooler, as HF
    gives it: weight N(0, initializer_range) from the seeded generator, bias 0, with a warning. A file
    holding only part of the pooler still fails in load_state, naming the missing key."""
    want = {k: v for k, v in encoder.state_dict().items() if k.startswith("pooler.")}
    if not want or any(k in base for k in want):
        return base
    gen = torch.Generator().manual_seed(seed)
    fresh = {
        k: torch.zeros(v.shape)
        if k.endswith("bias")
        else torch.empty(v.shape).normal_(0.0, cfg.initializer_range, generator=gen)
        for k, v in sorted(want.items())
    }
    log.warning(
        "%s: no pooler tensors; pooler initialised fresh, N(0, %g) with seed %d (its output, "
        "pooler_output and the sequence-classification head's input, is untrained)",
        file,
        cfg.initializer_range,
        seed,
    )
    return {**base, **{k: t.to(next(iter(base.values())).dtype) for k, t in fresh.items()}}


def _load_head(
    model: nn.Module, head: dict, file: Path, cfg, seed: int, names: tuple = ("classifier",)
) -> bool:
    """Load each saved head module (`classifier`, DistilBERT's `pre_classifier`) when its shapes
    fit, else initialise it; returns True if all were loaded."""
    return all(
        [
            _load_head_module(
                model, name, {k: v for k, v in head.items() if k.startswith(name + ".")}, file, cfg, seed
            )
            for name in names
            if hasattr(model, name)
        ]
    )


def _load_head_module(model: nn.Module, name: str, head: dict, file: Path, cfg, seed: int) -> bool:
    clf = getattr(model, name)
    shapes = {f"{name}.weight": clf.weight.shape, f"{name}.bias": clf.bias.shape}
    if set(head) == set(shapes) and all(head[k].shape == s for k, s in shapes.items()):
        with torch.no_grad():
            clf.weight.copy_(head[f"{name}.weight"])
            clf.bias.copy_(head[f"{name}.bias"])
        log.info("%s: loaded the saved %s head (%d outputs)", file, name, clf.out_features)
        return True
    found = {k: tuple(v.shape) for k, v in head.items()} or "none"
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clf.weight.copy_(torch.empty(clf.weight.shape).normal_(0.0, cfg.initializer_range, generator=gen))
        clf.bias.zero_()
    log.warning(
        "%s: %s head initialised fresh, N(0, %g) with seed %d, for %d outputs "
        "(saved head tensors: %s); train it before use",
        file,
        name,
        cfg.initializer_range,
        seed,
        clf.out_features,
        found,
    )
    return False


def load_pretrained(
    path,
    head: str | None = None,
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> nn.Module:
    """A BertModel (head=None), BertForSequenceClassification or BertForTokenClassification from a
    HuggingFace folder. num_labels: the argument, else len(config id2label), else 2."""
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not known; expected one of {list(HEADS)}")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: not a folder; expected a HuggingFace model folder with config.json and {WEIGHTS}"
        )
    family = family_of(path / "config.json")  # bert, distilbert or mobilebert; others refused
    cfg = family.config.from_json(path / "config.json")
    cfg = replace(cfg, name_or_path=str(path))
    file = path / WEIGHTS
    base, head_tensors = split_checkpoint(
        read_safetensors(file), file, drop_pooler=head == "token-classification", family=family
    )
    base = {k: v.to(dtype) for k, v in base.items()}
    with torch.device("meta"):  # no random init of weights that are overwritten next
        model = (
            family.heads[None](cfg)
            if head is None
            else family.heads[head](cfg, num_labels=_num_labels(num_labels, cfg))
        )
    encoder = model if head is None else getattr(model, family.prefix)
    base = _fresh_pooler_if_absent(encoder, base, file, cfg, seed)
    if head is None:
        if head_tensors:
            log.info("%s: ignoring the saved classifier head (loading the bare encoder)", file)
        load_state(model, base, file)
    else:
        load_state(encoder, base, file, prefix=family.prefix + ".")
        for name in family.head_modules:
            if hasattr(model, name):
                getattr(model, name).to_empty(device="cpu")
        model.head_loaded = _load_head(model, head_tensors, file, cfg, seed, family.head_modules)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    assert not left, f"tensors never loaded nor initialised: {left[:3]}"
    model.name_or_path = str(path)
    return model.to(dtype)


def _architecture(model: nn.Module) -> str:
    name = ARCHITECTURES.get(type(model))
    if name is None:
        raise TypeError(
            f"save_pretrained expects one of {sorted(ARCHITECTURES.values())}, got {type(model).__name__}"
        )
    return name


def _check_plain(model: nn.Module, state: dict) -> None:
    """Refuse models with adapters still injected: the keys must be exactly a fresh model's keys."""
    kwargs = {"num_labels": model.num_labels} if hasattr(model, "num_labels") else {}
    with torch.device("meta"):
        fresh = type(model)(model.config, **kwargs)
    extra = sorted(set(state) - set(fresh.state_dict()))
    missing = sorted(set(fresh.state_dict()) - set(state))
    if extra or missing:
        raise ValueError(
            f"save_pretrained: the model has keys a plain {type(model).__name__} does not "
            f"(first extra {extra[:1]}, first missing {missing[:1]}); merge or remove adapters first"
        )


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_pretrained(model: nn.Module, out_dir, tokenizer_dir=None) -> Path:
    """Write HF's layout (config.json, model.safetensors, tokenizer files from `tokenizer_dir`)
    so that `transformers` loads it unchanged. Each file is written to a temporary name and renamed;
    the weights go first and config.json last, so a folder with a config is complete."""
    arch = _architecture(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    _check_plain(model, state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}  # heads: `bert.` prefix
    _write_atomic(out / WEIGHTS, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    if tokenizer_dir is not None:
        src = Path(tokenizer_dir)
        found = [n for n in TOKENIZER_FILES if (src / n).exists()]
        if not found:
            raise FileNotFoundError(f"{src}: no tokenizer files; expected one of {TOKENIZER_FILES}")
        for name in found:
            _write_atomic(out / name, lambda p, name=name: shutil.copyfile(src / name, p))
    cfg = model.config.to_dict(architectures=[arch])
    cfg.pop("torch_dtype", None)  # a loaded checkpoint's, possibly stale; HF 5 writes `dtype`
    floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
    if floats:
        cfg["dtype"] = str(floats[0]).removeprefix("torch.")  # e.g. "float32", as HF writes it
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    _write_atomic(out / "config.json", lambda p: p.write_text(text))
    return out

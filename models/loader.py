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
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.atomic import replace_dir
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
OWNED = (WEIGHTS, "config.json", "task.json", *TOKENIZER_FILES)  # what save_pretrained may replace


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
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise ValueError(
            f"{file}: not a readable safetensors file ({str(e)[:200]}); it may be truncated or "
            f"corrupt, copy or download it again"
        ) from None
    check_weights(tensors, file)
    return tensors


def check_weights(tensors: dict, file: Path) -> None:
    """Refuse what would give a silently wrong model: integer or bool tensors where our models hold
    floats (every weight; `position_ids`, dropped anyway, excepted) and NaN or inf values."""
    ints = sorted(k for k, t in tensors.items() if not t.is_floating_point() and not k.endswith("_ids"))
    if ints:
        raise ValueError(
            f"{file}: tensor {ints[0]!r} has dtype {tensors[ints[0]].dtype} ({len(ints)} such tensor(s)); "
            "expected floating-point weights. The file was written wrongly: convert it again"
        )
    bad = sorted(k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if bad:
        n = int((~torch.isfinite(tensors[bad[0]])).sum())
        raise ValueError(
            f"{file}: tensor {bad[0]!r} holds {n} NaN/inf value(s) ({len(bad)} tensor(s) affected); "
            "expected finite weights. The checkpoint is damaged or diverged: use another"
        )


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


def _with_label_names(cfg, labels, num_labels: int | None):
    """`cfg` whose id2label/label2id are `labels` (the names save_pretrained writes and HF reads)."""
    labels = tuple(labels)
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct non-empty strings, got {labels!r}")
    if num_labels is not None and num_labels != len(labels):
        raise ValueError(f"num_labels={num_labels} but {len(labels)} labels {labels!r}; pass one of them")
    id2label = dict(enumerate(labels))
    return replace(cfg, id2label=id2label, label2id={v: i for i, v in id2label.items()})


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
    model: nn.Module,
    head: dict,
    file: Path,
    cfg,
    seed: int,
    names: tuple = ("classifier",),
    warn_untrained: bool = True,
) -> bool:
    """Load each saved head module (`classifier`, DistilBERT's `pre_classifier`) when its shapes
    fit, else initialise it; returns True if all were loaded."""
    return all(
        [
            _load_head_module(
                model,
                name,
                {k: v for k, v in head.items() if k.startswith(name + ".")},
                file,
                cfg,
                seed,
                warn_untrained,
            )
            for name in names
            if hasattr(model, name)
        ]
    )


def _load_head_module(
    model: nn.Module, name: str, head: dict, file: Path, cfg, seed: int, warn_untrained: bool = True
) -> bool:
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
    message = (
        f"{file}: {name} head initialised fresh, N(0, {cfg.initializer_range:g}) with seed {seed}, "
        f"for {clf.out_features} outputs (saved head tensors: {found})"
    )
    log.info("%s", message)
    if warn_untrained:
        _warn_if_used_untrained(
            clf, message + "; it is being used untrained: train it or load an adapter first"
        )
    return False


def _warn_if_used_untrained(clf: nn.Module, message: str) -> None:
    """Log `message` as a warning at the first evaluation-mode forward of `clf` if its weights are
    still those drawn at load time. Training them (an optimiser step), load_adapter and
    load_state_dict all write in place, which moves each tensor's version counter, so loading an
    adapter that carries the head, or a sweep that trains it, never sees the warning."""
    drawn = [(n, p, p._version) for n, p in clf.named_parameters()]
    done = False

    def check(module, args):
        nonlocal done
        if done or torch.compiler.is_compiling() or module.training:
            return
        done = True  # once per loaded head (copies made by merge share this closure)
        now = dict(module.named_parameters())
        if all(now.get(n) is p and p._version == v for n, p, v in drawn):
            log.warning("%s", message)

    clf.register_forward_pre_hook(check)


def load_pretrained(
    path,
    head: str | None = None,
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    labels=None,
    warn_untrained_head: bool = True,
) -> nn.Module:
    """A BertModel (head=None), BertForSequenceClassification or BertForTokenClassification from a
    HuggingFace folder. num_labels: the argument, else len(labels), else len(config id2label),
    else 2. labels: the class names, in index order; they become the config's id2label, which
    save_pretrained writes (and so a merged model carries the task's names, not LABEL_0...).
    warn_untrained_head: a head drawn fresh (no saved one fits) warns at its first evaluation-mode
    forward while still untrained; pass False when the caller replaces or redraws it anyway."""
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
    if labels is not None and head is not None:
        cfg = _with_label_names(cfg, labels, num_labels)
        num_labels = len(cfg.id2label)
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
        model.head_loaded = _load_head(
            model, head_tensors, file, cfg, seed, family.head_modules, warn_untrained_head
        )
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


def save_pretrained(model: nn.Module, out_dir, tokenizer_dir=None) -> Path:
    """Write HF's layout (config.json, model.safetensors, tokenizer files from `tokenizer_dir`)
    so that `transformers` loads it unchanged. The folder is written beside `out_dir` and takes its
    place as a whole (models.atomic), so a kill leaves the old folder or the new one; an existing
    `out_dir` holding other files than these (and task.json) is refused."""
    arch = _architecture(model)
    out = Path(out_dir)
    state = model.state_dict()
    _check_plain(model, state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}  # heads: `bert.` prefix
    found = []
    if tokenizer_dir is not None:
        src = Path(tokenizer_dir)
        found = [n for n in TOKENIZER_FILES if (src / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{src}: no tokenizer files; expected one of {TOKENIZER_FILES}")
    cfg = model.config.to_dict(architectures=[arch])
    cfg.pop("torch_dtype", None)  # a loaded checkpoint's, possibly stale; HF 5 writes `dtype`
    floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
    if floats:
        cfg["dtype"] = str(floats[0]).removeprefix("torch.")  # e.g. "float32", as HF writes it
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    with replace_dir(out, OWNED) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        for name in found:
            shutil.copyfile(src / name, tmp / name)
        (tmp / "config.json").write_text(text)
    return out

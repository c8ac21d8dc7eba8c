"""Prefix- and prompt-tuning adapters on disk in HF PEFT's layout.

adapter_config.json: PEFT's PrefixTuningConfig / PromptTuningConfig fields. adapter_model.safetensors:
`prompt_embeddings` ((P, L·2·H) prefix, (P, width) prompt) and every saved head tensor as
`base_model.<path>.<name>` (e.g. base_model.classifier.weight). A PEFT 0.21 prefix/prompt adapter
of a BERT loads here, and ours loads in PEFT. Options that need a projection network or several
transformer submodules are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from minipeft.files import replace_dir, save_tensors, write_text
from minipeft.io import ADAPTER_FILES, CONFIG_FILE, WEIGHTS_FILE, read_adapter_folder
from minipeft.prompt import PrefixConfig, PrefixTuning, PromptConfig, PromptTuning

KEY = "prompt_embeddings"


def _peft_config(wrapper: nn.Module, base_model_name_or_path) -> dict:
    cfg = wrapper.config
    common = dict(
        task_type=cfg.task_type,
        num_virtual_tokens=cfg.num_virtual_tokens,
        token_dim=wrapper.token_dim,
        num_transformer_submodules=1,
        modules_to_save=list(cfg.modules_to_save),
        inference_mode=True,
        base_model_name_or_path=base_model_name_or_path,
        revision=None,
        auto_mapping=None,
    )
    if isinstance(wrapper, PrefixTuning):
        return dict(
            peft_type="PREFIX_TUNING",
            num_layers=wrapper.num_layers,
            num_attention_heads=wrapper.num_heads,
            encoder_hidden_size=wrapper.token_dim,
            prefix_projection=False,
            **common,
        )
    mcfg = getattr(wrapper.base_model, "config", None)
    return dict(
        peft_type="PROMPT_TUNING",
        num_layers=getattr(mcfg, "num_hidden_layers", None),
        num_attention_heads=getattr(mcfg, "num_attention_heads", None),
        prompt_tuning_init="RANDOM",
        prompt_tuning_init_text=None,
        tokenizer_name_or_path=None,
        tokenizer_kwargs=None,
        **common,
    )


def save_prompt(wrapper: nn.Module, out_dir, base_model_name_or_path: str | None = None) -> Path:
    """Write adapter_config.json + adapter_model.safetensors as a whole (minipeft.files.replace_dir:
    a kill leaves the old folder or the new one; a folder holding other files is refused)."""
    if not isinstance(wrapper, (PrefixTuning, PromptTuning)):
        raise TypeError(f"save_prompt expects a PrefixTuning or PromptTuning, got {type(wrapper).__name__}")
    out = Path(out_dir)
    tensors = {KEY: wrapper.prompt_encoder.embedding.weight}
    for path in wrapper.saved:
        for name, t in wrapper.base_model.get_submodule(path).state_dict().items():
            tensors[f"base_model.{path}.{name}"] = t
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if base_model_name_or_path is None:
        base_model_name_or_path = getattr(wrapper.base_model, "name_or_path", None) or None
    text = json.dumps(_peft_config(wrapper, base_model_name_or_path), indent=2, sort_keys=True) + "\n"
    with replace_dir(out, ADAPTER_FILES, "save_prompt") as tmp:
        save_tensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": "pt"})
        write_text(tmp / CONFIG_FILE, text)
    return out


def _refuse(d: dict, file: Path) -> None:
    if d.get("peft_type") not in ("PREFIX_TUNING", "PROMPT_TUNING"):
        raise ValueError(
            f"{file}: peft_type={d.get('peft_type')!r}; load_prompt reads PREFIX_TUNING or "
            f"PROMPT_TUNING (LoRA/IA3 adapters load with minipeft.load_adapter)"
        )
    if d.get("prefix_projection"):
        raise ValueError(
            f"{file}: prefix_projection=true needs PEFT's projection network, which is not "
            f"implemented; train with prefix_projection=false"
        )
    if d.get("num_transformer_submodules", 1) != 1:
        raise ValueError(
            f"{file}: num_transformer_submodules={d['num_transformer_submodules']}; only "
            f"encoder-only models (1) are supported"
        )
    if d.get("task_type", "SEQ_CLS") not in ("SEQ_CLS", "TOKEN_CLS"):
        raise ValueError(f"{file}: task_type={d.get('task_type')!r}; expected SEQ_CLS or TOKEN_CLS")


def _present(model: nn.Module, names) -> tuple[str, ...]:
    """modules_to_save entries that match a module (PEFT lists 'score' too and ignores misses)."""
    paths = [p for p, _ in model.named_modules() if p]
    return tuple(dict.fromkeys(n for n in names if any(p.endswith(n) for p in paths)))


def load_prompt(model: nn.Module, folder) -> nn.Module:
    """Wrap `model` as the adapter in `folder` says and load its tensors; returns the wrapper."""
    folder = Path(folder)
    d, tensors = read_adapter_folder(folder)
    file = folder / CONFIG_FILE
    _refuse(d, file)
    common = dict(
        num_virtual_tokens=int(d["num_virtual_tokens"]),
        task_type=d.get("task_type") or "SEQ_CLS",
        modules_to_save=_present(model, d.get("modules_to_save") or ()),
    )
    if d["peft_type"] == "PREFIX_TUNING":
        wrapper = _prefix_for(model, d, PrefixConfig(**common), file)
    else:
        wrapper = PromptTuning(model, PromptConfig(**common))
        if d.get("token_dim") not in (None, wrapper.token_dim):
            raise ValueError(
                f"{file}: token_dim={d['token_dim']}, but the model's input embeddings are "
                f"{wrapper.token_dim} wide; the adapter belongs to another model"
            )
    _load_tensors(wrapper, tensors, folder / WEIGHTS_FILE)
    return wrapper


def _prefix_for(model: nn.Module, d: dict, config: PrefixConfig, file: Path) -> PrefixTuning:
    cfg = getattr(model, "config", None)
    layers, heads, head_dim = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim
    if (d.get("num_layers"), d.get("token_dim")) != (layers, heads * head_dim):
        raise ValueError(
            f"{file}: num_layers={d.get('num_layers')}, token_dim={d.get('token_dim')}, but the "
            f"model's attention has {layers} layers of {heads}x{head_dim}={heads * head_dim}-wide "
            f"keys (PEFT takes token_dim from hidden_size, which is not the key width for "
            f"MobileBERT); the adapter does not fit this model"
        )
    return PrefixTuning(model, config, layers, heads, head_dim)


def _load_tensors(wrapper: nn.Module, tensors: dict, file: Path) -> None:
    want = {KEY: wrapper.prompt_encoder.embedding.weight}
    for path in wrapper.saved:
        for name, t in wrapper.base_model.get_submodule(path).state_dict(keep_vars=True).items():
            want[f"base_model.{path}.{name}"] = t
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        raise KeyError(
            f"{file}: keys do not match the adapter config: missing {missing[:3]}, unexpected "
            f"{extra[:3]}; expected {sorted(want)[:4]}"
        )
    for key, t in tensors.items():
        if t.shape != want[key].shape:
            raise ValueError(f"{file}: {key} has shape {tuple(t.shape)}, expected {tuple(want[key].shape)}")
    with torch.no_grad():
        for key, t in tensors.items():
            want[key].copy_(t)

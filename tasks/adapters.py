"""Putting a saved adapter onto a freshly loaded base, whatever its method (shared by predict and audit).

LoRA and IA³ go in place (`load_adapter`); prefix and prompt tuning wrap the model (`load_prompt`).
Either way the adapter's manifest, when present, is verified against its files and this base.
"""

from __future__ import annotations

import logging
from pathlib import Path

from minipeft import load_adapter
from minipeft.audit import check_manifest
from minipeft.inject import adapter_state
from minipeft.prompt_io import CONFIG_FILE, WEIGHTS_FILE, load_prompt
from minipeft.reading import read_json_object, read_tensors
from models import load_pretrained

PROMPT_TYPES = ("PREFIX_TUNING", "PROMPT_TUNING")


def read_object(file: Path) -> dict:
    """A JSON file of an adapter folder holding an object, or a ValueError naming it."""
    return read_json_object(file, "write the adapter again")


def peft_type(adapter_dir: Path) -> str | None:
    cfg_file = Path(adapter_dir) / CONFIG_FILE
    return read_object(cfg_file).get("peft_type") if cfg_file.is_file() else None


def is_prompt_adapter(adapter_dir: Path) -> bool:
    return peft_type(adapter_dir) in PROMPT_TYPES


def load_base_for_adapter(model_dir, head: str | None, num_labels: int | None = None, labels=None):
    """load_pretrained without its "head initialised fresh" warning: the adapter brings the head.
    `labels` (names in index order) become the config's id2label."""
    quiet = logging.getLogger("models.loader")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return load_pretrained(
            model_dir, head=head, num_labels=num_labels, labels=labels, warn_untrained_head=False
        )
    finally:
        quiet.setLevel(level)


def attach(model, adapter_dir: Path, allow_base_mismatch: bool = False):
    """(model with the adapter, manifest check record): LoRA/IA3 in place, prefix/prompt as a wrapper."""
    adapter_dir = Path(adapter_dir)
    if not is_prompt_adapter(adapter_dir):
        load_adapter(model, adapter_dir, allow_base_mismatch=allow_base_mismatch)
        state = adapter_state(model)
        return model, state.loaded_from if state else None
    wrapper = load_prompt(model, adapter_dir)
    config = read_object(adapter_dir / CONFIG_FILE)
    return wrapper, check_manifest(
        wrapper, adapter_dir, config, read_tensors(adapter_dir / WEIGHTS_FILE), allow_base_mismatch
    )

"""What tasks.finetune checks before any data or weights load: the numbers of its flags, the length
against the checkpoint's position table, the model folder, and the method's settings.

Each check raises ValueError/FileNotFoundError naming the flag (or file), what it expected, what it
found and the fix; tasks.cli turns that into one line and exit status 2. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from tasks.methods import LOW_RANK_METHODS, PROMPT_METHODS, MethodSpec, resolve_preset
from tasks.registry import SEQ_CLS

POSITIVE = ("epochs", "batch_size", "grad_accum", "patience", "rank", "num_virtual_tokens")


def check_args(args) -> None:
    """Numbers a run cannot use, named by their flag before anything loads."""
    for name in POSITIVE:
        v = getattr(args, name)
        if v is not None and v < 1:  # --rank None: the method's default (tasks.methods.DEFAULT_RANK)
            extra = " (0 would stop after the first epoch)" if name == "patience" else ""
            raise ValueError(f"--{name.replace('_', '-')} {v}: expected a whole number >= 1{extra}")
    for name in ("max_train_examples", "max_eval_examples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} {v}: expected >= 1 (or leave it out)")
    if args.lr is not None and not (args.lr > 0 and args.lr < float("inf")):
        raise ValueError(f"--lr {args.lr}: expected a finite number > 0, e.g. 3e-4")
    if not 0 <= args.warmup_ratio <= 1:
        raise ValueError(f"--warmup-ratio {args.warmup_ratio}: expected a share in [0, 1]")
    if not 0 <= args.weight_decay < float("inf"):
        raise ValueError(f"--weight-decay {args.weight_decay}: expected a finite number >= 0")


def check_max_length(model_dir: Path, max_length: int, virtual_tokens: int = 0) -> None:
    """Refuse a length the position table cannot hold; prefix/prompt tokens take `virtual_tokens`
    positions."""
    cfg_file = model_dir / "config.json"
    limit = read_config(model_dir).get("max_position_embeddings") if cfg_file.is_file() else None
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = None  # load_pretrained names a bad value with its file
    if max_length < 3 or (limit and max_length > limit):
        raise ValueError(
            f"--max-length {max_length}: expected 3..{limit or 512} tokens "
            f"({cfg_file} has max_position_embeddings={limit})"
        )
    if limit and max_length + virtual_tokens > limit:
        raise ValueError(
            f"--max-length {max_length} + --num-virtual-tokens {virtual_tokens} = "
            f"{max_length + virtual_tokens} positions, but {cfg_file} has max_position_embeddings="
            f"{limit}; use --max-length {limit - virtual_tokens} or fewer (the paper: 480 + 10)"
        )


def read_config(model_dir: Path) -> dict:
    from models.hf_config import read_json_object

    return read_json_object(model_dir / "config.json")


def check_loraplus(method: str, ratio) -> None:
    if ratio is None:
        return
    if not ratio > 0:  # also refuses nan
        raise ValueError(
            f"--loraplus-ratio must be > 0 (B's learning rate is ratio x --lr; the paper uses 16), "
            f"found {ratio}; leave it out to train with one learning rate"
        )
    if method not in LOW_RANK_METHODS:
        raise ValueError(
            f"--loraplus-ratio applies to {', '.join(LOW_RANK_METHODS)} (a low-rank pair), not "
            f"--method {method}; drop --loraplus-ratio"
        )


def check_model_dir(model_dir: Path) -> None:
    """The checkpoint's folder and config.json, checked before any data is read."""
    from models.families import family_of

    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"--model {model_dir}: no such folder; expected a HuggingFace model folder (config.json, "
            "model.safetensors, tokenizer files)"
        )
    family_of(model_dir / "config.json").config.from_json(model_dir / "config.json")


def method_spec(args, task, model_dir: Path) -> MethodSpec:
    """The method's settings, checked (lengths, targets, adapter options) before any data is read."""
    prompt = args.method in PROMPT_METHODS
    check_model_dir(model_dir)
    check_max_length(model_dir, args.max_length, args.num_virtual_tokens if prompt else 0)
    preset, targets = resolve_preset(args.targets, model_dir)
    spec = MethodSpec(
        args.method,
        preset,
        args.rank,
        args.alpha,
        args.dropout,
        targets,
        args.feedforward,
        args.num_virtual_tokens,
        "SEQ_CLS" if task.type == SEQ_CLS else "TOKEN_CLS",
        args.init,
    )
    check_loraplus(args.method, args.loraplus_ratio)
    spec.adapter_config(), spec.prompt_config()  # invalid adapter settings fail here
    return spec

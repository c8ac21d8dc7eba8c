"""The one reader for the files commands and load functions take from users: JSON documents and
safetensors weights. Each failure is a ValueError or FileNotFoundError naming the file, what was
expected, and what to do; nothing is half-read into a model. (minipeft.files is the one writer.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def read_json(path, fix: str):
    """The JSON document in `path`; a file that is not UTF-8 JSON raises ValueError naming it, the
    parser's complaint and `fix` (what to do about it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); {fix}") from None


def read_json_object(path, fix: str) -> dict:
    """read_json for a file that must hold an object {...}; anything else raises ValueError naming it."""
    doc = read_json(path, fix)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, found a {type(doc).__name__}; {fix}")
    return doc


def read_tensors(file, *, finite: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file. A missing, truncated or hostile file, or (finite=True)
    a floating-point tensor holding NaN or inf, raises a ValueError/FileNotFoundError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file; expected a safetensors file")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise ValueError(
            f"{file}: not a readable safetensors file ({str(e)[:200]}); it is truncated or corrupt, "
            "copy or write it again"
        ) from None
    if finite:
        bad = {k: t for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()}
        if bad:
            k, t = next(iter(sorted(bad.items())))
            n = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"{file}: tensor {k!r} holds {n} NaN/inf value(s) ({len(bad)} tensor(s) affected); "
                "expected finite weights. The training diverged or the file is damaged: use another"
            )
    return tensors

"""Atomic file writes: write a temporary file in the target's folder, then os.replace it into place.

A reader (or a process killed mid-write) sees either the old file or the complete new one, never a
half-written file. If writing fails, the temporary file is removed and the old file is untouched.
The temporary name is `.<name>.<pid>-<random><suffix>` in the same folder (os.replace is atomic
only within one file system); pass suffix=".png" etc. when the writer infers the format from it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_atomic(path, write: Callable[[Path], None], *, suffix: str = ".tmp", fsync: bool = False) -> Path:
    """Call write(tmp) on a fresh temporary path next to `path`, then rename it to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str, *, newline: str | None = None, fsync: bool = False) -> Path:
    """UTF-8 text; newline="" keeps "\\r\\n" as given (CSV)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)

    return write_atomic(path, write, fsync=fsync)


def write_bytes(path, data: bytes, *, fsync: bool = False) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def write_json(path, obj, *, default: Callable | None = None, fsync: bool = False) -> Path:
    """JSON with indent=2, sorted keys and a trailing newline."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n", fsync=fsync)


def save_tensors(
    path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, *, fsync: bool = False
) -> Path:
    """A safetensors file (tensors must be contiguous CPU tensors, as safetensors requires)."""
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), fsync=fsync)

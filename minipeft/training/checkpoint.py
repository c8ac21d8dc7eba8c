"""Training checkpoints as safetensors + JSON, written atomically, never pickle.

Layout in the run directory:

    checkpoint-<step>.safetensors   trainable tensors `model.<name>`, AdamW moments
                                    `optim.<name>.exp_avg|exp_avg_sq|step`, torch RNG states
                                    `rng.torch` (uint8) and `rng.cuda.<i>`
    checkpoint.json                 step, epoch (epochs completed), position in the epoch, best metric,
                                    its epoch and file, history, python/numpy RNG states, the tensors file
    best-epoch<e>.safetensors       trainable tensors at the best epoch so far (e counts from 1);
                                    best-epoch<e>-step<s> when a mid-epoch evaluation was the best

Every file goes to a temporary name and is renamed into place (os.replace). The tensors file is
written before the JSON that names it, so a kill at any moment leaves checkpoint.json pointing
at a complete, matching tensors file; stale files are deleted only after the JSON moved on.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import torch

from minipeft import files
from minipeft.reading import read_json, read_tensors

FORMAT = "minipeft-train-checkpoint"
NAME = re.compile(r"^checkpoint-\d{8,}\.safetensors$")  # the only files checkpoint.json may name
BEST = re.compile(r"^best-epoch\d{3,}(-step\d{6,})?\.safetensors$")  # -step: eval_every_steps
# 2: best_epoch, history[].epoch and best-epoch<e> files count epochs from 1 (version 1: from 0;
# load_checkpoint upgrades it, so a run killed before the change resumes with the new numbering)
VERSION = 2


def atomic_write_text(path: Path, text: str) -> None:
    files.write_text(path, text, fsync=True)


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    files.save_tensors(path, plain, metadata={k: str(v) for k, v in (metadata or {}).items()})


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA): the generators whose states a checkpoint keeps."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, json) holding torch CPU/CUDA, python and numpy RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}  # uint8
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    js = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, js


def set_rng_states(tensors: dict[str, torch.Tensor], js: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.split(".")[-1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def optimizer_tensors(named: list[tuple[str, torch.nn.Parameter]], optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in named:
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, torch.Tensor):
                out[f"optim.{name}.{key}"] = value
            else:  # a python number (older torch kept `step` as float)
                out[f"optim.{name}.{key}"] = torch.tensor(float(value))
    return out


def load_optimizer_tensors(named, optimizer, tensors: dict[str, torch.Tensor]) -> None:
    for name, p in named:
        prefix = f"optim.{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if state:
            optimizer.state[p] = {k: (v if k == "step" else v.to(p.device)) for k, v in state.items()}


def save_checkpoint(run_dir: Path, named, optimizer, state: dict) -> None:
    """Write checkpoint-<step>.safetensors then checkpoint.json (both atomic), drop older tensors."""
    run_dir = Path(run_dir)
    rng_t, rng_js = rng_states()
    tensors = {f"model.{n}": p for n, p in named}
    tensors.update(optimizer_tensors(named, optimizer))
    tensors.update(rng_t)
    fname = f"checkpoint-{state['step']:08d}.safetensors"
    atomic_save_tensors(run_dir / fname, tensors, {"format": FORMAT, "step": state["step"]})
    doc = dict(state, format=FORMAT, version=VERSION, tensors=fname, rng=rng_js)
    atomic_write_text(run_dir / "checkpoint.json", json.dumps(doc))
    keep = {fname, state.get("best_file")}
    for old in run_dir.glob("checkpoint-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(json state, tensors) of the last checkpoint in run_dir, or None when there is none."""
    path = Path(run_dir) / "checkpoint.json"
    if not path.exists():
        return None
    files.refuse_symlink(path, f"run folder {run_dir}")
    doc = read_json(path, "delete it to start the run over")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(
            f"{path}: expected a {FORMAT} file, found "
            f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r}; "
            f"point out_dir at a training run directory or at an empty one"
        )
    version = doc.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{path}: checkpoint version {version!r} is newer than this minipeft reads "
            f"({VERSION}); resume it with the minipeft that wrote it"
        )
    for key, pattern in (("tensors", NAME), ("best_file", BEST)):
        name = doc.get(key)
        if (name is not None or key == "tensors") and not (isinstance(name, str) and pattern.match(name)):
            raise ValueError(
                f"{path}: {key}={name!r}; expected a file name like {pattern.pattern} in the run "
                f"folder (the file was edited). Delete {path} to start the run over"
            )
    try:
        _upgrade(doc)
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(
            f"{path}: damaged ({type(e).__name__}: {e}); delete it to start the run over"
        ) from None
    tpath = files.safe_child(run_dir, doc["tensors"])
    if not tpath.exists():
        raise FileNotFoundError(
            f"{path} names {tpath.name}, which is missing; delete {path} to start the run over"
        )
    return doc, read_tensors(tpath)


def _upgrade(doc: dict) -> None:
    """Version 1 -> 2 in place: epochs a person reads count from 1. `epoch` (epochs completed) and
    the name of an existing best file stay as they are."""
    if doc.get("version", 1) < 2:
        if doc.get("best_epoch") is not None:
            doc["best_epoch"] += 1
        for row in doc.get("history", []):
            row["epoch"] += 1
        doc["version"] = 2


def restore_trainable(named, tensors: dict[str, torch.Tensor], prefix: str = "model.") -> None:
    """Copy `prefix + name` tensors into the trainable parameters, in place; KeyError if one is absent."""
    missing = [n for n, _ in named if prefix + n not in tensors]
    if missing:
        raise KeyError(
            f"checkpoint lacks trainable tensors {missing[:5]} (of {len(missing)}); the model "
            f"being trained differs from the one that wrote it (other adapter or targets?)"
        )
    with torch.no_grad():
        for n, p in named:
            p.copy_(tensors[prefix + n].to(p.device, p.dtype))


def clean_run_files(run_dir: Path, keep: set[str] = frozenset()) -> None:
    """Remove checkpoint and best-state files of a finished run (keeps names in `keep`)."""
    run_dir = Path(run_dir)
    for pattern in ("checkpoint-*.safetensors", "best-epoch*.safetensors", "checkpoint.json"):
        for f in run_dir.glob(pattern):
            if f.name not in keep:
                f.unlink(missing_ok=True)

"""Accounting for every parameter: roles, counts in the paper's convention, hashes, the base fingerprint.

Roles come from the model's structure, never from name substrings: each adapter layer's
ADAPTER_PARAMS get its class's ROLE (a LoRALinear's `lora_A` / `lora_B` are "lora", an IA3Linear's
`ia3_l` is "ia3", and so on for every type in minipeft.registry), a VirtualTokens table
(prefix/prompt tuning) is "prompt", everything inside a module registered by
inject(modules_to_save=...) or saved by a prefix/prompt wrapper is "head", the rest is "base".
Tensors shared under several names (tied weights) get one row per name, and every later name
points at the first in `shared_with`.
Hashes are SHA-256 of the tensor's raw little-endian bytes, the bytes a safetensors file stores.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from minipeft import registry
from minipeft.inject import adapter_state, adapters, saved_modules
from minipeft.prompt import PrefixTuning, PromptTuning, VirtualTokens
from minipeft.reading import read_json
from minipeft.version import __version__


def adapter_roles() -> tuple[str, ...]:
    """Roles of trained adapter tensors: every registered layer type's, then prefix/prompt tables'."""
    return (*registry.roles(), VirtualTokens.ROLE)


def all_roles() -> tuple[str, ...]:
    """Every role a row can have: base, the adapter roles, head."""
    return ("base", *adapter_roles(), "head")


def tensor_bytes(t: torch.Tensor):
    """The tensor's little-endian bytes as a 1-D uint8 numpy array (a view where possible)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy() if flat.numel() else flat.new_empty(0, dtype=torch.uint8).numpy()
    if sys.byteorder == "big" and flat.element_size() > 1:
        raw = raw.reshape(-1, flat.element_size())[:, ::-1].reshape(-1).copy()
    return raw


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ParamRow:
    name: str  # as in named_parameters() / state_dict()
    kind: str  # "parameter" or "buffer"
    role: str  # one of all_roles(): base | lora | ia3 | ... | prompt | head
    shape: tuple
    dtype: str
    numel: int
    trainable: bool
    sha256: str | None
    shared_with: str | None  # first name of the same tensor, when this one is an alias


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _head_paths(model: nn.Module) -> tuple[str, ...]:
    """inject()'s modules_to_save plus the head a PrefixTuning/PromptTuning wrapper keeps trainable."""
    wrapped = tuple(
        _join(_join(p, "base_model"), s)
        for p, m in model.named_modules()
        if isinstance(m, (PrefixTuning, PromptTuning))
        for s in m.saved
    )
    return tuple(saved_modules(model)) + wrapped


def _adapter_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Adapter layers (minipeft.inject.adapters) and prefix/prompt tables: each has ROLE and
    ADAPTER_PARAMS."""
    return adapters(model) + [(p, m) for p, m in model.named_modules() if isinstance(m, VirtualTokens)]


def roles(model: nn.Module) -> dict[str, str]:
    """Parameter/buffer name -> role, for every name that is not "base"."""
    out = {}
    for path in _head_paths(model):
        sub = model.get_submodule(path)
        for n, _ in list(sub.named_parameters(remove_duplicate=False)) + list(
            sub.named_buffers(remove_duplicate=False)
        ):
            out[f"{path}.{n}"] = "head"
    for path, m in _adapter_modules(model):
        for n in m.ADAPTER_PARAMS:
            key = _join(path, n)
            if key in out:
                raise RuntimeError(f"{key} is both an adapter parameter and inside a saved module")
            out[key] = m.ROLE
        for n in getattr(m, "ADAPTER_BUFFERS", ()):  # frozen adapter buffers (VeRA's pair, PiSSA's A₀ B₀)
            owner, _, leaf = n.rpartition(".")
            if getattr(m.get_submodule(owner) if owner else m, leaf, None) is not None:
                out[_join(path, n)] = m.ROLE
    return out


def param_table(model: nn.Module, buffers: bool = False, hashes: bool = True) -> list[ParamRow]:
    """One row per parameter name (and per buffer name with buffers=True). The roles partition
    named_parameters(); anything else raises."""
    role_of = roles(model)
    named = [("parameter", n, t) for n, t in model.named_parameters(remove_duplicate=False)]
    if buffers:
        named += [("buffer", n, t) for n, t in model.named_buffers(remove_duplicate=False)]
    names = [n for _, n, _ in named]
    every = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    every |= {n for n, _ in model.named_buffers(remove_duplicate=False)}
    stray = sorted(set(role_of) - every)
    if stray or len(set(names)) != len(names):
        raise RuntimeError(
            f"roles do not partition the model's tensors: unknown {stray[:5]}, "
            f"{len(names) - len(set(names))} duplicate names"
        )
    first, rows = {}, []
    for kind, name, t in named:
        alias = first.setdefault(id(t), name)
        digest = None
        if hashes:
            digest = (
                next((r.sha256 for r in rows if r.name == alias), None) if alias != name else tensor_sha256(t)
            )
        rows.append(
            ParamRow(
                name,
                kind,
                role_of.get(name, "base"),
                tuple(t.shape),
                dtype_name(t.dtype),
                t.numel(),
                kind == "parameter" and t.requires_grad,
                digest,
                None if alias == name else alias,
            )
        )
    params = [r for r in rows if r.kind == "parameter"]
    known = all_roles()
    assert sum(sum(r.role == k for r in params) for k in known) == len(params), "roles outside all_roles()"
    return rows


@dataclass(frozen=True)
class ParamSummary:
    """Counts in the paper's convention, each tensor once: adapter parameters as a share of the
    model's own parameters (everything but the adapters, head included), the head separately."""

    adapter: int
    head: int
    model: int  # all non-adapter parameters: base + head
    trainable: int
    by_role: dict

    @property
    def percent(self) -> float:
        return 100.0 * self.adapter / self.model if self.model else 0.0

    def __str__(self) -> str:
        return (
            f"adapter params: {self.adapter:,} ({self.percent:.3f}% of {self.model:,} model params) | "
            f"head: {self.head:,} | trainable: {self.trainable:,}"
        )


def summary(model: nn.Module) -> ParamSummary:
    rows = [r for r in param_table(model, hashes=False) if r.shared_with is None]
    by_role = {k: sum(r.numel for r in rows if r.role == k) for k in all_roles()}
    adapter = sum(by_role[k] for k in adapter_roles())
    return ParamSummary(
        adapter=adapter,
        head=by_role["head"],
        model=by_role["base"] + by_role["head"],
        trainable=sum(r.numel for r in rows if r.trainable),
        by_role=by_role,
    )


def _excluded(model: nn.Module) -> tuple[set, tuple]:
    names = {_join(p, n) for p, m in _adapter_modules(model) for n in m.ADAPTER_PARAMS}
    return names, tuple(p + "." for p in _head_paths(model))


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of the base: name, dtype, shape and little-endian bytes of every state_dict entry
    that is neither an adapter tensor nor inside a modules_to_save module, in sorted name order.
    A prefix/prompt wrapper's `base_model.` prefix is dropped from the names, so one base with one
    head gives the same fingerprint under LoRA, IA3, prefix and prompt tuning."""
    skip, saved = _excluded(model)
    wrapper = isinstance(model, (PrefixTuning, PromptTuning))
    kept = {
        (n.removeprefix("base_model.") if wrapper else n): t
        for n, t in model.state_dict(keep_vars=True).items()
        if not (n in skip or n.startswith(saved))
    }
    h = hashlib.sha256()
    for name, t in sorted(kept.items()):
        raw = tensor_bytes(t)
        head = f"{name}\0{dtype_name(t.dtype)}\0{list(t.shape)}\0".encode()
        h.update(struct.pack("<Q", len(head)) + head + struct.pack("<Q", raw.nbytes))
        h.update(raw)
    return h.hexdigest()


# ---- the adapter manifest: adapter_manifest.json beside PEFT's two files ----------------------------

MANIFEST_FILE = "adapter_manifest.json"
MANIFEST_FORMAT = "minipeft.adapter_manifest/1"
SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sorted_lists(obj):
    if isinstance(obj, dict):
        return {k: _sorted_lists(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return sorted((_sorted_lists(v) for v in obj), key=canonical_json)
    return obj


def config_sha256(config: dict) -> str:
    """SHA-256 of adapter_config.json's meaning: lists sorted (PEFT writes sets in hash order),
    peft_version dropped, keys sorted, compact separators."""
    body = {k: v for k, v in config.items() if k != "peft_version"}
    return hashlib.sha256(canonical_json(_sorted_lists(body)).encode()).hexdigest()


def manifest_sha256(manifest: dict) -> str:
    """SHA-256 of the manifest without its own `manifest_sha256` field (detects edits, not forgery)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def build_manifest(
    model: nn.Module, config: dict, tensors: dict, provenance: dict | None = None, adapter: dict | None = None
) -> dict:
    """`adapter` records what the file alone cannot say, e.g. {"type": "lora", "init": "pissa",
    "rank": 8, "saved_as": ...} when a PiSSA/OLoRA adapter was converted to a plain rank-2r LoRA."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "minipeft_version": __version__,
        "torch_version": torch.__version__,
        "base_fingerprint": fingerprint(model),
        "config_sha256": config_sha256(config),
        "tensors": {
            k: {
                "dtype": SAFETENSORS_DTYPES.get(t.dtype, dtype_name(t.dtype)),
                "shape": list(t.shape),
                "sha256": tensor_sha256(t),
            }
            for k, t in sorted(tensors.items())
        },
        "provenance": provenance,
    }
    if adapter is not None:
        manifest["adapter"] = adapter
    json.dumps(manifest)  # provenance must be plain JSON: fail here, before anything is written
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    return manifest


def _check_shape(manifest, file: Path) -> None:
    """The manifest's structure, before any field is used: a hostile file fails here, by name."""
    if not isinstance(manifest, dict):
        raise ValueError(f"{file}: expected a JSON object, found a {type(manifest).__name__}")
    for key, kind in (("base_fingerprint", str), ("config_sha256", str), ("tensors", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(
                f"{file}: field {key!r} is {type(manifest.get(key)).__name__}, expected {kind.__name__}; "
                "the manifest is damaged or was edited. Save the adapter again"
            )
    for k, entry in manifest["tensors"].items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "sha256"} <= set(entry):
            raise ValueError(
                f"{file}: tensors[{k!r}] lacks dtype/shape/sha256; the manifest is damaged or was edited"
            )


def _verify(manifest: dict, config: dict, tensors: dict, file: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{file}: format={found!r}, expected {MANIFEST_FORMAT!r}; not a minipeft manifest")
    if manifest.get("manifest_sha256") != manifest_sha256(manifest):
        raise ValueError(
            f"{file}: the manifest was edited after it was written (its manifest_sha256 does not "
            "match its content); do not trust this adapter's provenance"
        )
    if manifest["config_sha256"] != config_sha256(config):
        raise ValueError(
            f"{file}: adapter_config.json does not match the manifest's config_sha256; the "
            "configuration was changed after saving"
        )
    listed = manifest["tensors"]
    if set(listed) != set(tensors):
        raise ValueError(
            f"{file}: tensors differ from the manifest: missing {sorted(set(listed) - set(tensors))}, "
            f"unlisted {sorted(set(tensors) - set(listed))}"
        )
    for k, t in sorted(tensors.items()):
        dtype = SAFETENSORS_DTYPES.get(t.dtype, dtype_name(t.dtype))
        if tensor_sha256(t) != listed[k]["sha256"] or [list(t.shape), dtype] != [
            listed[k]["shape"],
            listed[k]["dtype"],
        ]:
            raise ValueError(
                f"{file}: tensor {k} does not match its SHA-256 in the manifest; the adapter "
                "file is corrupted or was tampered with. Refusing to load it"
            )


def check_manifest(
    model: nn.Module, in_dir: Path, config: dict, tensors: dict, allow_base_mismatch: bool = False
) -> dict:
    """Verify an adapter folder against its manifest and `model` (already injected). Records the
    outcome on the model's AdapterState.loaded_from, for the audit report, and returns it."""
    file = Path(in_dir) / MANIFEST_FILE
    record = {
        "adapter_dir": str(in_dir),
        "manifest": None,
        "verified": False,
        "provenance": None,
        "base_fingerprint": fingerprint(model),
        "base_mismatch": False,
    }
    if not file.is_file():
        warnings.warn(
            f"{in_dir}: no {MANIFEST_FILE}; the adapter is unverified (written by PEFT or an older "
            "minipeft): its tensors and base model cannot be checked",
            stacklevel=2,
        )
    else:
        manifest = read_json(file, "save the adapter again")
        if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
            _check_shape(manifest, file)
        _verify(manifest, config, tensors, file)
        record.update(
            manifest=str(file),
            verified=True,
            provenance=manifest.get("provenance"),
            adapter=manifest.get("adapter"),
            expected_base_fingerprint=manifest["base_fingerprint"],
        )
        if manifest["base_fingerprint"] != record["base_fingerprint"]:
            if not allow_base_mismatch:
                raise ValueError(
                    f"{file}: the adapter was trained on another base model (base fingerprint "
                    f"{manifest['base_fingerprint'][:16]}..., "
                    f"this model {record['base_fingerprint'][:16]}...). "
                    "Load the right base (in the dtype it was saved from), or pass allow_base_mismatch=True "
                    "to override (recorded)"
                )
            warnings.warn(
                f"{file}: base fingerprint mismatch overridden by allow_base_mismatch=True", stacklevel=2
            )
            record["base_mismatch"] = True
    state = adapter_state(model)
    if state is not None:
        state.loaded_from = record
    return record

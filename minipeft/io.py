"""Adapters on disk in HF PEFT's layout: adapter_config.json + adapter_model.safetensors (+ our
adapter_manifest.json, which PEFT ignores).

Keys are PEFT's: `base_model.model.<path>.lora_A.weight` (r, in), `.lora_B.weight` (out, r),
`base_model.model.<path>.ia3_l` as (out, 1) or, for feed-forward targets, (1, in), and each
modules_to_save module's state dict as `base_model.model.<path>.<name>`. A file written here loads
in PEFT 0.21 and one written by PEFT loads here; PEFT options that would change the math and are
not implemented are refused by name instead of being silently ignored.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from minipeft import audit, registry
from minipeft.adapter import module_names
from minipeft.files import replace_dir, save_tensors, write_json
from minipeft.inject import adapter_state, adapters, inject, remove, resolve_saved, saved_modules
from minipeft.reading import read_json_object, read_tensors

PREFIX = "base_model.model."
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TASK_TYPES = (None, "SEQ_CLS", "TOKEN_CLS", "FEATURE_EXTRACTION")
# what save_adapter may replace in an existing folder (tasks.finetune adds task.json beside them)
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, audit.MANIFEST_FILE, "task.json")

# Fields of PEFT's configs that must be empty/false/none, unless the adapter type reads them (its
# PEFT_REQUIRED / PEFT_OPTIONAL / PEFT_MARKERS): each one changes the math or the layout.
MUST_BE_EMPTY = (
    "use_dora",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "lora_bias",
    "exclude_modules",
    "layer_replication",
    "megatron_config",
    "target_parameters",
    "trainable_token_indices",
    "use_qalora",
    "use_bdlora",
    "alora_invocation_tokens",
    "arrow_config",
    "kasa_config",
    "monteclora_config",
    "velora_config",
    "loftq_config",
    "fan_in_fan_out",
)
HARMLESS = {
    "peft_type",
    "task_type",
    "inference_mode",
    "base_model_name_or_path",
    "revision",
    "peft_version",
    "auto_mapping",
    "layers_pattern",
    "megatron_core",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "qalora_group_size",
    "ensure_weight_tying",
    "runtime_config",
    "init_ia3_weights",
    "init_lora_weights",
    "bias",
    "modules_to_save",
}


def _reads(layer_type) -> set[str]:
    """The PEFT config fields an adapter type reads."""
    return {*layer_type.PEFT_REQUIRED, *layer_type.PEFT_OPTIONAL, *layer_type.PEFT_MARKERS}


def peft_config(config, task_type=None, base_model_name_or_path=None) -> dict:
    """The adapter_config.json PEFT 0.21 would write for this configuration."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type={task_type!r} is not one of {TASK_TYPES}")
    common = {
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "exclude_modules": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": sorted(config.modules_to_save) or None,
        "revision": None,
        "target_modules": module_names(config.targets),
        "task_type": task_type,
    }
    layer_type = registry.layer_for(config)
    return {**common, "peft_type": layer_type.PEFT_TYPE, **layer_type.peft_config(config)}


def _refuse(d: dict, file: Path, layer_type) -> None:
    for k in MUST_BE_EMPTY:
        if d.get(k) and k not in _reads(layer_type):
            raise ValueError(
                f"{file}: {k}={d[k]!r} is not supported by minipeft (it changes the adapter's "
                f"math or layout); expected it empty/false. Re-train without {k}"
            )
    if d.get("bias", "none") != "none":
        raise ValueError(
            f"{file}: bias={d['bias']!r} is not supported; expected 'none' (trained biases "
            "of the base would be needed). Re-train with bias='none'"
        )


def config_from_peft(d: dict, file: Path, model: nn.Module | None = None):
    """A registered config (LoraConfig, IA3Config, ...) from PEFT's JSON, through the adapter type
    that reads d's peft_type. Unknown fields warn; unsupported ones raise; with a model,
    modules_to_save entries that match nothing (PEFT's automatic "score") are skipped."""
    layer_type = registry.layer_for_peft_type(d, file)
    _refuse(d, file, layer_type)
    own = _reads(layer_type)
    unknown = sorted(set(d) - own - HARMLESS - set(MUST_BE_EMPTY))
    if unknown:
        warnings.warn(
            f"{file}: ignoring unknown config fields {unknown} (written by a newer PEFT?)", stacklevel=2
        )
    missing = sorted(f for f in layer_type.PEFT_REQUIRED if d.get(f) is None)
    if missing:
        raise KeyError(
            f"{file}: missing {missing}; minipeft needs them explicitly (PEFT's per-model "
            "defaults are not guessed). Add them to the config"
        )
    saved = list(d.get("modules_to_save") or [])
    if model is not None:
        skip = [n for n in saved if not resolve_saved(model, [n])]
        if skip:
            warnings.warn(
                f"{file}: modules_to_save {skip} match no module of this model; skipped", stacklevel=2
            )
        saved = [n for n in saved if n not in skip]
    return layer_type.config_from_peft(d, file, tuple(saved))


def adapter_tensors(model: nn.Module, loading: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor an adapter file holds, under PEFT's keys and in PEFT's shapes: what save_adapter
    writes, or with loading=True what a file loading into the model holds (a layer's optional
    `peft_expected`; it differs for pissa/olora, saved converted to rank 2r but read at rank r).
    Tensors shared by several layers (VeRA's pair, `peft_shared_tensors`) appear once."""
    out = {}
    for path, m in adapters(model):
        own = m.peft_expected() if loading and hasattr(m, "peft_expected") else m.peft_tensors()
        for name, t in own.items():
            out[f"{PREFIX}{path}.{name}"] = t
        if hasattr(m, "peft_shared_tensors"):
            out.update(m.peft_shared_tensors())
    for path in saved_modules(model):
        for n, t in model.get_submodule(path).state_dict(keep_vars=True).items():
            out[f"{PREFIX}{path}.{n}"] = t
    return out


def _the_config(model: nn.Module):
    state = adapter_state(model)
    if state is None or not adapters(model):
        raise ValueError("save_adapter: the model has no adapters; call inject(model, config) first")
    if len(state.configs) != 1:
        raise ValueError(
            f"save_adapter: the model holds {len(state.configs)} injected configs; a PEFT "
            "adapter folder describes one. Save after a single inject()"
        )
    return state.configs[0]


def _adapter_record(config) -> dict:
    """The manifest's `adapter` entry: the layer type, plus what its optional `manifest_record`
    adds (what the PEFT files cannot show, e.g. a PiSSA init saved as a plain LoRA)."""
    layer_type = registry.layer_for(config)
    record = {"type": layer_type.ROLE, "config": type(config).__name__}
    if hasattr(layer_type, "manifest_record"):
        record.update(layer_type.manifest_record(config))
    return record


def model_task_type(model: nn.Module) -> str | None:
    """PEFT's task_type for a model with a task head (by its class, as HF names them), else None."""
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    return None


def save_adapter(
    model: nn.Module,
    out_dir,
    task_type: str | None = None,
    base_model_name_or_path: str | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write adapter_model.safetensors, adapter_config.json and adapter_manifest.json into out_dir
    as a whole: the three files go to a new folder beside out_dir, which then replaces out_dir in
    one step (minipeft.files.replace_dir), so a kill leaves the old adapter or the new one. An
    existing out_dir holding other files is refused. task_type defaults to the model's head
    (SEQ_CLS/TOKEN_CLS), base_model_name_or_path to the model's `name_or_path`, if any."""
    config = _the_config(model)
    out = Path(out_dir)
    name = base_model_name_or_path or getattr(model, "name_or_path", None) or None
    cfg = peft_config(config, task_type or model_task_type(model), name)
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in adapter_tensors(model).items()}
    manifest = audit.build_manifest(model, cfg, tensors, provenance, _adapter_record(config))
    with replace_dir(out, ADAPTER_FILES, "save_adapter") as tmp:
        save_tensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, cfg)
        write_json(tmp / audit.MANIFEST_FILE, manifest)
    return out


def read_adapter_folder(in_dir: Path) -> tuple[dict, dict]:
    """(adapter_config.json as a dict, the tensors of adapter_model.safetensors) of a PEFT-layout
    folder, for every adapter type (minipeft.prompt_io too); missing or damaged files raise naming them."""
    cfg_file, weights = in_dir / CONFIG_FILE, in_dir / WEIGHTS_FILE
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f}: not found; an adapter folder holds {CONFIG_FILE} and {WEIGHTS_FILE} "
                "(written by save_adapter or PEFT's save_pretrained)"
            )
    return read_json_object(cfg_file, "write the adapter again"), read_tensors(weights)


def _check_tensors(model: nn.Module, found: dict, file: Path) -> dict:
    expected = adapter_tensors(model, loading=True)
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"{file}: keys do not match the injected adapter; missing {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}. Is this adapter for this model class?"
        )
    for k, t in expected.items():
        if t.is_floating_point() and not found[k].is_floating_point():
            raise ValueError(
                f"{file}: {k} has dtype {found[k].dtype}, expected floating point; the file was "
                "written by another program or edited. Save the adapter again"
            )
        if tuple(found[k].shape) != tuple(t.shape):
            raise ValueError(
                f"{file}: {k} has shape {tuple(found[k].shape)}, the model expects "
                f"{tuple(t.shape)}; the adapter was trained on a model of another size"
            )
    return expected


@torch.no_grad()
def _copy_in(model: nn.Module, found: dict) -> None:
    for path, m in adapters(model):
        own = m.peft_expected() if hasattr(m, "peft_expected") else m.peft_tensors()
        m.load_peft_tensors({name: found[f"{PREFIX}{path}.{name}"] for name in own})
        if hasattr(m, "peft_shared_tensors") and m.peft_shared_tensors():
            m.load_peft_shared(found)
    for path in saved_modules(model):
        for n, t in model.get_submodule(path).state_dict(keep_vars=True).items():
            t.copy_(found[f"{PREFIX}{path}.{n}"])


def load_adapter(model: nn.Module, in_dir, allow_base_mismatch: bool = False):
    """Inject what in_dir's config says into `model` (which must hold no adapters), check the
    tensors against the manifest and the model's base fingerprint, and load them. On any error the
    model is given back unchanged. Returns the config (LoraConfig, IA3Config, ...)."""
    in_dir = Path(in_dir)
    d, found = read_adapter_folder(in_dir)
    if adapters(model):
        raise ValueError(
            f"load_adapter({in_dir}): the model already holds adapters; call remove(model) first"
        )
    config = config_from_peft(d, in_dir / CONFIG_FILE, model)
    inject(model, config)
    try:
        _check_tensors(model, found, in_dir / WEIGHTS_FILE)
        audit.check_manifest(model, in_dir, d, found, allow_base_mismatch)
        _copy_in(model, found)
    except BaseException:
        remove(model)
        raise
    return config

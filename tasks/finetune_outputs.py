"""The run folder of tasks.finetune: who may use --out, and how the outputs reach it.

--out must be new, empty, or an unfinished run of this program with the same settings (run.json
records them; a restart with the same --out resumes from the last checkpoint). The outputs are
written whole or not at all: the adapter or model folder replaces an earlier one as a whole
(minipeft.files.replace_dir), then task.json and metrics.json; only then is the run marked finished
and its checkpoints deleted, so a kill at any point either resumes or finds the run done.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import load_file

import minipeft
from minipeft import files
from minipeft.audit import MANIFEST_FILE, build_manifest
from minipeft.prompt_io import CONFIG_FILE, WEIGHTS_FILE, save_prompt
from minipeft.training.checkpoint import clean_run_files
from models import save_pretrained
from tasks.methods import ADAPTER_METHODS, PROMPT_METHODS
from tasks.registry import SEQ_CLS

RUN_MARKER = "run.json"
PROGRAM = "tasks.finetune"
# flags that may change between a killed run and its resumption (they change no result)
RESUME_FREE = ("out", "device", "no_progress", "checkpoint_every")


def write_json(path: Path, doc: dict) -> None:
    files.write_json(path, doc, default=str)


def run_settings(args) -> dict:
    """The settings run.json records; a resumption must repeat them."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in RESUME_FREE}


def check_out(out: Path, args, claim: bool) -> None:
    """--out must be new, empty, or this program's unfinished run with the same settings;
    claim=True writes run.json (after the inputs were checked), claim=False only checks."""
    doc = files.read_marker(out, RUN_MARKER) if out.is_dir() and not out.is_symlink() else None
    if doc and doc.get("finished"):
        raise FileExistsError(
            f"{out / RUN_MARKER}: that run is finished (its outputs and metrics.json are on disk); "
            "choose another --out"
        )
    files.claim_dir(out, program=PROGRAM, settings=run_settings(args), marker=RUN_MARKER, dry_run=not claim)


def save_prompt_adapter(wrapper, target: Path, model_dir: Path, provenance: dict) -> Path:
    """save_prompt's PEFT files plus the adapter_manifest.json that save_adapter writes for LoRA/IA3
    (tensor hashes, config hash, base fingerprint, provenance), built from the files as written."""
    save_prompt(wrapper, target, base_model_name_or_path=str(model_dir))
    config = json.loads((target / CONFIG_FILE).read_text())
    manifest = build_manifest(
        wrapper,
        config,
        load_file(str(target / WEIGHTS_FILE)),
        json.loads(json.dumps(provenance, default=str)),
    )
    write_json(target / MANIFEST_FILE, manifest)
    return target


def save_model(
    model, method: str, out: Path, model_dir: Path, task, labels, provenance: dict, task_doc
) -> Path:
    """The adapter (lora/ia3/prefix/prompt) or the whole model in HF layout (full/frozen), with
    task.json inside; the folder replaces an earlier one as a whole (minipeft.files.replace_dir)."""
    if method in ADAPTER_METHODS or method in PROMPT_METHODS:
        target = out / "adapter"
        with files.replace_dir(target, minipeft.io.ADAPTER_FILES, PROGRAM) as tmp:
            if method in PROMPT_METHODS:
                save_prompt_adapter(model, tmp, model_dir, provenance)
            else:
                kind = "SEQ_CLS" if task.type == SEQ_CLS else "TOKEN_CLS"
                minipeft.save_adapter(model, tmp, task_type=kind, provenance=provenance)
            write_json(tmp / "task.json", task_doc)
        return target
    target = out / "model"
    cfg = model.config
    if dataclasses.is_dataclass(cfg) and {"id2label", "label2id"} <= {
        f.name for f in dataclasses.fields(cfg)
    }:
        model.config = dataclasses.replace(
            cfg, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)}
        )
    save_pretrained(model, target, tokenizer_dir=model_dir)
    write_json(target / "task.json", task_doc)
    return target


def write_outputs(model, args, out: Path, model_dir: Path, task, labels, doc: dict, provenance: dict) -> None:
    """The adapter/model folder (task.json inside), task.json, metrics.json; then the run is marked
    finished and only then are its checkpoints deleted: a kill at any point resumes or is done."""
    task_doc = {
        "task": task.name,
        "type": task.type,
        "labels": list(labels),
        "max_length": args.max_length,
        "label_alignment": args.label_alignment,
        "method": args.method,
        "base_model": str(model_dir),
    }
    save_model(model, args.method, out, model_dir, task, labels, provenance, task_doc)
    write_json(out / "task.json", task_doc)
    write_json(out / "metrics.json", doc)
    files.mark_finished(out, RUN_MARKER, ended=doc["ended"])
    clean_run_files(out)

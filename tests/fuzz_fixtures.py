"""Small, consistent inputs the fuzzing suite breaks: a micro BERT with its own 64-token vocabulary
(so tokenizer and embeddings agree), a LoRA adapter for it as tasks.finetune writes one, and the
synthetic MIMIC data. Session fixtures are read-only; a case copies what it mutates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from synthetic_tasks import WORDS, write_mimic

import models
from minipeft import LoraConfig, inject, save_adapter

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + list(WORDS) + [f"marker{i}" for i in range(4)] + list("abcdefghijklmnopqrstuvwxyz")
VOCAB += [f"tok{i}" for i in range(64 - len(VOCAB))]
MICRO = dict(
    vocab_size=64,
    hidden_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=32,
)


def write_micro(folder: Path, seed: int = 0) -> Path:
    """A BertModel of MICRO sizes (seeded) with vocab.txt and tokenizer_config.json."""
    tok = folder.parent / f".{folder.name}-tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (tok / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 32}))
    torch.manual_seed(seed)
    model = models.BertModel(models.BertConfig(**MICRO))
    models.bert.init_weights(model, 0.02)
    return models.save_pretrained(model, folder, tokenizer_dir=tok)


def write_adapter(folder: Path, model_dir: Path) -> Path:
    """LoRA r=2 on query,value + the classifier, lora_B nonzero, with the task.json of mimic-mp."""
    model = models.load_pretrained(model_dir, head="sequence-classification", num_labels=2)
    inject(model, LoraConfig(r=2, alpha=2, targets=("query", "value"), modules_to_save=("classifier",)))
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "lora_B"):
                m.lora_B.normal_()
    save_adapter(model, folder, task_type="SEQ_CLS", provenance={"base_model": str(model_dir), "seed": 0})
    task = {"task": "mimic-mp", "type": "seq-cls", "labels": ["0", "1"], "max_length": 16}
    (folder / "task.json").write_text(json.dumps({**task, "base_model": str(model_dir)}))
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """{"model", "other_model", "adapter", "data", "notes"}: read-only originals."""
    root = tmp_path_factory.mktemp("corpus")
    model = write_micro(root / "model")
    notes = root / "notes.csv"
    notes.write_text('id,text\n1,"fever and cough"\n2,"stable, renal marker1"\n', encoding="utf-8")
    return {
        "model": model,
        "other_model": write_micro(root / "other", seed=1),
        "adapter": write_adapter(root / "adapter", model),
        "data": write_mimic(root / "data", "mp"),
        "notes": notes,
    }


def copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return dst


def rewrite_json(path: Path, edit) -> None:
    """path's JSON replaced by edit(doc) (edit may return a new object or mutate and return None)."""
    doc = json.loads(path.read_text())
    new = edit(doc)
    path.write_text(json.dumps(doc if new is None else new))


def safetensors_parts(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_safetensors(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)

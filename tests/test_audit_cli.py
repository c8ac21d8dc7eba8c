"""python -m tasks.audit: report contents, trainable count == parameters that received gradients."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_audit import Tied

from minipeft import LoraConfig, inject, load_adapter, param_table, save_adapter
from tasks.audit import main, totals

models = pytest.importorskip("models")
ROOT = Path(__file__).resolve().parent.parent
SHAPE = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24)


def _base_dir(path, seed=0):
    torch.manual_seed(seed)
    model = models.BertForSequenceClassification(models.BertConfig(**SHAPE), num_labels=3)
    models.bert.init_weights(model, 0.02)
    return models.save_pretrained(model, path)


def _adapter(tmp_path):
    model_dir = _base_dir(tmp_path / "base")
    model = models.load_pretrained(model_dir, head="sequence-classification", num_labels=3)
    inject(model, LoraConfig(r=2, targets=("query", "value"), modules_to_save=("classifier",)))
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.lora_B.normal_()
    save_adapter(model, tmp_path / "adapter", task_type="SEQ_CLS", provenance={"seed": 7, "task": "toy"})
    return model_dir, tmp_path / "adapter"


def _grad_count(model_dir, adapter_dir):
    model = models.load_pretrained(model_dir, head="sequence-classification", num_labels=3)
    load_adapter(model, adapter_dir)
    ids = torch.randint(1, 60, (2, 5))
    F.cross_entropy(
        model(input_ids=ids, attention_mask=torch.ones_like(ids)), torch.tensor([0, 2])
    ).backward()
    return sum(p.numel() for p in model.parameters() if p.grad is not None)


def test_json_report_accounts_for_everything(tmp_path):
    model_dir, adapter_dir = _adapter(tmp_path)
    rep = main(
        [
            "--model",
            str(model_dir),
            "--adapter",
            str(adapter_dir),
            "--format",
            "json",
            "--out",
            str(tmp_path / "audit.json"),
        ]
    )
    assert json.loads((tmp_path / "audit.json").read_text()) == json.loads(json.dumps(rep))
    assert rep["summary"]["trainable"] == _grad_count(model_dir, adapter_dir)
    assert rep["summary"]["adapter"] == 2 * 2 * 2 * (16 + 16) and rep["summary"]["head"] == 16 * 3 + 3
    check = rep["adapter_check"]
    assert (
        check["verified"] and not check["base_mismatch"] and check["provenance"] == {"seed": 7, "task": "toy"}
    )
    manifest = json.loads((adapter_dir / "adapter_manifest.json").read_text())
    assert rep["base_fingerprint"] == manifest["base_fingerprint"]
    roles = {r["role"] for r in rep["tensors"]}
    assert roles == {"base", "lora", "head"}
    assert sum(v["numel"] for v in rep["totals"].values()) == sum(r["numel"] for r in rep["tensors"])


def test_markdown_report_and_base_mismatch(tmp_path, capsys):
    model_dir, adapter_dir = _adapter(tmp_path)
    other = _base_dir(tmp_path / "other", seed=1)
    with pytest.raises(SystemExit) as stop:
        main(["--model", str(other), "--adapter", str(adapter_dir), "--out", str(tmp_path / "a.md")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "another base model" in err
    assert str(adapter_dir / "adapter_manifest.json") in err and not (tmp_path / "a.md").exists()
    main(
        [
            "--model",
            str(other),
            "--adapter",
            str(adapter_dir),
            "--allow-base-mismatch",
            "--out",
            str(tmp_path / "a.md"),
        ]
    )
    md = (tmp_path / "a.md").read_text()
    assert "BASE MISMATCH overridden" in md and "expected base fingerprint" in md
    assert "- provenance:\n  - seed: `7`\n  - task: `toy`\n" in md  # one field a line
    assert "| parameter:lora |" in md and "| `classifier.weight` | parameter | head |" in md


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_cli_runs_as_a_module(tmp_path):
    model_dir, adapter_dir = _adapter(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "tasks.audit", "--model", str(model_dir), "--adapter", str(adapter_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("# Audit:") and "verified (tensors and base)" in out.stdout


def test_audit_without_model_or_task_type(tmp_path):
    """The README's snippet: save_adapter on a sequence classifier, no task_type passed: the head is
    written (SEQ_CLS), and when it is missing the `bert.` keys give it; --model comes from the manifest."""
    model_dir = _base_dir(tmp_path / "base")
    model = models.load_pretrained(model_dir, head="sequence-classification", num_labels=3)
    inject(model, LoraConfig(r=2, targets=("query", "value"), modules_to_save=("classifier",)))
    save_adapter(model, tmp_path / "a", provenance={"base_model": str(model_dir)})
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    rep = main(["--adapter", str(tmp_path / "a"), "--format", "json"])
    assert rep["model"] == str(model_dir) and rep["head"] == "sequence-classification"
    assert rep["adapter_check"]["verified"]
    # an adapter without task_type (PEFT's default): inferred from the keys
    save_adapter(model, tmp_path / "b", base_model_name_or_path=str(model_dir))
    cfg = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    cfg["task_type"] = None
    (tmp_path / "b" / "adapter_config.json").write_text(json.dumps(cfg))
    (tmp_path / "b" / "adapter_manifest.json").unlink()  # its config hash would (rightly) refuse the edit
    rep = main(["--adapter", str(tmp_path / "b"), "--format", "json"])
    assert rep["head"] == "sequence-classification" and rep["model"] == str(model_dir)


def test_totals_count_shared_tensors_once():
    rows = param_table(Tied())
    t = totals(rows)
    assert t["parameter:base"]["tensors"] == 3 and t["parameter:base"]["numel"] == 7 * 4 + 4 * 4 + 4


def test_real_checkpoint_lora_audit(tmp_path, minilm_dir):
    model = models.load_pretrained(minilm_dir, head="sequence-classification", num_labels=2)
    inject(model, LoraConfig(r=8, targets=("query", "value"), modules_to_save=("classifier",)))
    save_adapter(model, tmp_path, task_type="SEQ_CLS")
    rep = main(
        [
            "--model",
            str(minilm_dir),
            "--adapter",
            str(tmp_path),
            "--format",
            "json",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    assert rep["adapter_check"]["verified"] and rep["summary"]["adapter"] == 6 * 2 * 8 * (384 + 384)

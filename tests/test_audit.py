"""Audit: roles partition the tensors, the base fingerprint, the adapter manifest and its checks."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_inject import Toy, _perturb

from minipeft import (
    IA3Config,
    LoraConfig,
    fingerprint,
    inject,
    load_adapter,
    param_table,
    remove,
    save_adapter,
    summary,
)
from minipeft.audit import MANIFEST_FILE, config_sha256
from minipeft.inject import adapter_state
from minipeft.io import WEIGHTS_FILE
from tasks.verify_manifest import verify

ROOT = Path(__file__).resolve().parent.parent
LORA = LoraConfig(r=2, alpha=4, targets=("query", "value"), modules_to_save=("classifier",))


class Tied(nn.Module):
    """An embedding and an output projection sharing one weight."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.query = nn.Linear(4, 4)
        self.out = nn.Linear(4, 7, bias=False)
        self.out.weight = self.emb.weight


def _saved(tmp_path, seed=0, provenance=None):
    torch.manual_seed(seed)
    model = Toy()
    inject(model, LORA)
    _perturb(model)
    save_adapter(model, tmp_path, provenance=provenance)
    return model


def _fresh(seed=0):
    torch.manual_seed(seed)
    return Toy()


def test_roles_partition_parameters_and_hashes_are_of_the_raw_bytes():
    model = Toy()
    inject(model, LORA)
    rows = param_table(model)
    assert [r.name for r in rows] == [n for n, _ in model.named_parameters()]
    role = {r.name: r.role for r in rows}
    assert (
        role["query.lora_A"] == "lora"
        and role["classifier.weight"] == "head"
        and role["query.weight"] == "base"
    )
    p = dict(model.named_parameters())
    for r in rows:
        assert r.sha256 == hashlib.sha256(p[r.name].detach().numpy().tobytes()).hexdigest()
        assert r.trainable == p[r.name].requires_grad and r.numel == p[r.name].numel()
    with_buffers = param_table(model, buffers=True)
    assert [(r.name, r.role, r.trainable) for r in with_buffers if r.kind == "buffer"] == [
        ("offset", "base", False)
    ]


def test_table_refuses_roles_that_overlap():
    model = Toy()
    inject(model, LORA)
    adapter_state(model).saved = ("query",)  # corrupt the record: an adapter inside a saved module
    with pytest.raises(RuntimeError, match="query.lora_A"):
        param_table(model)


def test_shared_tensors_are_named_and_counted_once():
    model = Tied()
    inject(model, LoraConfig(r=2, targets=("query",)))
    rows = {r.name: r for r in param_table(model)}
    assert rows["out.weight"].shared_with == "emb.weight" and rows["emb.weight"].shared_with is None
    assert rows["out.weight"].sha256 == rows["emb.weight"].sha256
    unique = {id(p): p.numel() for p in model.parameters()}
    s = summary(model)
    assert s.model + s.adapter == sum(unique.values())


def test_audit_trainable_count_equals_parameters_that_received_gradients():
    model = Toy()
    inject(model, IA3Config(modules_to_save=("classifier",)))
    F.cross_entropy(model(torch.randn(5, 6)), torch.randint(0, 3, (5,))).backward()
    got_grad = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert summary(model).trainable == got_grad == sum(r.numel for r in param_table(model) if r.trainable)


def test_fingerprint_covers_the_base_only():
    model = Toy()
    before = fingerprint(model)
    assert fingerprint(_fresh_copy(model)) == before
    inject(model, LoraConfig(targets=("query",)))
    assert fingerprint(model) == before  # adapters are not part of the base
    _perturb(model)
    assert fingerprint(model) == before
    with torch.no_grad():
        model.key.bias[0] += 1e-3
    assert fingerprint(model) != before
    remove(model)
    headless = Toy()
    inject(headless, LoraConfig(targets=("query",), modules_to_save=("classifier",)))
    h = fingerprint(headless)
    with torch.no_grad():
        headless.classifier.weight.mul_(2)  # the head is not base either
    assert fingerprint(headless) == h
    headless.offset.add_(1)  # buffers are
    assert fingerprint(headless) != h


def _fresh_copy(model):
    clone = Toy()
    clone.load_state_dict(model.state_dict())
    return clone


def test_manifest_lists_tensors_config_versions_and_provenance(tmp_path):
    import minipeft

    model = _saved(tmp_path, provenance={"task": "toy", "seed": 3})
    m = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert m["base_fingerprint"] == fingerprint(model) and m["provenance"] == {"task": "toy", "seed": 3}
    assert m["minipeft_version"] == minipeft.__version__ and m["torch_version"] == torch.__version__
    assert (
        m["tensors"]["base_model.model.query.lora_B.weight"]["sha256"]
        == hashlib.sha256(model.query.lora_B.detach().numpy().tobytes()).hexdigest()
    )
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert "base_fingerprint" not in cfg and m["config_sha256"] == config_sha256(cfg)
    shuffled = dict(cfg, target_modules=cfg["target_modules"][::-1], peft_version="9.9")
    assert config_sha256(shuffled) == config_sha256(cfg)  # canonical: list order, PEFT version
    assert verify(tmp_path) == []


def _flip_one_byte(file, key):
    raw = bytearray(file.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    start = json.loads(raw[8 : 8 + n])[key]["data_offsets"][0]
    raw[8 + n + start] ^= 0x01
    file.write_bytes(bytes(raw))


def test_flipped_byte_is_refused_naming_the_key(tmp_path):
    _saved(tmp_path)
    key = "base_model.model.value.lora_A.weight"
    _flip_one_byte(tmp_path / WEIGHTS_FILE, key)
    model = _fresh()
    with pytest.raises(ValueError, match=f"tensor {key} does not match its SHA-256"):
        load_adapter(model, tmp_path)
    assert adapter_state(model) is None
    assert verify(tmp_path) == [f"{key}: bytes, dtype or shape differ from the manifest"]


def test_other_base_is_refused_unless_overridden_and_then_recorded(tmp_path):
    _saved(tmp_path, seed=0)
    other = _fresh(seed=1)
    with pytest.raises(ValueError, match="trained on another base model.*allow_base_mismatch=True"):
        load_adapter(other, tmp_path)
    with pytest.warns(UserWarning, match="mismatch overridden"):
        load_adapter(other, tmp_path, allow_base_mismatch=True)
    record = adapter_state(other).loaded_from
    assert record["base_mismatch"] and record["verified"]
    assert record["base_fingerprint"] == fingerprint(other) != record["expected_base_fingerprint"]


@pytest.mark.parametrize("edit", ["provenance", "tensor_hash", "config"])
def test_edited_manifest_or_config_is_detected(tmp_path, edit):
    _saved(tmp_path, provenance={"test_f1": 0.71})
    mf, cf = tmp_path / MANIFEST_FILE, tmp_path / "adapter_config.json"
    m = json.loads(mf.read_text())
    if edit == "provenance":
        m["provenance"]["test_f1"] = 0.99
        match = "manifest was edited"
    elif edit == "tensor_hash":
        m["tensors"]["base_model.model.query.lora_A.weight"]["sha256"] = "0" * 64
        from minipeft.audit import manifest_sha256

        m["manifest_sha256"] = manifest_sha256(m)  # a consistent forgery still fails on the tensor
        match = "query.lora_A.weight does not match"
    else:
        cfg = json.loads(cf.read_text())
        cf.write_text(json.dumps(dict(cfg, lora_alpha=64)))
        match = "config_sha256"
    mf.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=match):
        load_adapter(_fresh(), tmp_path)
    expected = ["adapter_config.json changed after saving (config_sha256 mismatch)"]
    assert verify(tmp_path) if edit != "config" else verify(tmp_path) == expected  # issue 21: 8 -> 64


def test_adapter_without_manifest_loads_unverified(tmp_path):
    _saved(tmp_path)
    (tmp_path / MANIFEST_FILE).unlink()
    model = _fresh()
    with pytest.warns(UserWarning, match="unverified"):
        load_adapter(model, tmp_path)
    assert adapter_state(model).loaded_from["verified"] is False


def test_stdlib_script_runs_without_torch(tmp_path):
    _saved(tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None; from tasks.verify_manifest import verify; "
        f"print(verify({str(tmp_path)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    cli = subprocess.run(
        [sys.executable, "-m", "tasks.verify_manifest", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0 and cli.stdout.startswith("OK")


def test_docs_snippet_is_the_tested_script(tmp_path):
    """The verification code shown in docs/verify-adapter.md is exactly tasks/verify_manifest.verify,
    and the page's code block itself runs: intact adapter passes, a flipped byte is reported."""
    import inspect
    import re

    import tasks.verify_manifest as vm

    page = (ROOT / "docs" / "verify-adapter.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "def verify(adapter_dir)" in b]
    assert len(blocks) == 1, "docs/verify-adapter.md must show the verification code"
    for fn in (
        vm.canonical,
        vm._sorted_lists,
        vm.config_sha256,
        vm._json_object,
        vm.read_safetensors,
        vm.verify,
    ):
        assert inspect.getsource(fn) in blocks[0], fn.__name__
    namespace = {}
    exec(blocks[0], namespace)
    _saved(tmp_path)
    assert namespace["verify"](tmp_path) == []
    _flip_one_byte(tmp_path / WEIGHTS_FILE, "base_model.model.query.lora_B.weight")
    assert namespace["verify"](tmp_path) == [
        "base_model.model.query.lora_B.weight: bytes, dtype or shape differ from the manifest"
    ]

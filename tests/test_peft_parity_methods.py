"""DoRA, PiSSA, OLoRA and VeRA files both ways with PEFT 0.21.2 (transformers 5.23.0), logits within
1e-5: on a tiny random BERT, and on the real MiniLM checkpoint (skipped when it is not fetched).

PEFT -> here: an adapter trained a few steps by PEFT, saved with save_pretrained (PiSSA/OLoRA as
PEFT writes them by default, unconverted: loading re-runs the init on the pretrained base, in PEFT
and here), loaded into our BERT. Here -> PEFT: trained here, saved by save_adapter (PiSSA/OLoRA as
PEFT's rank-2r conversion), loaded by PeftModel.from_pretrained on the untouched base."""

import copy
import json
import warnings

import pytest
import torch
from test_peft_parity import LABELS, _batch, _hf_base, _hf_logits, _our_logits, _ours, _train

from minipeft import DoraConfig, LoraConfig, VeraConfig, inject, load_adapter, save_adapter

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
models = pytest.importorskip("models")

QV = ["query", "value"]

PEFT_CONFIGS = {
    "dora": lambda: peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, use_dora=True, target_modules=QV),
    "pissa": lambda: peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, init_lora_weights="pissa", target_modules=QV
    ),
    "olora": lambda: peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, init_lora_weights="olora", target_modules=QV
    ),
    "vera": lambda: peft.VeraConfig(
        task_type="SEQ_CLS", r=16, target_modules=["query", "value", "intermediate.dense"]
    ),
}
HEAD = ("classifier",)
OUR_CONFIGS = {
    "dora": DoraConfig(r=4, alpha=8, dropout=0.1, targets=QV, modules_to_save=HEAD),
    "pissa": LoraConfig(r=4, alpha=8, init="pissa", targets=QV, modules_to_save=HEAD),
    "olora": LoraConfig(r=4, alpha=8, init="olora", targets=QV, modules_to_save=HEAD),
    "vera": VeraConfig(r=16, targets=("query", "value", "intermediate.dense"), modules_to_save=HEAD),
}
METHODS = list(OUR_CONFIGS)


def _tiny_pair():
    """(HF's tiny BERT, ours with the same weights)."""
    hf = _hf_base()
    return hf, _ours(copy.deepcopy(hf.state_dict()))


def _from_peft(tmp_path, method, hf, ours, vocab=100):
    """Train in PEFT on `hf`, save, load into `ours`; returns (PEFT's logits, ours)."""
    pm = peft.get_peft_model(hf, PEFT_CONFIGS[method]())
    _train(pm, _hf_logits, vocab)
    pm.save_pretrained(tmp_path)
    ids, mask, _ = _batch(2, vocab)
    with torch.no_grad():
        want = _hf_logits(pm, ids, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT's "score" in modules_to_save; no manifest
        load_adapter(ours, tmp_path)
    with torch.no_grad():
        return want, _our_logits(ours, ids, mask)


def _to_peft(tmp_path, method, ours, hf, vocab=100):
    """Train here, save, load in PEFT on the untouched `hf`; returns (our logits, PEFT's)."""
    inject(ours, OUR_CONFIGS[method])
    _train(ours, _our_logits, vocab)
    save_adapter(ours, tmp_path, task_type="SEQ_CLS")
    ids, mask, _ = _batch(2, vocab)
    with torch.no_grad():
        want = _our_logits(ours, ids, mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = peft.PeftModel.from_pretrained(hf, tmp_path).eval()
    bad = [
        str(w.message)
        for w in caught
        if "missing" in str(w.message).lower() or "unexpected" in str(w.message)
    ]
    assert not bad, bad
    with torch.no_grad():
        return want, _hf_logits(pm, ids, mask)


@pytest.mark.parametrize("method", METHODS)
def test_peft_adapter_loads_here_with_identical_logits(tmp_path, method):
    hf, ours = _tiny_pair()
    want, got = _from_peft(tmp_path, method, hf, ours)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_adapter_saved_here_loads_in_peft_with_identical_logits(tmp_path, method):
    hf, ours = _tiny_pair()
    want, got = _to_peft(tmp_path, method, ours, hf)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    if method in ("pissa", "olora"):  # PEFT's conversion: plain LoRA, rank and alpha doubled
        assert (cfg["r"], cfg["lora_alpha"], cfg["init_lora_weights"]) == (8, 16, True)


def test_peft_vera_projections_equal_ours_bit_for_bit(tmp_path):
    """The shared pair comes from projection_prng_key alone: PEFT's draw and ours agree exactly."""
    from safetensors.torch import load_file

    hf, ours = _tiny_pair()
    peft.get_peft_model(hf, PEFT_CONFIGS["vera"]()).save_pretrained(tmp_path)
    theirs = load_file(str(tmp_path / "adapter_model.safetensors"))
    inject(ours, OUR_CONFIGS["vera"])
    shared = ours.bert.encoder.layer[0].attention.self.query.vera
    assert torch.equal(theirs["base_model.vera_A"], shared.vera_A)
    assert torch.equal(theirs["base_model.vera_B"], shared.vera_B)


# ---- the real checkpoint -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pair(minilm_dir):
    """(HF model, our model) of the real checkpoint with one random head, loaded once per module;
    tests take deep copies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.BertForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=LABELS)
    torch.manual_seed(0)
    torch.nn.init.normal_(hf.classifier.weight, std=0.02)
    ours = models.load_pretrained(minilm_dir, head="sequence-classification", num_labels=LABELS)
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not missing and all(k.endswith("position_ids") for k in unexpected)
    return hf.eval(), ours.eval()


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_real_checkpoint_files_go_both_ways_with_logits_within_1e5(tmp_path, real_pair, method):
    vocab = 30522
    hf, ours = (copy.deepcopy(m) for m in real_pair)
    want, got = _from_peft(tmp_path / "from_peft", method, hf, ours, vocab)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    hf, ours = (copy.deepcopy(m) for m in real_pair)
    want, got = _to_peft(tmp_path / "from_here", method, ours, hf, vocab)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

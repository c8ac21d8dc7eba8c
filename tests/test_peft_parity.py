"""PEFT round trips both ways with identical logits (peft==0.21.2, transformers==5.23.0).

A PEFT adapter trained a few steps on HF's BertForSequenceClassification loads into our BERT
(and into a copy of the same HF model), and an adapter trained here loads in PEFT."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from minipeft import IA3Config, LoraConfig, adapters, inject, load_adapter, save_adapter

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
models = pytest.importorskip("models")

SHAPE = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
LABELS = 3


def _batch(seed=0, vocab=100):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask, torch.randint(0, LABELS, (4,), generator=g)


def _hf_base():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**SHAPE, num_labels=LABELS)
    return transformers.BertForSequenceClassification(cfg).eval()


def _ours(state):
    model = models.BertForSequenceClassification(models.BertConfig(**SHAPE), num_labels=LABELS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and all(k.endswith("position_ids") for k in unexpected)
    return model.eval()


def _train(model, logits_of, vocab=100, steps=3):
    """A few AdamW steps on every trainable tensor, so that no adapter tensor keeps its init."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-2)
    ids, mask, y = _batch(1, vocab)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(logits_of(model, ids, mask), y).backward()
        opt.step()
    model.eval()


def _hf_logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).logits


def _our_logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask)


PEFT_CONFIGS = {
    "lora": lambda: peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"]
    ),
    "ia3": lambda: peft.IA3Config(task_type="SEQ_CLS"),
    "rslora-regex": lambda: peft.LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        lora_alpha=6,
        use_rslora=True,
        target_modules=r".*\.(query|key|intermediate\.dense)",
    ),
}
OUR_CONFIGS = {
    "lora": LoraConfig(
        r=4, alpha=8, dropout=0.1, targets=("query", "value"), modules_to_save=("classifier",)
    ),
    "ia3": IA3Config(modules_to_save=("classifier",)),
    "rslora-regex": LoraConfig(
        r=4,
        alpha=6,
        use_rslora=True,
        targets=r".*\.(query|key|intermediate\.dense)",
        modules_to_save=("classifier",),
    ),
}


def _load_expecting_peft_warnings(model, folder):
    """load_adapter on a PEFT-written folder warns twice, and both are expected: PEFT writes no
    manifest, and its SEQ_CLS config names the head `score` besides `classifier`."""
    with pytest.warns(UserWarning) as caught:
        load_adapter(model, folder)
    messages = [str(w.message) for w in caught]
    assert any("no adapter_manifest.json; the adapter is unverified" in m for m in messages), messages
    assert any("modules_to_save ['score'] match no module" in m for m in messages), messages


@pytest.mark.parametrize("method", ["lora", "ia3", "rslora-regex"])
def test_peft_adapter_loads_here_with_identical_logits(tmp_path, method):
    hf = _hf_base()
    base_state = copy.deepcopy(hf.state_dict())
    hf_copy = copy.deepcopy(hf)
    pm = peft.get_peft_model(hf, PEFT_CONFIGS[method]())
    _train(pm, _hf_logits)
    pm.save_pretrained(tmp_path)
    ids, mask, _ = _batch(2)
    with torch.no_grad():
        want = _hf_logits(pm, ids, mask)

    _load_expecting_peft_warnings(hf_copy, tmp_path)  # the same HF model class, adapted by us
    ours = _ours(base_state)
    _load_expecting_peft_warnings(ours, tmp_path)  # our BERT
    with torch.no_grad():
        torch.testing.assert_close(_hf_logits(hf_copy, ids, mask), want, rtol=0, atol=1e-6)
        torch.testing.assert_close(_our_logits(ours, ids, mask), want, rtol=0, atol=1e-5)
    peft_params = dict(pm.named_parameters())
    for path, m in adapters(ours):
        for ours_name, peft_name in (
            [("lora_A", "lora_A.default.weight"), ("lora_B", "lora_B.default.weight")]
            if method != "ia3"
            else [("ia3_l", "ia3_l.default")]
        ):
            theirs = peft_params[f"base_model.model.{path}.{peft_name}"]
            assert torch.equal(getattr(m, ours_name), theirs.reshape(getattr(m, ours_name).shape))
    assert torch.equal(
        ours.classifier.weight, peft_params["base_model.model.classifier.modules_to_save.default.weight"]
    )


@pytest.mark.parametrize("method", ["lora", "ia3", "rslora-regex"])
def test_adapter_saved_here_loads_in_peft_with_identical_logits(tmp_path, method):
    base_state = copy.deepcopy(_hf_base().state_dict())
    ours = _ours(base_state)
    inject(ours, OUR_CONFIGS[method])
    _train(ours, _our_logits)
    save_adapter(ours, tmp_path, task_type="SEQ_CLS")
    ids, mask, _ = _batch(2)
    with torch.no_grad():
        want = _our_logits(ours, ids, mask)

    hf = _hf_base()
    hf.load_state_dict(base_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = peft.PeftModel.from_pretrained(hf, tmp_path).eval()
    assert not [
        w for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()
    ]
    with torch.no_grad():
        torch.testing.assert_close(_hf_logits(pm, ids, mask), want, rtol=0, atol=1e-5)
    changed = [n for n, p in pm.named_parameters() if "classifier.modules_to_save" in n]
    assert changed and torch.equal(
        dict(pm.named_parameters())[changed[0]], getattr(ours.classifier, changed[0].split(".")[-1])
    )


def _token_models(state=None):
    torch.manual_seed(0)
    hf = transformers.BertForTokenClassification(transformers.BertConfig(**SHAPE, num_labels=LABELS)).eval()
    if state is not None:
        hf.load_state_dict(state)
    return hf


def _train_tokens(model, logits_of, steps=3):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-2)
    ids, mask, _ = _batch(1)
    tags = torch.randint(0, LABELS, ids.shape, generator=torch.Generator().manual_seed(4))  # (batch, seq)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(logits_of(model, ids, mask).reshape(-1, LABELS), tags.reshape(-1)).backward()
        opt.step()
    model.eval()


def test_token_classification_adapters_move_both_ways_with_identical_logits(tmp_path):
    """TOKEN_CLS: PEFT -> here and here -> PEFT, LoRA on query,value with the classifier saved."""
    hf = _token_models()
    base_state = copy.deepcopy(hf.state_dict())
    pm = peft.get_peft_model(
        hf,
        peft.LoraConfig(
            task_type="TOKEN_CLS", r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query", "value"]
        ),
    )
    _train_tokens(pm, _hf_logits)
    pm.save_pretrained(tmp_path / "from_peft")
    ids, mask, _ = _batch(2)
    ours = models.BertForTokenClassification(models.BertConfig(**SHAPE), num_labels=LABELS)
    missing, unexpected = ours.load_state_dict(base_state, strict=False)
    assert not missing and all(k.endswith("position_ids") for k in unexpected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_adapter(ours.eval(), tmp_path / "from_peft")
    with torch.no_grad():
        want = _hf_logits(pm, ids, mask)  # (batch, seq, labels)
        assert want.shape == (4, 9, LABELS)
        torch.testing.assert_close(_our_logits(ours, ids, mask), want, rtol=0, atol=1e-5)

    _train_tokens(ours, _our_logits)  # and back: trained here, read by PEFT
    save_adapter(ours, tmp_path / "from_here", task_type="TOKEN_CLS")
    back = peft.PeftModel.from_pretrained(_token_models(base_state), tmp_path / "from_here").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            _hf_logits(back, ids, mask), _our_logits(ours, ids, mask), rtol=0, atol=1e-5
        )

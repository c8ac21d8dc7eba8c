"""Sequence heads read h[:, 0] only, so their last layer computes the first position alone
(`first_position_only`): the same logits and gradients as the full last layer, for every family,
with padding, a key/value prefix, checkpointing and adapters, and the last layer's feed-forward
really runs on one position."""

import dataclasses

import pytest
import torch

from minipeft import IA3Config, LoraConfig, inject
from models import load_pretrained
from models.bert import BertConfig, BertForSequenceClassification
from models.config import MobileBertConfig
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.mobilebert import MobileBertForSequenceClassification

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _mobilebert(head_dim, **layout):
    """A FAMILIES entry: 3-layer MobileBERT without dropout, with the given embedding/bottleneck layout."""
    config = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    )
    return (
        lambda: MobileBertForSequenceClassification(
            MobileBertConfig(**config, **layout, **NO_DROPOUT), num_labels=3
        ),
        lambda m: m.mobilebert.encoder.layer[-1].intermediate.dense,
        lambda m: m.mobilebert.encoder,
        2,
        head_dim,
    )


FAMILIES = {
    # name: (build, last layer's first feed-forward Linear, encoder holding gradient_checkpointing,
    #        heads, head_dim)
    "bert": (
        lambda: BertForSequenceClassification(
            BertConfig(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=37,
                max_position_embeddings=64,
                **NO_DROPOUT,
            ),
            num_labels=3,
        ),
        lambda m: m.bert.encoder.layer[-1].intermediate.dense,
        lambda m: m.bert.encoder,
        4,
        8,
    ),
    "distilbert": (
        lambda: DistilBertForSequenceClassification(
            DistilBertConfig(
                vocab_size=99,
                dim=32,
                n_layers=3,
                n_heads=4,
                hidden_dim=37,
                max_position_embeddings=64,
                dropout=0.0,
                attention_dropout=0.0,
                seq_classif_dropout=0.0,
            ),
            num_labels=3,
        ),
        lambda m: m.distilbert.transformer.layer[-1].ffn.lin1,
        lambda m: m.distilbert.transformer,
        4,
        8,
    ),
    "mobilebert": _mobilebert(8, embedding_size=8, intra_bottleneck_size=16),
    "mobilebert-no-bottleneck": _mobilebert(16, embedding_size=32, use_bottleneck=False),
}


def _perturb(model):
    """Random weights everywhere (norms too), so a mis-wired residual or query row shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def _with_setting(model, first: bool):
    """The same weights in a model built with the config's `first_position_only` set to `first`."""
    cfg = dataclasses.replace(model.config, first_position_only=first)
    other = type(model)(cfg, num_labels=model.num_labels).train(model.training)
    other.load_state_dict(model.state_dict())
    return other


def _run(model, first, ids, mask, prefix, last_ffn, encoder):
    """(logits, every parameter's gradient, positions the last feed-forward saw), run by a copy of
    `model` built with `first_position_only=first`."""
    checkpointing = encoder(model).gradient_checkpointing
    model = _with_setting(model, first)
    encoder(model).gradient_checkpointing = checkpointing
    seen = []
    hook = last_ffn(model).register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    try:
        logits = model(ids, mask, prefix_kv=prefix)
    finally:
        hook.remove()
    loss = logits.logsumexp(-1).sum()
    loss.backward()
    return logits.detach(), [p.grad.clone() if p.grad is not None else None for p in model.parameters()], seen


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("prefix", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_first_position_only_gives_the_full_last_layers_logits_and_gradients(family, prefix, checkpointing):
    build, last_ffn, encoder, heads, head_dim = FAMILIES[family]
    torch.manual_seed(0)
    model = build().train()  # no dropout: both runs comparable
    _perturb(model)
    encoder(model).gradient_checkpointing = checkpointing
    ids = torch.randint(1, 99, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    pkv = None
    if prefix:  # (batch, heads, prefix, head_dim)
        pkv = [(torch.randn(3, heads, 2, head_dim), torch.randn(3, heads, 2, head_dim)) for _ in range(3)]
    logits_all, grads_all, seen_all = _run(model, False, ids, mask, pkv, last_ffn, encoder)
    logits_first, grads_first, seen_first = _run(model, True, ids, mask, pkv, last_ffn, encoder)
    assert model.config.first_position_only is True  # the default
    assert seen_first == [1] * len(seen_first) and seen_all[0] == 9
    torch.testing.assert_close(logits_first, logits_all, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), grads_first, grads_all):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("config", [LoraConfig(r=4, alpha=8, targets=("query", "value")), IA3Config()])
def test_real_checkpoint_with_an_adapter_same_logits_either_way(minilm_dir, config):
    """all-MiniLM-L6-v2 with an adapter, eval mode, padding: logits equal with and without the cut."""
    models = []
    for first in (False, True):
        torch.manual_seed(0)
        model = load_pretrained(
            minilm_dir, head="sequence-classification", num_labels=2, first_position_only=first
        )
        assert model.config.first_position_only is first and not model.training  # eval mode, as HF
        inject(model, config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name or "ia3_l" in name:
                    p.add_(torch.randn_like(p) * 0.05)  # adapters that change something (same seed)
        models.append(model)
    ids = torch.randint(1000, 30000, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[0, 25:] = 0
    with torch.no_grad():
        full, cut = (m(ids, mask) for m in models)
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)

"""Our MobileBERT: config checks, NoNorm, trigram input, hooks, and logits equal to transformers'
own MobileBERT on random weights for every bottleneck/normalisation variant (test-only extra)."""

import pytest
import torch
from small_models import SMALL_MOBILEBERT
from test_distilbert import _perturb, hf_class, hf_copy_of_ours, load_perturbed_copy

from models import load_pretrained
from models.config import MobileBertConfig
from models.mobilebert import HEADS, MobileBertForSequenceClassification, MobileBertModel, NoNorm

SMALL = SMALL_MOBILEBERT
VARIANTS = {  # google/mobilebert-uncased's layout, then the switches HF implements
    "default": {},
    "layer_norm-gelu-no_pooler_act": dict(
        normalization_type="layer_norm", hidden_act="gelu", classifier_activation=False
    ),
    "bottleneck_attention-one_ffn-no_trigram": dict(
        use_bottleneck_attention=True, trigram_input=False, num_feedforward_networks=1
    ),
    "no_bottleneck": dict(use_bottleneck=False, embedding_size=32),
}


def _batch():
    ids = torch.randint(1, SMALL["vocab_size"], (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return ids, mask, torch.randint(0, 2, (2, 7))


# ---------------------------------------------------------------- config
def test_defaults_are_google_mobilebert_uncased_and_derive_true_hidden():
    cfg = MobileBertConfig()
    assert (cfg.hidden_size, cfg.true_hidden_size, cfg.embedding_size, cfg.num_hidden_layers) == (
        512,
        128,
        128,
        24,
    )
    assert (cfg.num_attention_heads, cfg.intermediate_size, cfg.num_feedforward_networks) == (4, 512, 4)
    assert MobileBertConfig(use_bottleneck=False).true_hidden_size == 512
    d = MobileBertConfig.from_dict({**SMALL, "id2label": {"0": "a"}}).to_dict()
    assert MobileBertConfig.from_dict(d) == MobileBertConfig.from_dict({**SMALL, "id2label": {"0": "a"}})


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"normalization_type": "batch_norm"}, "batch_norm"),
        ({"hidden_act": "swish"}, "swish"),
        ({"model_type": "bert"}, "mobilebert"),
        ({"true_hidden_size": 32}, "true_hidden_size"),
        ({"key_query_shared_bottleneck": False}, "key_query_shared_bottleneck"),
        ({"num_attention_heads": 3}, "multiple"),
    ],
)
def test_config_refuses_unsupported(bad, words):
    with pytest.raises(ValueError, match=words):
        MobileBertConfig.from_dict({**SMALL, **bad}, source="x/config.json")


# ---------------------------------------------------------------- pieces
def test_nonorm_is_elementwise_affine():
    n = NoNorm(4)
    with torch.no_grad():
        n.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        n.bias.fill_(0.5)
    x = torch.randn(3, 4)
    torch.testing.assert_close(n(x), x * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 0.5)


def test_trigram_projection_sees_next_current_previous_token():
    cfg = MobileBertConfig(**SMALL, hidden_dropout_prob=0.0)
    emb = MobileBertModel(cfg).embeddings.eval()
    _perturb(emb)
    ids = torch.randint(1, 50, (1, 4))
    e = emb.word_embeddings(ids)[0]  # (seq, emb)
    z = torch.zeros(1, 8)
    tri = torch.cat([torch.cat([e[1:], z]), e, torch.cat([z, e[:-1]])], dim=1)  # (seq, 3·emb)
    x = (
        emb.embedding_transformation(tri)
        + emb.position_embeddings.weight[:4]
        + emb.token_type_embeddings.weight[0]
    )
    torch.testing.assert_close(emb(ids)[0], emb.LayerNorm(x))


def test_inputs_embeds_are_pre_trigram_and_prefix_changes_output():
    model = MobileBertForSequenceClassification(MobileBertConfig(**SMALL), num_labels=3).eval()
    _perturb(model)
    ids, mask, tt = _batch()
    emb = model.mobilebert.embeddings.word_embeddings(ids)  # (batch, seq, embedding_size)
    torch.testing.assert_close(
        model(inputs_embeds=emb, attention_mask=mask, token_type_ids=tt), model(ids, mask, tt), rtol=0, atol=0
    )
    head_dim = 16 // 2
    prefix = [(torch.randn(2, 2, 3, head_dim), torch.randn(2, 2, 3, head_dim)) for _ in range(2)]
    assert not torch.allclose(model(ids, mask, tt, prefix_kv=prefix), model(ids, mask, tt))


# ---------------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("head", [None, "sequence-classification", "token-classification"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(tmp_path, head, variant):
    transformers = pytest.importorskip("transformers")
    config = transformers.MobileBertConfig(**{**SMALL, **VARIANTS[variant]}, num_labels=3)
    hf = hf_class(transformers, "MobileBert", head)(config).eval()
    ours = load_perturbed_copy(hf, tmp_path, head, HEADS)
    ids, mask, tt = _batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        got = ours(ids, mask, tt)
    if head is None:
        torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(got, want.logits, rtol=0, atol=1e-5)


def test_pretraining_checkpoint_loads_for_token_classification(tmp_path):
    """google/mobilebert-uncased is saved as MobileBertForPreTraining: cls.* is ignored, and the
    pooler is dropped for token classification, as HF builds that head without one."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.MobileBertForPreTraining(transformers.MobileBertConfig(**SMALL)).eval()
    _perturb(hf)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path, head="token-classification", num_labels=5).eval()
    assert ours.head_loaded is False and ours.mobilebert.pooler is None
    ids, mask, tt = _batch()
    with torch.no_grad():
        want = hf.mobilebert(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        got = ours.mobilebert(ids, mask, tt).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_save_pretrained_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = MobileBertForSequenceClassification(MobileBertConfig(**SMALL), num_labels=3).eval()
    hf = hf_copy_of_ours(transformers, ours, tmp_path)
    ids, mask, tt = _batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
    torch.testing.assert_close(ours(ids, mask, tt), want, rtol=0, atol=1e-5)

"""Our DistilBERT: config checks, attention math with a key/value prefix, inputs_embeds, and logits
equal to transformers' own DistilBERT on random weights (test-only extra)."""

import math

import pytest
import torch

from models import load_pretrained, save_pretrained
from models.distilbert import (
    HEADS,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertModel,
    MultiHeadSelfAttention,
)

SMALL = dict(vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=16)


def _perturb(model, scale=0.1):
    """Random weights everywhere (LayerNorm too), so any mis-wired module changes the logits."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


HF_SUFFIX = {
    None: "Model",
    "sequence-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
}


def hf_class(transformers, family: str, head):
    """transformers' class of `family` ("DistilBert", "MobileBert") for our load_pretrained head."""
    return getattr(transformers, family + HF_SUFFIX[head])


def hf_copy_of_ours(transformers, ours, folder):
    """Perturb our sequence classifier `ours`, save_pretrained it to `folder` and load it with
    transformers' Auto class, which must pick the same family's class."""
    _perturb(ours)
    save_pretrained(ours, folder)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert type(hf).__name__ == type(ours).__name__
    return hf


def load_perturbed_copy(hf, folder, head, heads):
    """Perturb the transformers model `hf`, save it to `folder` and load it with our load_pretrained:
    the class of `heads[head]` (dispatch on model_type), with HF's state-dict keys and head loaded."""
    _perturb(hf)
    hf.save_pretrained(folder)
    ours = load_pretrained(folder, head=head).eval()
    assert isinstance(ours, heads[head]) and set(ours.state_dict()) == set(hf.state_dict())  # HF's keys
    assert head is None or ours.head_loaded
    return ours


def _batch():
    ids = torch.randint(1, SMALL["vocab_size"], (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return ids, mask


# ---------------------------------------------------------------- config
def test_config_round_trip_keeps_labels_and_unknown_keys():
    d = {**SMALL, "model_type": "distilbert", "id2label": {"0": "neg", "1": "pos"}, "qa_dropout": 0.3}
    cfg = DistilBertConfig.from_dict(d)
    assert cfg.num_labels == 2 and cfg.hidden_size == 32 and cfg.num_hidden_layers == 2 and cfg.head_dim == 8
    out = cfg.to_dict(architectures=["DistilBertForSequenceClassification"])
    assert out["qa_dropout"] == 0.3 and out["id2label"] == {"0": "neg", "1": "pos"}
    assert DistilBertConfig.from_dict(out) == cfg


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"activation": "swish"}, "swish"),
        ({"model_type": "bert"}, "distilbert"),
        ({"dim": 30}, "multiple"),
    ],
)
def test_config_refuses_unsupported(bad, words):
    with pytest.raises(ValueError, match=words):
        DistilBertConfig.from_dict({**SMALL, **bad}, source="x/config.json")


def test_config_from_json_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DistilBertConfig.from_json(tmp_path)


# ---------------------------------------------------------------- hooks
def test_attention_with_prefix_equals_softmax_formula():
    """out_lin(softmax(q [pk; k]ᵀ/√d + M) [pv; v]): the prefix is always visible, padding is not."""
    cfg = DistilBertConfig(**SMALL)
    att = MultiHeadSelfAttention(cfg).eval()
    x = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pk, pv = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8)
    heads = lambda t: t.view(2, 5, 4, 8).transpose(1, 2)  # (batch, heads, seq, d)
    k = torch.cat([pk, heads(att.k_lin(x))], 2)
    v = torch.cat([pv, heads(att.v_lin(x))], 2)
    m = torch.cat([torch.ones(2, 3), mask.float()], 1)
    scores = heads(att.q_lin(x)) @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores + torch.where(m.bool(), 0.0, -math.inf)[:, None, None, :]
    want = att.out_lin((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(att(x, mask, (pk, pv)), want)


def test_inputs_embeds_equals_token_ids_and_prefix_changes_output():
    model = DistilBertForSequenceClassification(DistilBertConfig(**SMALL), num_labels=3).eval()
    _perturb(model)
    ids, mask = _batch()
    emb = model.distilbert.embeddings.word_embeddings(ids)
    torch.testing.assert_close(
        model(inputs_embeds=emb, attention_mask=mask), model(ids, mask), rtol=0, atol=0
    )
    prefix = [(torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8)) for _ in range(2)]
    assert not torch.allclose(model(ids, mask, prefix_kv=prefix), model(ids, mask))
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=emb)


def test_bare_encoder_pooler_output_is_first_position():
    model = DistilBertModel(DistilBertConfig(**SMALL)).eval()
    ids, mask = _batch()
    out = model(ids, mask)
    assert out.last_hidden_state.shape == (2, 7, 32)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0], rtol=0, atol=0)


# ---------------------------------------------------------------- parity with transformers
@pytest.mark.parametrize("head", [None, "sequence-classification", "token-classification"])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_logits_match_transformers(tmp_path, head, activation):
    transformers = pytest.importorskip("transformers")
    config = transformers.DistilBertConfig(**SMALL, activation=activation, num_labels=3)
    hf = hf_class(transformers, "DistilBert", head)(config).eval()
    ours = load_perturbed_copy(hf, tmp_path, head, HEADS)
    ids, mask = _batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask)
        want = want.last_hidden_state if head is None else want.logits
        got = ours(ids, mask)
        got = got.last_hidden_state if head is None else got
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- loader dispatch
def test_masked_lm_checkpoint_loads_encoder_and_initialises_both_head_layers(tmp_path):
    """distilbert-base-uncased is saved as DistilBertForMaskedLM: its vocab_* keys are ignored and
    pre_classifier + classifier start fresh, the encoder equals the file's."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(**SMALL)).eval()
    _perturb(hf)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path, head="sequence-classification", num_labels=2).eval()
    assert ours.head_loaded is False and torch.all(ours.pre_classifier.bias == 0)
    ids, mask = _batch()
    with torch.no_grad():
        want = hf.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours.distilbert(ids, mask).last_hidden_state, want, rtol=0, atol=1e-5)


def test_save_pretrained_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    ours = DistilBertForSequenceClassification(DistilBertConfig(**SMALL), num_labels=3).eval()
    hf = hf_copy_of_ours(transformers, ours, tmp_path)
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            hf(input_ids=ids, attention_mask=mask).logits, ours(ids, mask), rtol=0, atol=1e-5
        )
    again = load_pretrained(tmp_path, head="sequence-classification")
    assert again.head_loaded and again.num_labels == 3


def test_unknown_model_type_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "roberta", "hidden_size": 32}')
    with pytest.raises(ValueError, match="roberta.*bert, distilbert, mobilebert"):
        load_pretrained(tmp_path)


def test_positions_start_after_a_prefix():
    """With prefix_kv of length P the tokens take positions P..P+T-1 (HF's rule for past keys)."""
    model = DistilBertModel(DistilBertConfig(**SMALL, dropout=0.0)).eval()
    ids, _ = _batch()
    emb = model.embeddings
    want = emb.LayerNorm(emb.word_embeddings(ids) + emb.position_embeddings.weight[3:10])
    torch.testing.assert_close(emb(ids, past_length=3), want)
    with pytest.raises(ValueError, match="prefix positions"):
        emb(ids, past_length=10)  # 10 + 7 > 16

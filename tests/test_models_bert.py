"""Our BERT on small random configs: config checks, shapes, masking, attention math, checkpointing."""

import math

import pytest
import torch
import torch.nn.functional as F
from small_models import SMALL_BERT

from models import BertConfig, BertForSequenceClassification, BertForTokenClassification, BertModel
from models.attention import attention, key_mask, merge_heads, split_heads

SMALL = SMALL_BERT


def small(**kw):
    return BertConfig(**{**SMALL, **kw})


# ---------------------------------------------------------------- config
def test_config_missing_position_type_means_absolute_and_keeps_labels():
    cfg = BertConfig.from_dict(
        {
            **SMALL,
            "model_type": "bert",
            "id2label": {"0": "neg", "1": "pos"},
            "label2id": {"neg": 0, "pos": 1},
            "problem_type": "single_label_classification",
        }
    )
    assert (
        cfg.num_labels == 2 and cfg.id2label == {0: "neg", 1: "pos"} and cfg.label2id == {"neg": 0, "pos": 1}
    )
    d = cfg.to_dict(architectures=["BertForSequenceClassification"])
    assert d["id2label"] == {"0": "neg", "1": "pos"} and d["position_embedding_type"] == "absolute"
    assert d["problem_type"] == "single_label_classification"  # unknown keys survive a round trip
    assert BertConfig.from_dict(d) == cfg


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"position_embedding_type": "relative_key"}, "relative_key"),
        ({"position_embedding_type": "relative_key_query"}, "relative_key_query"),
        ({"hidden_act": "swish"}, "swish"),
        ({"model_type": "roberta"}, "roberta"),
        ({"hidden_size": 30}, "multiple"),
    ],
)
def test_config_refuses_unsupported(bad, words):
    with pytest.raises(ValueError, match=words):
        BertConfig.from_dict({**SMALL, **bad}, source="x/config.json")


def test_config_from_json_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertConfig.from_json(tmp_path)


# ---------------------------------------------------------------- attention
def test_attention_equals_softmax_formula_with_padding():
    b, n, t, d = 2, 3, 5, 4
    q, k, v = (torch.randn(b, n, t, d) for _ in range(3))
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    got = attention(q, k, v, key_mask(am))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + torch.where(am.bool(), 0.0, -math.inf)[:, None, None, :]
    want = scores.softmax(-1) @ v
    torch.testing.assert_close(got, want)


def test_split_merge_heads_roundtrip():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head 1 = hidden dims 4..7
    torch.testing.assert_close(merge_heads(h), x)


# ---------------------------------------------------------------- model
def test_shapes_and_heads():
    cfg = small()
    ids = torch.randint(0, 99, (3, 7))
    out = BertModel(cfg).eval()(ids)
    assert out.last_hidden_state.shape == (3, 7, 32) and out.pooler_output.shape == (3, 32)
    assert BertForSequenceClassification(cfg, num_labels=5).eval()(ids).shape == (3, 5)
    tok = BertForTokenClassification(cfg, num_labels=4).eval()
    assert tok(ids).shape == (3, 7, 4)
    assert not any(k.startswith("bert.pooler") for k in tok.state_dict())  # HF builds it without pooler


def test_padding_does_not_change_real_positions():
    """A sequence alone equals the same sequence padded in a batch, at its real positions."""
    model = BertModel(small()).eval()
    a = torch.randint(1, 99, (1, 4))
    padded = torch.cat([a, torch.zeros(1, 3, dtype=torch.long)], 1)
    batch = torch.cat([padded, torch.randint(1, 99, (1, 7))])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7])
    with torch.no_grad():
        alone = model(a)
        both = model(batch, mask)
    torch.testing.assert_close(both.last_hidden_state[0, :4], alone.last_hidden_state[0])
    torch.testing.assert_close(both.pooler_output[0], alone.pooler_output[0])


def test_layer_is_post_ln_with_exact_gelu():
    """One layer recomputed from the equations of the bert.py docstring."""
    cfg = small(num_hidden_layers=1)
    layer = BertModel(cfg).encoder.layer[0].eval()
    x = torch.randn(2, 6, 32)
    s = layer.attention.self
    q, k, v = (split_heads(m(x), 4) for m in (s.query, s.key, s.value))
    ctx = merge_heads(((q @ k.transpose(-1, -2)) / math.sqrt(8)).softmax(-1) @ v)
    o = layer.attention.output
    a = F.layer_norm(x + o.dense(ctx), (32,), o.LayerNorm.weight, o.LayerNorm.bias, 1e-12)
    h = layer.intermediate.dense(a)
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    f = layer.output
    want = F.layer_norm(a + f.dense(h), (32,), f.LayerNorm.weight, f.LayerNorm.bias, 1e-12)
    torch.testing.assert_close(layer(x), want)


def test_inputs_embeds_equals_input_ids():
    model = BertModel(small()).eval()
    ids = torch.randint(0, 99, (2, 5))
    torch.testing.assert_close(
        model(inputs_embeds=model.embeddings.word_embeddings(ids)).last_hidden_state,
        model(ids).last_hidden_state,
    )
    with pytest.raises(ValueError, match="exactly one"):
        model()


def test_prefix_kv_equals_attention_over_prepended_keys():
    """With prefix keys/values P_k, P_v: softmax(q [P_k; K]ᵀ/√d) [P_v; V], prefix always visible."""
    attn = BertModel(small()).encoder.layer[0].attention.self.eval()
    x = torch.randn(2, 5, 32)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    pk, pv = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8)  # (batch, heads, prefix, head_dim)
    q, k, v = (split_heads(m(x), 4) for m in (attn.query, attn.key, attn.value))
    k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
    keep = torch.cat([torch.ones(2, 3), am.float()], 1).bool()[:, None, None, :]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    want = merge_heads(scores.masked_fill(~keep, -math.inf).softmax(-1) @ v)
    torch.testing.assert_close(attn(x, am, prefix_kv=(pk, pv)), want)


def test_gradient_checkpointing_same_loss_and_grads():
    torch.manual_seed(0)
    model = BertForSequenceClassification(small(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model.train()
    ids, mask = torch.randint(0, 99, (2, 6)), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])

    def grads():
        model.zero_grad()
        loss = model(ids, mask).logsumexp(-1).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss0, g0 = grads()
    model.bert.encoder.gradient_checkpointing = True
    loss1, g1 = grads()
    torch.testing.assert_close(loss1, loss0)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)


def test_dropout_only_in_training():
    model = BertForSequenceClassification(small(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
    ids = torch.randint(0, 99, (2, 6))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))
    model.train()
    assert not torch.allclose(model(ids), model(ids))


@pytest.mark.parametrize(
    "act, formula",
    [
        ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
        ("gelu_new", lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
        (
            "gelu_pytorch_tanh",
            lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        ),
        ("relu", lambda x: x.clamp(min=0)),
    ],
)
def test_activations_follow_their_formula(act, formula):
    inter = BertModel(small(hidden_act=act)).encoder.layer[0].intermediate
    x = torch.randn(2, 3, 32) * 3
    torch.testing.assert_close(inter(x), formula(inter.dense(x)))


def test_gradient_checkpointing_with_dropout_replays_the_same_masks():
    """checkpoint() restores the RNG state, so recomputed dropout masks equal the first pass's."""
    model = BertForSequenceClassification(
        small(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ).train()
    ids, mask = torch.randint(0, 99, (2, 6)), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    results = []
    for flag in (False, True):
        model.bert.encoder.gradient_checkpointing = flag
        model.zero_grad()
        torch.manual_seed(1)
        loss = model(ids, mask).logsumexp(-1).sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_config_num_labels_key_is_derived_not_kept():
    cfg = BertConfig.from_dict({**SMALL, "num_labels": 3})
    assert cfg.num_labels == 3 and "num_labels" not in cfg.to_dict()
    cfg = BertConfig.from_dict({**SMALL, "num_labels": 5, "id2label": {"0": "a", "1": "b"}})
    assert cfg.num_labels == 2 and cfg.with_labels(4).to_dict()["id2label"] == {
        str(i): f"LABEL_{i}" for i in range(4)
    }

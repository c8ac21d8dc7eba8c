"""BERT (Devlin et al. 2019) with HuggingFace's module paths, so `state_dict()` keys equal HF's keys.

Post-LN transformer block, per layer l:
    a = LN(x + Dropout(W_o · Attention(x W_qᵀ, x W_kᵀ, x W_vᵀ)))
    x' = LN(a + Dropout(W_2 · GELU(W_1 a)))
GELU is exact, 0.5·x·(1 + erf(x/√2)), as HF's "gelu". The model code never branches on file
formats; checkpoint quirks live in models/loader.py.
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import DenseAddNorm, EncoderModel, Intermediate, LayerStack, Pooler, multi_head_attention
from models.common import BertOutputs, position_ids, queries  # noqa: F401 (models.BertOutputs)
from models.config import BertConfig
from models.dropout import Dropout
from models.heads import SequenceClassification, TokenClassification, heads_table


class BertEmbeddings(nn.Module):
    """e = LN(E_word[ids] + E_pos[0..T) + E_type[type_ids]), then dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None, past_length: int = 0):
        """`past_length`: positions start there (after a key/value prefix, as HF with a cache)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        b, t, _ = inputs_embeds.shape
        positions = position_ids(self.position_embeddings, past_length, t, inputs_embeds.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(b, t, dtype=torch.long, device=inputs_embeds.device)
        x = inputs_embeds + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))  # (batch, seq, hidden)


class BertSelfAttention(nn.Module):
    """heads = softmax(Q Kᵀ/√d + M) V with Q, K, V = x W_{q,k,v}ᵀ + b, split into heads.

    `prefix_kv`, when given, is a pair of (batch, heads, prefix, head_dim) tensors prepended to the
    keys and values (prefix tuning); the mask then has the prefix positions always visible.
    `first_only`: queries at the first position only (keys and values at every position)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob
        self.recompute = cfg.recompute_attention  # models.attention.attention(recompute=...)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        q, k, v = self.query(queries(x, first_only)), self.key(x), self.value(x)  # (batch, seq or 1, hidden)
        p = self.dropout_p if self.training else 0.0
        return multi_head_attention(q, k, v, self.num_heads, attention_mask, prefix_kv, p, self.recompute)


def add_norm(cfg: BertConfig, d_in: int) -> DenseAddNorm:
    """x' = LN(r + Dropout(W x + b)) back to hidden_size: `attention.output` and `output`."""
    norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
    return DenseAddNorm(d_in, cfg.hidden_size, norm, cfg.hidden_dropout_prob)


class BertAttention(nn.Module):
    """a = LN(x + Dropout(W_o ctx + b_o)), ctx the heads of BertSelfAttention."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = add_norm(cfg, cfg.hidden_size)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        return self.output(self.self(x, attention_mask, prefix_kv, first_only), queries(x, first_only))


class BertLayer(nn.Module):
    """a = attention(x); x' = LN(a + Dropout(W_2 GELU(W_1 a + b_1) + b_2))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = Intermediate(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act)
        self.output = add_norm(cfg, cfg.intermediate_size)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        a = self.attention(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, hidden)
        return self.output(self.intermediate(a), a)  # (batch, seq or 1, hidden)


class BertModel(EncoderModel):
    """Embeddings -> encoder -> pooler (tanh(W_p h[:, 0] + b_p)); returns
    BertOutputs(last_hidden_state, pooler_output), as models.blocks.EncoderModel."""

    def __init__(self, cfg: BertConfig, add_pooling_layer: bool = True):
        super().__init__(cfg)
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = LayerStack(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = Pooler(cfg.hidden_size) if add_pooling_layer else None


class BertForSequenceClassification(SequenceClassification):
    """logits = W_c · Dropout(pooled) + b_c, dropout rate classifier_dropout ?? hidden_dropout_prob
    (models.heads.SequenceClassification, with `first_position_only`)."""

    BASE, ENCODER = "bert", BertModel


class BertForTokenClassification(TokenClassification):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t; no pooler (as HF builds it)."""

    BASE, ENCODER = "bert", BertModel


# what load_pretrained builds, by its `head` argument
HEADS = heads_table(BertModel, BertForSequenceClassification, BertForTokenClassification)


def init_weights(model: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """HF's BERT init: Linear/Embedding weights ~ N(0, std), biases 0, LayerNorm (1, 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            with torch.no_grad():
                m.weight.normal_(0.0, std, generator=generator)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

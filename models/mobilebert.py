"""MobileBERT (Sun et al. 2020) with HuggingFace's `MobileBertModel` module paths, so `state_dict()`
keys equal HF's keys (`mobilebert.` prefix under the heads).

Embeddings: the 128-wide token vectors of positions t+1, t, t-1 are concatenated (trigram input)
and projected to the 512-wide body: e = Norm(W_emb [E[t+1]; E[t]; E[t-1]] + E_pos + E_type).
Per layer, with B = 128 the bottleneck ("true hidden") width and x the 512-wide layer input:
    u = Norm(W_in x)                                  (input bottleneck, the residual stream)
    s = Norm(W_att x)                                 (shared query/key input)
    a = Norm(u + W_o · Attention(s W_qᵀ, s W_kᵀ, x W_vᵀ))
    a ← Norm(a + W_2 act(W_1 a))   repeated num_feedforward_networks - 1 times (`ffn.N`)
    y = Norm(a + W_2 act(W_1 a))                      (`intermediate` / `output`)
    x' = Norm(x + Dropout(W_up y))                    (output bottleneck back to 512)
Norm is NoNorm (x ⊙ γ + β, no statistics) or LayerNorm per `normalization_type`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import DenseAddNorm, EncoderModel, Intermediate, LayerStack, Pooler, multi_head_attention
from models.common import position_ids, queries
from models.config import MobileBertConfig
from models.dropout import Dropout
from models.heads import SequenceClassification, TokenClassification, heads_table


class NoNorm(nn.Module):
    """y = x ⊙ γ + β: MobileBERT's replacement for LayerNorm (an element-wise affine map)."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x):
        return x * self.weight + self.bias


def make_norm(cfg: MobileBertConfig, size: int, eps: float | None = None) -> nn.Module:
    """NoNorm or LayerNorm; `eps=None` is torch's default 1e-5, which HF uses in two places."""
    if cfg.normalization_type == "no_norm":
        return NoNorm(size)
    return nn.LayerNorm(size) if eps is None else nn.LayerNorm(size, eps=eps)


def intermediate(cfg: MobileBertConfig) -> Intermediate:
    """h = act(W_1 a + b_1) from the bottleneck width."""
    return Intermediate(cfg.true_hidden_size, cfg.intermediate_size, cfg.hidden_act)


class MobileBertEmbeddings(nn.Module):
    """e = Dropout(Norm(W_emb · trigram(E_word[ids]) + E_pos + E_type))."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.trigram_input = cfg.trigram_input
        self.project = cfg.trigram_input or cfg.embedding_size != cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.embedding_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        width = cfg.embedding_size * (3 if cfg.trigram_input else 1)
        self.embedding_transformation = nn.Linear(width, cfg.hidden_size)
        self.LayerNorm = make_norm(cfg, cfg.hidden_size)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None, past_length: int = 0):
        """`past_length`: positions start there (after a key/value prefix, as BERT's)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, emb)
        b, t, _ = inputs_embeds.shape
        positions = position_ids(self.position_embeddings, past_length, t, inputs_embeds.device)
        x = inputs_embeds
        if self.trigram_input:  # [E[t+1]; E[t]; E[t-1]], zero-padded
            nxt = nn.functional.pad(x[:, 1:], (0, 0, 0, 1))  # (batch, seq, emb)
            prv = nn.functional.pad(x[:, :-1], (0, 0, 1, 0))  # (batch, seq, emb)
            x = torch.cat([nxt, x, prv], dim=2)  # (batch, seq, 3·emb)
        if self.project:
            x = self.embedding_transformation(x)  # (batch, seq, hidden)
        if token_type_ids is None:
            token_type_ids = torch.zeros(b, t, dtype=torch.long, device=x.device)
        x = x + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))  # (batch, seq, hidden)


class MobileBertSelfAttention(nn.Module):
    """softmax(Q Kᵀ/√d + M) V over `num_attention_heads` heads of width true_hidden/heads.

    `prefix_kv`: a pair of (batch, heads, prefix, head_dim) tensors prepended to keys and values."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        b = cfg.true_hidden_size
        self.query = nn.Linear(b, b)
        self.key = nn.Linear(b, b)
        self.value = nn.Linear(b if cfg.use_bottleneck_attention else cfg.hidden_size, b)
        self.dropout_p = cfg.attention_probs_dropout_prob
        self.recompute = cfg.recompute_attention  # models.attention.attention(recompute=...)

    def forward(self, q_in, k_in, v_in, attention_mask=None, prefix_kv=None):
        q, k, v = self.query(q_in), self.key(k_in), self.value(v_in)  # (batch, seq or 1, true_hidden)
        p = self.dropout_p if self.training else 0.0
        return multi_head_attention(q, k, v, self.num_heads, attention_mask, prefix_kv, p, self.recompute)


class MobileBertAttention(nn.Module):
    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.self = MobileBertSelfAttention(cfg)
        # a = Norm(u + W_o ctx) (dropout on W_o ctx only without bottlenecks, as HF)
        width, norm = cfg.true_hidden_size, make_norm(cfg, cfg.true_hidden_size, cfg.layer_norm_eps)
        self.output = DenseAddNorm(width, width, norm, 0.0 if cfg.use_bottleneck else cfg.hidden_dropout_prob)

    def forward(self, q_in, k_in, v_in, residual, attention_mask=None, prefix_kv=None):
        return self.output(self.self(q_in, k_in, v_in, attention_mask, prefix_kv), residual)


class FFNLayer(nn.Module):
    """One of the extra stacked feed-forward blocks (`ffn.N`)."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.intermediate = intermediate(cfg)
        width, norm = cfg.true_hidden_size, make_norm(cfg, cfg.true_hidden_size, cfg.layer_norm_eps)
        self.output = DenseAddNorm(cfg.intermediate_size, width, norm)  # a' = Norm(a + W_2 h + b_2)

    def forward(self, a):
        return self.output(self.intermediate(a), a)  # (batch, seq, true_hidden)


class MobileBertOutput(nn.Module):
    """The last feed-forward block's output, then the output bottleneck (when bottlenecks are used)."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.use_bottleneck = cfg.use_bottleneck
        self.dense = nn.Linear(cfg.intermediate_size, cfg.true_hidden_size)
        self.LayerNorm = make_norm(cfg, cfg.true_hidden_size)  # HF: default eps here
        if cfg.use_bottleneck:  # x' = Norm(x + Dropout(W_up y + b_up)): back to the body width
            norm = make_norm(cfg, cfg.hidden_size, cfg.layer_norm_eps)
            self.bottleneck = DenseAddNorm(
                cfg.true_hidden_size, cfg.hidden_size, norm, cfg.hidden_dropout_prob
            )
        else:
            self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, h, a, x):
        y = self.dense(h)  # (batch, seq, true_hidden)
        if not self.use_bottleneck:
            return self.LayerNorm(self.dropout(y) + a)  # (batch, seq, hidden)
        return self.bottleneck(self.LayerNorm(y + a), x)  # (batch, seq, hidden)


class BottleneckLayer(nn.Module):
    """u = Norm(W x + b): body width -> bottleneck width."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intra_bottleneck_size)
        self.LayerNorm = make_norm(cfg, cfg.intra_bottleneck_size, cfg.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.dense(x))  # (batch, seq, bottleneck)


class Bottleneck(nn.Module):
    """Returns (query input, key input, value input, residual) for the attention block."""

    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.use_bottleneck_attention = cfg.use_bottleneck_attention
        self.input = BottleneckLayer(cfg)
        if cfg.key_query_shared_bottleneck:
            self.attention = BottleneckLayer(cfg)

    def forward(self, x):
        u = self.input(x)  # (batch, seq, bottleneck)
        if self.use_bottleneck_attention:
            return u, u, u, u
        s = self.attention(x)  # (batch, seq, bottleneck)
        return s, s, x, u


class MobileBertLayer(nn.Module):
    def __init__(self, cfg: MobileBertConfig):
        super().__init__()
        self.use_bottleneck = cfg.use_bottleneck
        self.attention = MobileBertAttention(cfg)
        self.intermediate = intermediate(cfg)
        self.output = MobileBertOutput(cfg)
        if cfg.use_bottleneck:
            self.bottleneck = Bottleneck(cfg)
        if cfg.num_feedforward_networks > 1:
            self.ffn = nn.ModuleList(FFNLayer(cfg) for _ in range(cfg.num_feedforward_networks - 1))

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        q_in, k_in, v_in, u = self.bottleneck(x) if self.use_bottleneck else (x, x, x, x)
        q_in, u = queries(q_in, first_only), queries(u, first_only)  # keys, values: every position
        a = self.attention(q_in, k_in, v_in, u, attention_mask, prefix_kv)  # (batch, seq or 1, true_hidden)
        for block in getattr(self, "ffn", ()):
            a = block(a)  # (batch, seq or 1, true_hidden)
        return self.output(self.intermediate(a), a, queries(x, first_only))  # (batch, seq or 1, hidden)


class MobileBertModel(EncoderModel):
    """Embeddings -> encoder -> pooler; returns BertOutputs(last_hidden_state, pooler_output), as
    models.blocks.EncoderModel. The pooler is tanh(W_p h[:, 0] + b_p) with `classifier_activation`,
    else h[:, 0] itself. `inputs_embeds` replaces the word-embedding lookup: (batch, seq,
    embedding_size), before the trigram projection, as in HF."""

    def __init__(self, cfg: MobileBertConfig, add_pooling_layer: bool = True):
        super().__init__(cfg)
        self.embeddings = MobileBertEmbeddings(cfg)
        self.encoder = LayerStack(MobileBertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = Pooler(cfg.hidden_size, cfg.classifier_activation) if add_pooling_layer else None


class MobileBertForSequenceClassification(SequenceClassification):
    """logits = W_c · Dropout(pooled) + b_c; the config's `first_position_only` (True by default) as
    in our BERT's sequence head."""

    BASE, ENCODER = "mobilebert", MobileBertModel


class MobileBertForTokenClassification(TokenClassification):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t; no pooler (as HF builds it)."""

    BASE, ENCODER = "mobilebert", MobileBertModel


# what load_pretrained builds, by its `head` argument
HEADS = heads_table(MobileBertModel, MobileBertForSequenceClassification, MobileBertForTokenClassification)

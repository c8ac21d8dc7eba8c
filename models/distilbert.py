"""DistilBERT (Sanh et al. 2019) with HuggingFace's `DistilBertModel` module paths, so `state_dict()`
keys equal HF's keys (`distilbert.` prefix under the heads).

Post-LN block, per layer l (no token-type embeddings, no pooler):
    a  = LN_sa(x + W_out · Attention(x W_qᵀ, x W_kᵀ, x W_vᵀ))
    x' = LN_out(a + Dropout(W_2 · act(W_1 a)))
Sequence classification reads the first position: logits = W_c · Dropout(ReLU(W_pre h[:, 0])).

The bare encoder returns (last_hidden_state, pooler_output) like BERT; DistilBERT has no pooler,
so `pooler_output` is the un-transformed first-position state h[:, 0] (what HF's sequence head
feeds its `pre_classifier`). `token_type_ids` is accepted for a common call signature and
ignored: DistilBERT has no segment embeddings (HF's DistilBERT tokenizer does not emit them).
"""

from __future__ import annotations

from torch import nn

from models.blocks import EncoderModel, LayerStack, Pooler, multi_head_attention
from models.common import ACTIVATIONS, position_ids, queries
from models.config import DistilBertConfig
from models.dropout import Dropout
from models.heads import SequenceClassification, TokenClassification, heads_table


class Embeddings(nn.Module):
    """e = Dropout(LN(E_word[ids] + E_pos[0..T))); LN eps is 1e-12 as in HF. `token_type_ids` is
    accepted for the common call signature and ignored (no segment embeddings)."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.dim)
        self.LayerNorm = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None, past_length: int = 0):
        """`past_length`: positions start there (after a key/value prefix, as BERT's)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, dim)
        t = inputs_embeds.shape[1]
        positions = position_ids(self.position_embeddings, past_length, t, inputs_embeds.device)
        x = inputs_embeds + self.position_embeddings(positions)  # (batch, seq, dim)
        return self.dropout(self.LayerNorm(x))


class MultiHeadSelfAttention(nn.Module):
    """W_out · softmax(Q Kᵀ/√d + M) V with Q, K, V = x W_{q,k,v}ᵀ + b, split into heads.

    `prefix_kv`, when given, is a pair of (batch, heads, prefix, head_dim) tensors prepended to the
    keys and values; the prefix positions are always visible."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_lin = nn.Linear(cfg.dim, cfg.dim)
        self.k_lin = nn.Linear(cfg.dim, cfg.dim)
        self.v_lin = nn.Linear(cfg.dim, cfg.dim)
        self.out_lin = nn.Linear(cfg.dim, cfg.dim)
        self.dropout_p = cfg.attention_dropout
        self.recompute = cfg.recompute_attention  # models.attention.attention(recompute=...)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        q, k, v = self.q_lin(queries(x, first_only)), self.k_lin(x), self.v_lin(x)  # (batch, seq or 1, dim)
        p = self.dropout_p if self.training else 0.0
        ctx = multi_head_attention(q, k, v, self.n_heads, attention_mask, prefix_kv, p, self.recompute)
        return self.out_lin(ctx)  # (batch, seq or 1, dim)


class FFN(nn.Module):
    """f = Dropout(W_2 · act(W_1 a + b_1) + b_2)."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(cfg.dim, cfg.hidden_dim)
        self.lin2 = nn.Linear(cfg.hidden_dim, cfg.dim)
        self.activation = ACTIVATIONS[cfg.activation]()
        self.dropout = Dropout(cfg.dropout)

    def forward(self, a):
        return self.dropout(self.lin2(self.activation(self.lin1(a))))  # (batch, seq, dim)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.attention = MultiHeadSelfAttention(cfg)
        self.sa_layer_norm = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.ffn = FFN(cfg)
        self.output_layer_norm = nn.LayerNorm(cfg.dim, eps=1e-12)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        a = self.attention(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, dim)
        a = self.sa_layer_norm(a + queries(x, first_only))
        return self.output_layer_norm(self.ffn(a) + a)  # (batch, seq or 1, dim)


class DistilBertModel(EncoderModel):
    """Embeddings -> transformer; returns BertOutputs(last_hidden_state, h[:, 0]): DistilBERT has
    no pooler, so pooler_output is the first position's state (what HF's sequence head feeds its
    `pre_classifier`). Prefix positions and `first_only` as in models.blocks.EncoderModel.
    `add_pooling_layer` is accepted for the common signature: there are no pooler weights."""

    STACK = "transformer"

    def __init__(self, cfg: DistilBertConfig, add_pooling_layer: bool = True):
        super().__init__(cfg)
        self.embeddings = Embeddings(cfg)
        self.transformer = LayerStack(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.pooler = Pooler(cfg.dim, dense=False)  # h[:, 0], no weights


class DistilBertForSequenceClassification(SequenceClassification):
    """logits = W_c · Dropout(ReLU(W_pre h[:, 0] + b_pre)) + b_c, dropout rate seq_classif_dropout;
    the config's `first_position_only` (True by default) as in our BERT's sequence head."""

    BASE, ENCODER, PRE_CLASSIFIER = "distilbert", DistilBertModel, True
    dropout_rate = staticmethod(lambda cfg: cfg.seq_classif_dropout)


class DistilBertForTokenClassification(TokenClassification):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t, dropout rate `dropout`."""

    BASE, ENCODER = "distilbert", DistilBertModel
    dropout_rate = staticmethod(lambda cfg: cfg.dropout)


# what load_pretrained builds, by its `head` argument
HEADS = heads_table(DistilBertModel, DistilBertForSequenceClassification, DistilBertForTokenClassification)

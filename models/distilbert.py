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

import torch
from torch import nn

from models.attention import attention, merge_heads, split_heads, with_prefix
from models.common import (
    ACTIVATIONS,
    BertOutputs,
    check_inputs,
    position_ids,
    prefix_length,
    queries,
    run_layers,
)
from models.config import DistilBertConfig
from models.dropout import Dropout


class Embeddings(nn.Module):
    """e = Dropout(LN(E_word[ids] + E_pos[0..T))); LN eps is 1e-12 as in HF."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.dim)
        self.LayerNorm = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, input_ids=None, inputs_embeds=None, past_length: int = 0):
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

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        q = split_heads(
            self.q_lin(queries(x, first_only)), self.n_heads
        )  # (batch, heads, seq or 1, head_dim)
        k = split_heads(self.k_lin(x), self.n_heads)
        v = split_heads(self.v_lin(x), self.n_heads)
        k, v, mask = with_prefix(k, v, attention_mask, prefix_kv)
        p = self.dropout_p if self.training else 0.0
        return self.out_lin(merge_heads(attention(q, k, v, mask, dropout_p=p)))  # (batch, seq or 1, dim)


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


class Transformer(nn.Module):
    """A stack of TransformerBlock; `gradient_checkpointing = True` recomputes each block in backward.
    `prefix_kv` is None or a sequence with one (key, value) pair (or None) per layer; `first_only`
    as in models.common.run_layers."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.gradient_checkpointing = False

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        checkpointing = self.gradient_checkpointing and self.training
        return run_layers(
            self.layer, x, attention_mask, prefix_kv, checkpointing, first_only
        )  # (batch, seq/1, dim)


class DistilBertModel(nn.Module):
    """Embeddings -> transformer; returns BertOutputs(last_hidden_state, h[:, 0]) (no pooler).
    With `prefix_kv` the tokens' positions start after the prefix, as in our BERT; with `first_only`
    the last layer computes the first position only, as in our BERT."""

    def __init__(self, cfg: DistilBertConfig):
        super().__init__()
        self.config = cfg
        self.name_or_path = cfg.name_or_path
        self.embeddings = Embeddings(cfg)
        self.transformer = Transformer(cfg)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        inputs_embeds=None,
        prefix_kv=None,
        first_only=False,
    ):
        check_inputs(input_ids, inputs_embeds)
        x = self.embeddings(input_ids, inputs_embeds, prefix_length(prefix_kv))  # (batch, seq, dim)
        h = self.transformer(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, dim)
        return BertOutputs(h, h[:, 0])


class DistilBertForSequenceClassification(nn.Module):
    """logits = W_c · Dropout(ReLU(W_pre h[:, 0] + b_pre)) + b_c, dropout rate seq_classif_dropout.
    `first_position_only` (True by default) as in our BERT's sequence head."""

    def __init__(self, cfg: DistilBertConfig, num_labels: int = 2):
        super().__init__()
        self.config = cfg.with_labels(num_labels)
        self.name_or_path = cfg.name_or_path
        self.num_labels = num_labels
        self.distilbert = DistilBertModel(self.config)
        self.pre_classifier = nn.Linear(cfg.dim, cfg.dim)
        self.classifier = nn.Linear(cfg.dim, num_labels)
        self.dropout = Dropout(cfg.seq_classif_dropout)
        self.first_position_only = True

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        h = self.distilbert(
            input_ids, attention_mask, None, inputs_embeds, prefix_kv, self.first_position_only
        ).last_hidden_state
        pooled = torch.relu(self.pre_classifier(h[:, 0]))  # (batch, dim)
        return self.classifier(self.dropout(pooled))  # (batch, labels)


class DistilBertForTokenClassification(nn.Module):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t, dropout rate `dropout`."""

    def __init__(self, cfg: DistilBertConfig, num_labels: int = 2):
        super().__init__()
        self.config = cfg.with_labels(num_labels)
        self.name_or_path = cfg.name_or_path
        self.num_labels = num_labels
        self.distilbert = DistilBertModel(self.config)
        self.dropout = Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.dim, num_labels)

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        h = self.distilbert(input_ids, attention_mask, None, inputs_embeds, prefix_kv).last_hidden_state
        return self.classifier(self.dropout(h))  # (batch, seq, labels)


# What the loader needs to build this family: head name -> class, and the HF weight prefix.
HEADS = {
    None: DistilBertModel,
    "sequence-classification": DistilBertForSequenceClassification,
    "token-classification": DistilBertForTokenClassification,
}
BASE_PREFIX = "distilbert"

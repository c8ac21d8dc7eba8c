"""Modules the encoder families (BERT, DistilBERT, MobileBERT) build from: the pieces whose
computation is the same in all of them. Each keeps HF's attribute names (`dense`, `LayerNorm`,
`dropout`, `layer`), so a family composes them under its own module paths and `state_dict()` keys
stay HF's. What differs between families (MobileBERT's bottlenecks and NoNorm, DistilBERT's
layout, BERT's token types) stays in the family's file.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from models.attention import attention, merge_heads, split_heads, with_prefix
from models.common import ACTIVATIONS, BertOutputs, check_inputs, prefix_length, run_layers
from models.dropout import Dropout


def multi_head_attention(q, k, v, num_heads: int, attention_mask, prefix_kv, dropout_p: float, recompute):
    """softmax(Q Kᵀ/√d + M) V over `num_heads` heads, from the projected q (batch, seq or 1, width)
    and k, v (batch, seq, width); `prefix_kv` (a (key, value) pair of (batch, heads, prefix,
    head_dim) tensors or None) is prepended to the keys and values, always visible. `dropout_p`
    is the rate on the probabilities (0 in eval); `recompute` as in models.attention.attention."""
    q = split_heads(q, num_heads)  # (batch, heads, seq or 1, head_dim)
    k, v = split_heads(k, num_heads), split_heads(v, num_heads)  # (batch, heads, seq, head_dim)
    k, v, mask = with_prefix(k, v, attention_mask, prefix_kv)  # mask (batch, 1, 1, keys) or None
    return merge_heads(attention(q, k, v, mask, dropout_p, recompute))  # (batch, seq or 1, width)


class Intermediate(nn.Module):
    """h = act(W_1 a + b_1), act by config.json's name (models.common.ACTIVATIONS)."""

    def __init__(self, d_in: int, d_ff: int, act: str):
        super().__init__()
        self.dense = nn.Linear(d_in, d_ff)
        self.intermediate_act_fn = ACTIVATIONS[act]()

    def forward(self, a):
        return self.intermediate_act_fn(self.dense(a))  # (batch, seq, d_ff)


class DenseAddNorm(nn.Module):
    """y = Norm(r + Dropout(W x + b)): a projection added to the residual r, then normalised
    (BERT's attention and feed-forward outputs, MobileBERT's as well, with its NoNorm)."""

    def __init__(self, d_in: int, d_out: int, norm: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = norm
        self.dropout = Dropout(dropout)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # (batch, seq, d_out)


class LayerStack(nn.Module):
    """The layers in turn (`layer.0`, `layer.1`, ...); `gradient_checkpointing = True` recomputes
    each layer in backward (torch.utils.checkpoint, use_reentrant=False) while training.
    `prefix_kv` is None or a sequence with one (key, value) pair (or None) per layer; `first_only`
    as in models.common.run_layers."""

    def __init__(self, layers):
        super().__init__()
        self.layer = nn.ModuleList(layers)
        self.gradient_checkpointing = False

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        checkpointing = self.gradient_checkpointing and self.training
        return run_layers(
            self.layer, x, attention_mask, prefix_kv, checkpointing, first_only
        )  # (batch, seq or 1, hidden)


class Pooler(nn.Module):
    """pooled = tanh(W_p h[:, 0] + b_p), the [CLS] position; with `dense=False` h[:, 0] itself
    (MobileBERT without `classifier_activation`, DistilBERT: no weights)."""

    def __init__(self, hidden: int, dense: bool = True):
        super().__init__()
        self.do_activate = dense
        if dense:
            self.dense = nn.Linear(hidden, hidden)
            self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0])) if self.do_activate else h[:, 0]  # (batch, hidden)


class EncoderModel(nn.Module):
    """Embeddings -> layer stack -> pooler; returns BertOutputs(last_hidden_state, pooler_output).

    A family's bare encoder subclasses this and builds, under HF's names, `embeddings` (called as
    (input_ids, token_type_ids, inputs_embeds, past_length)), its layer stack (attribute STACK)
    and `pooler` (None: pooler_output None). With `prefix_kv` the tokens' positions start after
    the prefix (HF's rule for past keys and values, which PEFT prefix tuning inherits), so the
    prefix uses up position embeddings. With `first_only` the last layer computes the first
    position only: last_hidden_state is then (batch, 1, hidden), and pooler_output is unchanged."""

    STACK: ClassVar[str] = "encoder"  # DistilBERT: "transformer"

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.name_or_path = cfg.name_or_path

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        inputs_embeds=None,
        prefix_kv=None,
        first_only=False,
    ) -> BertOutputs:
        check_inputs(input_ids, inputs_embeds)
        x = self.embeddings(input_ids, token_type_ids, inputs_embeds, prefix_length(prefix_kv))
        h = getattr(self, self.STACK)(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, hidden)
        return BertOutputs(h, self.pooler(h) if self.pooler is not None else None)

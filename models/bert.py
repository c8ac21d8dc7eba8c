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

from models.attention import attention, merge_heads, split_heads, with_prefix
from models.common import (
    ACTIVATIONS,
    BertOutputs,
    check_inputs,
    classifier_dropout,
    position_ids,
    prefix_length,
    queries,
    run_layers,
)
from models.config import BertConfig
from models.dropout import Dropout


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
        q = split_heads(
            self.query(queries(x, first_only)), self.num_heads
        )  # (batch, heads, seq or 1, head_dim)
        k = split_heads(self.key(x), self.num_heads)
        v = split_heads(self.value(x), self.num_heads)
        k, v, mask = with_prefix(k, v, attention_mask, prefix_kv)  # mask (batch, 1, 1, keys) or None
        p = self.dropout_p if self.training else 0.0
        return merge_heads(attention(q, k, v, mask, p, self.recompute))  # (batch, seq or 1, hidden)


class BertSelfOutput(nn.Module):
    """a = LN(x + Dropout(W_o ctx + b_o))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, ctx, x):
        return self.LayerNorm(self.dropout(self.dense(ctx)) + x)  # (batch, seq, hidden)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        return self.output(self.self(x, attention_mask, prefix_kv, first_only), queries(x, first_only))


class BertIntermediate(nn.Module):
    """h = GELU(W_1 a + b_1)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.intermediate_act_fn = ACTIVATIONS[cfg.hidden_act]()

    def forward(self, a):
        return self.intermediate_act_fn(self.dense(a))  # (batch, seq, intermediate)


class BertOutput(nn.Module):
    """x' = LN(a + Dropout(W_2 h + b_2))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, h, a):
        return self.LayerNorm(self.dropout(self.dense(h)) + a)  # (batch, seq, hidden)


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        a = self.attention(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, hidden)
        return self.output(self.intermediate(a), a)  # (batch, seq or 1, hidden)


class BertEncoder(nn.Module):
    """A stack of BertLayer. `gradient_checkpointing = True` recomputes each layer in backward
    (torch.utils.checkpoint, use_reentrant=False) while training, trading compute for memory.
    `prefix_kv` is None or a sequence with one (key, value) pair (or None) per layer; `first_only`
    as in models.common.run_layers."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, x, attention_mask=None, prefix_kv=None, first_only=False):
        checkpointing = self.gradient_checkpointing and self.training
        return run_layers(
            self.layer, x, attention_mask, prefix_kv, checkpointing, first_only
        )  # (batch, seq/1, hidden)


class BertPooler(nn.Module):
    """pooled = tanh(W_p h[:, 0] + b_p), the [CLS] position."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0]))  # (batch, hidden)


class BertModel(nn.Module):
    """Embeddings -> encoder -> pooler; returns BertOutputs(last_hidden_state, pooler_output).

    With `prefix_kv` the tokens' positions start after the prefix (HF's rule for past keys and
    values, which PEFT prefix tuning inherits), so the prefix uses up position embeddings.
    With `first_only` the last layer computes the first position only: last_hidden_state is then
    (batch, 1, hidden), and pooler_output is unchanged."""

    def __init__(self, cfg: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = cfg
        self.name_or_path = cfg.name_or_path
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None

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
        x = self.embeddings(input_ids, token_type_ids, inputs_embeds, prefix_length(prefix_kv))
        h = self.encoder(x, attention_mask, prefix_kv, first_only)  # (batch, seq or 1, hidden)
        return BertOutputs(h, self.pooler(h) if self.pooler is not None else None)


class BertForSequenceClassification(nn.Module):
    """logits = W_c · Dropout(pooled) + b_c, dropout rate classifier_dropout ?? hidden_dropout_prob.

    The pooler reads the first position only, so with the config's `first_position_only` (True by
    default) the last layer computes that position alone (its keys and values still read every
    token): the same logits and gradients for about 1/num_hidden_layers less work. Build with
    `first_position_only=False` in the config (or `load_pretrained(..., first_position_only=False)`)
    for the full last layer (the same value up to float rounding; dropout then draws from the
    random stream in another order)."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2):
        super().__init__()
        self.config = cfg.with_labels(num_labels)
        self.name_or_path = cfg.name_or_path
        self.num_labels = num_labels
        self.bert = BertModel(self.config)
        self.dropout = Dropout(classifier_dropout(cfg))
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        pooled = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds,
            prefix_kv,
            self.config.first_position_only,
        ).pooler_output
        return self.classifier(self.dropout(pooled))  # (batch, labels)


class BertForTokenClassification(nn.Module):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t; no pooler (as HF builds it)."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2):
        super().__init__()
        self.config = cfg.with_labels(num_labels)
        self.name_or_path = cfg.name_or_path
        self.num_labels = num_labels
        self.bert = BertModel(self.config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout(cfg))
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        h = self.bert(input_ids, attention_mask, token_type_ids, inputs_embeds, prefix_kv).last_hidden_state
        return self.classifier(self.dropout(h))  # (batch, seq, labels)


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

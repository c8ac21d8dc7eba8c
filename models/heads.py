"""The task heads, one class per kind, for every encoder family.

A family's head is a subclass that sets class-level settings and nothing else, so its class name
is HF's (`architectures` in config.json) and its keys carry HF's prefix:

    BASE               attribute name of the bare encoder, HF's weight prefix ("bert", ...)
    ENCODER            the family's bare encoder class (a models.blocks.EncoderModel)
    dropout_rate(cfg)  the head's dropout rate, a staticmethod (default: classifier_dropout, else
                       hidden_dropout_prob, BERT's rule; DistilBERT states its own)
    PRE_CLASSIFIER     sequence head only: a ReLU(W_pre ·) layer before the classifier (DistilBERT)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from models.common import classifier_dropout
from models.dropout import Dropout


def _encoder_and_labels(head: nn.Module, cfg, num_labels: int, **encoder_kwargs) -> None:
    """The part every head's __init__ shares: the config with `num_labels` labels, the name, and
    the bare encoder under the family's prefix."""
    head.config = cfg.with_labels(num_labels)
    head.name_or_path = cfg.name_or_path
    head.num_labels = num_labels
    setattr(head, head.BASE, head.ENCODER(head.config, **encoder_kwargs))


def heads_table(model: type, sequence: type, token: type) -> dict:
    """A family's classes by `load_pretrained`'s head name (None: the bare encoder)."""
    return {None: model, "sequence-classification": sequence, "token-classification": token}


class SequenceClassification(nn.Module):
    """logits = W_c · Dropout(pooled) + b_c, pooled = the encoder's pooler_output; with
    PRE_CLASSIFIER (DistilBERT) pooled = ReLU(W_pre h[:, 0] + b_pre) instead.

    The pooler reads the first position only, so with the config's `first_position_only` (True by
    default) the last layer computes that position alone (its keys and values still read every
    token): the same logits and gradients for about 1/num_hidden_layers less work. Build with
    `first_position_only=False` in the config (or `load_pretrained(..., first_position_only=False)`)
    for the full last layer (the same value up to float rounding; dropout then draws from the
    random stream in another order)."""

    BASE: ClassVar[str]
    ENCODER: ClassVar[type]
    PRE_CLASSIFIER: ClassVar[bool] = False
    dropout_rate = staticmethod(classifier_dropout)  # classifier_dropout ?? hidden_dropout_prob

    def __init__(self, cfg, num_labels: int = 2):
        super().__init__()
        _encoder_and_labels(self, cfg, num_labels)
        if self.PRE_CLASSIFIER:
            self.pre_classifier = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = Dropout(self.dropout_rate(cfg))
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        base = getattr(self, self.BASE)
        first_only = self.config.first_position_only
        out = base(input_ids, attention_mask, token_type_ids, inputs_embeds, prefix_kv, first_only)
        pooled = out.pooler_output  # (batch, hidden)
        if self.PRE_CLASSIFIER:
            pooled = torch.relu(self.pre_classifier(pooled))  # (batch, hidden)
        return self.classifier(self.dropout(pooled))  # (batch, labels)


class TokenClassification(nn.Module):
    """logits_t = W_c · Dropout(h_t) + b_c for every token t; the encoder without a pooler (as HF
    builds it)."""

    BASE: ClassVar[str]
    ENCODER: ClassVar[type]
    dropout_rate = staticmethod(classifier_dropout)

    def __init__(self, cfg, num_labels: int = 2):
        super().__init__()
        _encoder_and_labels(self, cfg, num_labels, add_pooling_layer=False)
        self.dropout = Dropout(self.dropout_rate(cfg))
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, prefix_kv=None
    ):
        base = getattr(self, self.BASE)
        h = base(input_ids, attention_mask, token_type_ids, inputs_embeds, prefix_kv).last_hidden_state
        return self.classifier(self.dropout(h))  # (batch, seq, labels)

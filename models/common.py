"""Pieces the encoder families (BERT, DistilBERT, MobileBERT) share: plain functions and tables,
no base classes. Each family keeps its own modules (and HF's module paths); what is here is the
logic that is literally the same in all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

# config.json activation name -> module factory (as HF's ACT2FN for these names)
ACTIVATIONS = {
    "gelu": nn.GELU,  # exact erf
    "relu": nn.ReLU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
}


class BertOutputs(NamedTuple):
    """What every bare encoder returns (BERT's names, also for DistilBERT and MobileBERT)."""

    last_hidden_state: torch.Tensor  # (batch, seq, hidden)
    pooler_output: torch.Tensor | None  # (batch, hidden); None without a pooler


def check_inputs(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> None:
    """A model takes token ids or ready embeddings, exactly one of the two."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")


def prefix_length(prefix_kv) -> int:
    """Number of prefix positions in a per-layer list of (key, value) pairs (0 for None)."""
    return next((kv[0].shape[2] for kv in prefix_kv or () if kv is not None), 0)


def position_ids(table: nn.Embedding, past_length: int, t: int, device) -> torch.Tensor:
    """Positions past_length .. past_length + t - 1 (after a key/value prefix, as HF with a cache),
    refused by name when they run past the position-embedding table."""
    if past_length + t > table.num_embeddings:
        raise ValueError(
            f"sequence length {t} (+ {past_length} prefix positions) exceeds "
            f"max_position_embeddings={table.num_embeddings}; "
            f"tokenize with a smaller max_length"
        )
    return torch.arange(past_length, past_length + t, device=device)  # (seq,)


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    attention_mask=None,
    prefix_kv=None,
    checkpointing: bool = False,
    first_only: bool = False,
) -> torch.Tensor:
    """x through each layer in turn, layer i with `prefix_kv[i]` (prefix_kv None or one (key, value)
    pair or None per layer). `checkpointing` (the encoder's `gradient_checkpointing and training`)
    recomputes each layer in backward (torch.utils.checkpoint, use_reentrant=False) when grad is on.

    `first_only`: the last layer computes its output at the first position only, (batch, 1, hidden),
    its keys and values still reading every position: what a head that reads h[:, 0] needs, for
    about 1/num_layers of the work (the sequence-classification heads' `first_position_only`)."""
    for i, layer in enumerate(layers):
        pkv = prefix_kv[i] if prefix_kv is not None else None
        first = first_only and i == len(layers) - 1
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(layer, x, attention_mask, pkv, first, use_reentrant=False)
        else:
            x = layer(x, attention_mask, pkv, first)  # (batch, seq or 1, hidden)
    return x


def queries(x: torch.Tensor, first_only: bool) -> torch.Tensor:
    """The rows a layer computes its output for: all of x (batch, seq, hidden), or with `first_only`
    the first position, (batch, 1, hidden) (a view)."""
    return x[:, :1] if first_only else x


def classifier_dropout(cfg) -> float:
    """HF's head dropout rate: `classifier_dropout`, or `hidden_dropout_prob` when that is None."""
    return cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob

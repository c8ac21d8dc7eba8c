"""`MobileBertConfig`: the architecture settings of a HuggingFace MobileBERT `config.json`, checked and
frozen.

Defaults are google/mobilebert-uncased: 24 layers, body 512, bottleneck ("true hidden") 128,
128-wide trigram embeddings, 4 heads, FFN 512, 4 stacked feed-forward blocks, NoNorm.
`true_hidden_size` is derived as in HF (intra_bottleneck_size with bottlenecks, else hidden_size);
a config.json that states a different value is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import models.hf_config as hf_config
from models.common import ACTIVATIONS

NORMALIZATIONS = ("no_norm", "layer_norm")


@dataclass(frozen=True)
class MobileBertConfig:
    vocab_size: int = 30522
    hidden_size: int = 512
    num_hidden_layers: int = 24
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    embedding_size: int = 128
    trigram_input: bool = True
    use_bottleneck: bool = True
    intra_bottleneck_size: int = 128
    use_bottleneck_attention: bool = False
    key_query_shared_bottleneck: bool = True
    num_feedforward_networks: int = 4
    normalization_type: str = "no_norm"
    classifier_activation: bool = True  # pooler = tanh(dense(h[:, 0])); False: h[:, 0]
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob
    id2label: dict | None = None
    label2id: dict | None = None
    model_type: str = "mobilebert"
    name_or_path: str = ""
    # runtime settings, not architecture: never read from nor written to config.json (docs/cuda.md)
    recompute_attention: bool = (
        True  # CPU training with attention dropout: backward recomputes the probabilities
    )
    first_position_only: bool = True  # sequence heads: the last layer computes the first position only
    extra: dict = field(default_factory=dict, compare=False)  # unknown keys, written back on save

    def __post_init__(self):
        hf_config.check_family(self, "hidden_act", "true_hidden_size", "num_attention_heads", ACTIVATIONS)
        if self.normalization_type not in NORMALIZATIONS:
            raise ValueError(
                f"normalization_type={self.normalization_type!r}; expected one of {NORMALIZATIONS}"
            )
        if (
            self.use_bottleneck
            and not self.use_bottleneck_attention
            and not self.key_query_shared_bottleneck
            and self.intra_bottleneck_size != self.hidden_size
        ):
            raise ValueError(
                "use_bottleneck without use_bottleneck_attention or key_query_shared_bottleneck "
                f"feeds the {self.hidden_size}-wide body into {self.intra_bottleneck_size}-wide "
                "query/key layers (HF fails on it too); set one of the two to true"
            )
        stated = self.extra.get("true_hidden_size")
        if stated is not None and stated != self.true_hidden_size:
            raise ValueError(
                f"true_hidden_size={stated} in the config, but use_bottleneck={self.use_bottleneck} "
                f"makes it {self.true_hidden_size}; fix the config.json"
            )
        hf_config.normalise_labels(self)

    @property
    def true_hidden_size(self) -> int:
        """Width of the attention and feed-forward blocks (the bottleneck)."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

    head_dim = property(lambda self: self.true_hidden_size // self.num_attention_heads)
    num_labels = property(lambda self: len(self.id2label) if self.id2label else None)

    # config.json reading and writing: models/hf_config.py (shared with BERT)
    from_dict = classmethod(hf_config.from_dict)  # (d, source="config") -> MobileBertConfig
    from_json = classmethod(hf_config.from_json)  # (path) -> MobileBertConfig
    with_labels = hf_config.with_labels  # (num_labels) -> MobileBertConfig

    def to_dict(self, architectures=("MobileBertModel",)) -> dict:
        return hf_config.to_dict(self, architectures)

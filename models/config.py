"""Every model family's config in one place: BertConfig, DistilBertConfig, MobileBertConfig.

Each is the architecture settings of a HuggingFace `config.json`, checked and frozen: flat typed
fields with config.json's own names, plus `model_type`, `id2label`/`label2id`, `name_or_path` and
`extra` (unknown keys, kept and written back on save). Only what our encoders implement is accepted;
anything else (relative position embeddings, an activation we do not have, another family) is
refused by name, with the fix, instead of silently computing something other than the checkpoint's
own model. The fields and methods every family shares are declared once, in `ModelConfig`; the
reading, writing and checks behind them live in models/hf_config.py (`validate`, `from_dict`,
`to_dict`), driven by three class-level settings of each family:

    CHECK   (activation field, width field or property, heads field): width must split into heads
    FIXED   {config.json key: the only value we implement}: absent is fine, written back on save
            (default: none)
    ARCHITECTURES  the `architectures` entry written by to_dict for the bare encoder
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import models.hf_config as hf_config

NORMALIZATIONS = ("no_norm", "layer_norm")  # MobileBERT


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What every family's config has besides its architecture fields, and the methods they share.

    Its fields are keyword-only, so a family's own fields keep their positions in __init__. A
    family declares its architecture fields, `model_type` (its default is the family's name),
    CHECK and ARCHITECTURES, and FIXED when it has one; it never repeats what is here."""

    FIXED: ClassVar = {}  # config.json keys with the only value implemented (none by default)

    id2label: dict | None = None  # {int: str}, kept for heads
    label2id: dict | None = None  # {str: int}
    name_or_path: str = ""  # where it was read from (not an architecture field)
    # runtime settings, not architecture: never read from nor written to config.json (docs/cuda.md)
    # recompute_attention: CPU training with attention dropout recomputes the probabilities in backward
    # first_position_only: sequence heads' last layer computes the first position only
    recompute_attention: bool = True
    first_position_only: bool = True
    extra: dict = field(default_factory=dict, compare=False)  # unknown keys, written back on save

    def __post_init__(self):
        hf_config.validate(self)  # a family with more rules runs this first, then its own checks

    @property
    def head_dim(self) -> int:
        """Width of one attention head: the CHECK width over the CHECK head count."""
        _, width, heads = type(self).CHECK
        return getattr(self, width) // getattr(self, heads)

    # config.json reading and writing: models/hf_config.py, the same for every family
    from_dict = classmethod(hf_config.from_dict)  # (d, source="config") -> config
    from_json = classmethod(hf_config.from_json)  # (path: config.json or its folder) -> config
    with_labels = hf_config.with_labels  # (num_labels) -> a copy with that many labels
    to_dict = hf_config.to_dict  # (architectures=ARCHITECTURES) -> dict in HF's layout
    num_labels = property(lambda self: len(self.id2label) if self.id2label else None)


@dataclass(frozen=True)
class BertConfig(ModelConfig):
    CHECK: ClassVar = ("hidden_act", "hidden_size", "num_attention_heads")
    FIXED: ClassVar = {"position_embedding_type": "absolute"}  # relative embeddings: not implemented
    ARCHITECTURES: ClassVar = ("BertModel",)

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # "gelu" is exact erf GELU, as HF's ACT2FN["gelu"]
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob
    model_type: str = "bert"


@dataclass(frozen=True)
class DistilBertConfig(ModelConfig):
    """The fields of HF's DistilBertConfig that define the computation (config.json names)."""

    CHECK: ClassVar = ("activation", "dim", "n_heads")
    ARCHITECTURES: ClassVar = ("DistilBertModel",)

    vocab_size: int = 30522
    dim: int = 768
    n_layers: int = 6
    n_heads: int = 12
    hidden_dim: int = 3072
    activation: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False  # the table's values come from the checkpoint either way
    initializer_range: float = 0.02
    pad_token_id: int = 0
    model_type: str = "distilbert"

    # BERT-style names, so generic code (prefix sizes, presets) reads every family the same way
    hidden_size = property(lambda self: self.dim)
    num_hidden_layers = property(lambda self: self.n_layers)
    num_attention_heads = property(lambda self: self.n_heads)


@dataclass(frozen=True)
class MobileBertConfig(ModelConfig):
    """Defaults are google/mobilebert-uncased: 24 layers, body 512, bottleneck ("true hidden") 128,
    128-wide trigram embeddings, 4 heads, FFN 512, 4 stacked feed-forward blocks, NoNorm.
    `true_hidden_size` is derived as in HF (intra_bottleneck_size with bottlenecks, else
    hidden_size); a config.json that states a different value is refused."""

    CHECK: ClassVar = ("hidden_act", "true_hidden_size", "num_attention_heads")
    ARCHITECTURES: ClassVar = ("MobileBertModel",)

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
    model_type: str = "mobilebert"

    def __post_init__(self):
        super().__post_init__()
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

    @property
    def true_hidden_size(self) -> int:
        """Width of the attention and feed-forward blocks (the bottleneck)."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

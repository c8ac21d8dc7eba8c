"""`BertConfig`: the architecture settings of a HuggingFace BERT `config.json`, checked and frozen.

Only what our encoder implements is accepted; anything else (relative position embeddings, an
activation we do not have, another model family) is refused by name, with the fix, instead of
silently computing something different from the checkpoint's own model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import models.hf_config as hf_config
from models.common import ACTIVATIONS

SUPPORTED_ACTS = tuple(ACTIVATIONS)  # ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
SUPPORTED_POSITIONS = ("absolute",)
# model_type -> config class; other families (issue 9) register here.
MODEL_TYPES: dict = {}


@dataclass(frozen=True)
class BertConfig:
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
    id2label: dict | None = None  # {int: str}, kept for heads
    label2id: dict | None = None  # {str: int}
    model_type: str = "bert"
    name_or_path: str = ""  # where it was read from (not an architecture field)
    # runtime settings, not architecture: never read from nor written to config.json (docs/cuda.md)
    recompute_attention: bool = (
        True  # CPU training with attention dropout: backward recomputes the probabilities
    )
    first_position_only: bool = True  # sequence heads: the last layer computes the first position only
    extra: dict = field(default_factory=dict, compare=False)  # unknown keys, written back on save

    def __post_init__(self):
        hf_config.check_family(
            self,
            "hidden_act",
            "hidden_size",
            "num_attention_heads",
            SUPPORTED_ACTS,
            fix=" (use a checkpoint with one of these activations)",
        )
        hf_config.normalise_labels(self, derive_label2id=False)

    @property
    def num_labels(self) -> int | None:
        return len(self.id2label) if self.id2label else None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> BertConfig:
        """Build from a config.json dict; `source` names the file in error messages."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            known = ", ".join(sorted({"bert", *MODEL_TYPES}))
            raise ValueError(
                f"{source}: model_type={model_type!r} is not supported by BertConfig; "
                f"supported model types: {known}"
            )
        pos = d.get("position_embedding_type", "absolute") or "absolute"
        if pos not in SUPPORTED_POSITIONS:
            raise ValueError(
                f"{source}: position_embedding_type={pos!r} is not supported; expected "
                f"'absolute' (or the key absent). Relative position embeddings are not implemented"
            )
        if d.get("hidden_act", "gelu") not in SUPPORTED_ACTS:
            raise ValueError(
                f"{source}: hidden_act={d.get('hidden_act')!r} is not supported; "
                f"expected one of {SUPPORTED_ACTS}"
            )
        known, extra = hf_config.split_keys(cls, d, ignore=("position_embedding_type",))
        n = extra.pop("num_labels", None)  # HF writes id2label; num_labels is derived from it
        if n is not None and not known.get("id2label"):
            known["id2label"] = {i: f"LABEL_{i}" for i in range(int(n))}
        return hf_config.construct(cls, known, extra, d, source)

    # config.json reading and writing: models/hf_config.py (shared with DistilBERT and MobileBERT)
    from_json = classmethod(hf_config.from_json)  # (path) -> BertConfig
    with_labels = hf_config.with_labels  # (num_labels) -> BertConfig

    def to_dict(self, architectures=("BertModel",)) -> dict:
        return hf_config.to_dict(self, architectures, position_embedding_type="absolute")


def _replace(cfg: BertConfig, **changes) -> BertConfig:
    return replace(cfg, **changes)

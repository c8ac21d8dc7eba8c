"""`BertConfig`: the architecture settings of a HuggingFace BERT `config.json`, checked and frozen.

Only what our encoder implements is accepted; anything else (relative position embeddings, an
activation we do not have, another model family) is refused by name, with the fix, instead of
silently computing something different from the checkpoint's own model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

SUPPORTED_ACTS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
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
    hidden_act: str = "gelu"                    # "gelu" is exact erf GELU, as HF's ACT2FN["gelu"]
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: Optional[float] = None  # None: use hidden_dropout_prob
    id2label: Optional[dict] = None             # {int: str}, kept for heads
    label2id: Optional[dict] = None             # {str: int}
    model_type: str = "bert"
    name_or_path: str = ""                      # where it was read from (not an architecture field)
    extra: dict = field(default_factory=dict, compare=False)  # unknown keys, written back on save

    def __post_init__(self):
        if self.model_type != "bert":
            raise ValueError(f"BertConfig got model_type={self.model_type!r}; expected 'bert'")
        if self.hidden_act not in SUPPORTED_ACTS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; expected one of "
                             f"{SUPPORTED_ACTS} (use a checkpoint with one of these activations)")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.id2label is not None:   # JSON keys are strings; normalise to int -> str
            object.__setattr__(self, "id2label", {int(k): str(v) for k, v in self.id2label.items()})
        if self.label2id is not None:
            object.__setattr__(self, "label2id", {str(k): int(v) for k, v in self.label2id.items()})

    @property
    def num_labels(self) -> Optional[int]:
        return len(self.id2label) if self.id2label else None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "BertConfig":
        """Build from a config.json dict; `source` names the file in error messages."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            known = ", ".join(sorted({"bert", *MODEL_TYPES}))
            raise ValueError(f"{source}: model_type={model_type!r} is not supported by BertConfig; "
                             f"supported model types: {known}")
        pos = d.get("position_embedding_type", "absolute") or "absolute"
        if pos not in SUPPORTED_POSITIONS:
            raise ValueError(f"{source}: position_embedding_type={pos!r} is not supported; expected "
                             f"'absolute' (or the key absent). Relative position embeddings are not implemented")
        if d.get("hidden_act", "gelu") not in SUPPORTED_ACTS:
            raise ValueError(f"{source}: hidden_act={d.get('hidden_act')!r} is not supported; "
                             f"expected one of {SUPPORTED_ACTS}")
        names = {f.name for f in fields(cls)} - {"extra", "name_or_path"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k != "position_embedding_type"}
        n = extra.pop("num_labels", None)          # HF writes id2label; num_labels is derived from it
        if n is not None and not known.get("id2label"):
            known["id2label"] = {i: f"LABEL_{i}" for i in range(int(n))}
        try:
            return cls(**known, extra=extra, name_or_path=str(d.get("_name_or_path", "")))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from e

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no config.json; expected a HuggingFace model folder "
                                    f"(config.json + model.safetensors)")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        return cls.from_dict(d, source=str(path))

    def to_dict(self, architectures=("BertModel",)) -> dict:
        """HF's config.json layout (what `transformers` reads back)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "name_or_path")}
        out = {k: v for k, v in self.extra.items()
               if k not in ("architectures", "transformers_version", "_name_or_path")}
        out.update(architectures=list(architectures), position_embedding_type="absolute", **d)
        if self.id2label is None:
            out.pop("id2label"), out.pop("label2id")
        else:
            out["id2label"] = {str(i): v for i, v in self.id2label.items()}
            out["label2id"] = self.label2id or {v: i for i, v in self.id2label.items()}
        return out

    def with_labels(self, num_labels: int) -> "BertConfig":
        """A copy whose head has `num_labels` classes (keeps existing names when the count fits)."""
        if self.id2label and len(self.id2label) == num_labels:
            return self
        id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        return _replace(self, id2label=id2label, label2id={v: i for i, v in id2label.items()})


def _replace(cfg: BertConfig, **changes) -> BertConfig:
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    d.update(changes)
    return type(cfg)(**d)

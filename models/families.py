"""The model families `load_pretrained` can build, keyed by config.json's `model_type`.

Plain data the loader dispatches on: the config class, the head classes, the weight prefix of the
HF `*For*` classes, the modules that form the task head, and the key prefixes of pretraining heads
that are never loaded. An unknown `model_type` is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models import bert, distilbert, hf_config, mobilebert
from models.config import BertConfig, DistilBertConfig, MobileBertConfig


@dataclass(frozen=True)
class Family:
    model_type: str
    config: type  # has from_json, to_dict, with_labels
    heads: dict  # None | "sequence-classification" | "token-classification" -> class
    prefix: str  # weight prefix under the heads: "bert", "distilbert", "mobilebert"
    head_modules: tuple[str, ...]  # task-head modules, loaded when their shapes fit, else initialised
    pretraining: tuple[str, ...]  # key prefixes of pretraining heads, ignored


def _family(config: type, module, head_modules: tuple, pretraining: tuple) -> Family:
    """A family from its config class and its module's HEADS; the prefix is the heads' BASE."""
    prefix = module.HEADS["sequence-classification"].BASE
    return Family(config.model_type, config, module.HEADS, prefix, head_modules, pretraining)


FAMILIES = {
    "bert": _family(BertConfig, bert, ("classifier",), ("cls.",)),
    "distilbert": _family(
        DistilBertConfig,
        distilbert,
        ("pre_classifier", "classifier"),
        ("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
    ),
    "mobilebert": _family(MobileBertConfig, mobilebert, ("classifier",), ("cls.",)),
}
ARCHITECTURES = {cls: cls.__name__ for fam in FAMILIES.values() for cls in fam.heads.values()}


def family_of(config_file) -> Family:
    """The family named by `config_file`'s `model_type` (absent means "bert", as old BERT files)."""
    config_file = Path(config_file)
    if not config_file.exists():
        raise FileNotFoundError(
            f"{config_file}: no config.json; expected a HuggingFace model folder "
            f"(config.json + model.safetensors)"
        )
    model_type = hf_config.read_json_object(config_file).get("model_type", "bert")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ValueError(
            f"{config_file}: model_type={model_type!r} is not supported; supported model "
            f"types: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]

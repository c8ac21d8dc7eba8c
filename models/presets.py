"""Adapter target presets per model family, as Taylor et al. 2024 used them (plain data).

| preset     | LoRA targets      | IA³ targets (ff: scaled on the input)     | trained head              |
|------------|-------------------|-------------------------------------------|---------------------------|
| bert       | query,value       | key,value,output.dense (ff: output.dense) | classifier                |
| tiny       | query,key,value   | key,value,output.dense (ff: output.dense) | classifier                |
| mobile     | query,key,value   | key,value,output.dense (ff: output.dense) | classifier                |
| distilbert | q_lin,k_lin,v_lin | k_lin,v_lin,lin1,lin2 (ff: lin1,lin2)     | pre_classifier,classifier |

Targets match a module path by equality or by the suffix "." + name (PEFT's rule), so
`output.dense` hits both BERT's attention.output.dense and output.dense (and MobileBERT's
ffn.N.output.dense). The head is what PEFT's SEQ_CLS `modules_to_save=["classifier", "score"]`
trains: its plain-suffix match also catches DistilBERT's `pre_classifier`, so that preset lists it.

Two ways to pick a preset:
  * `family_preset(model_type)`: by architecture (bert -> bert, distilbert -> distilbert,
    mobilebert -> mobile). A 4-layer 312-wide BERT is just "bert" here.
  * `paper_preset(name, model_type)`: the paper's rule, on the checkpoint's *name or path*: names
    containing "mobile" or "tiny" get query,key,value (so TinyBioBERT, a BERT, gets 3 LoRA targets, 59,904
    parameters); DistilBERT architectures get the distilbert preset; everything else gets PEFT's
    BERT default. nlpie/distil-biobert is a 6-layer BERT whose name lacks "distilbert": "bert".
This module knows module names only; it imports nothing from minipeft.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    lora_targets: tuple[str, ...]
    ia3_targets: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]  # subset of ia3_targets whose vector scales the input
    head: tuple[str, ...]  # modules trained in full with the adapter (modules_to_save)


_BERT_IA3 = dict(
    ia3_targets=("key", "value", "output.dense"), ia3_feedforward=("output.dense",), head=("classifier",)
)
PRESETS: dict[str, Preset] = {
    "bert": Preset("bert", lora_targets=("query", "value"), **_BERT_IA3),
    "tiny": Preset("tiny", lora_targets=("query", "key", "value"), **_BERT_IA3),
    "mobile": Preset("mobile", lora_targets=("query", "key", "value"), **_BERT_IA3),
    "distilbert": Preset(
        "distilbert",
        lora_targets=("q_lin", "k_lin", "v_lin"),
        ia3_targets=("k_lin", "v_lin", "lin1", "lin2"),
        ia3_feedforward=("lin1", "lin2"),
        head=("pre_classifier", "classifier"),
    ),
}
FAMILY_PRESETS = {"bert": "bert", "distilbert": "distilbert", "mobilebert": "mobile"}
RULES = ("paper", "family")


def get_preset(name: str) -> Preset:
    """The preset called `name` (one of PRESETS)."""
    if name not in PRESETS:
        raise KeyError(f"no target preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def family_preset(model_type: str) -> Preset:
    """The preset of an architecture, by config.json's `model_type`."""
    if model_type not in FAMILY_PRESETS:
        raise KeyError(
            f"no target preset for model_type={model_type!r}; expected one of "
            f"{sorted(FAMILY_PRESETS)}, or name the targets explicitly"
        )
    return PRESETS[FAMILY_PRESETS[model_type]]


def paper_preset(name_or_path: str, model_type: str) -> Preset:
    """The paper's name rule: "mobile" or "tiny" anywhere in the lower-cased name or path ->
    query,key,value. The whole path counts, as in the authors' script, which also catches HF's cache
    layout (.../models--nlpie--tiny-biobert/snapshots/<hash>); a parent folder named "tiny-runs"
    therefore matches too: pick the preset by name then. Architectures whose module names differ
    from BERT's keep their family preset."""
    family = family_preset(model_type)
    if family.name != "bert":
        return family
    base = str(name_or_path).lower()
    if "mobile" in base:
        return PRESETS["mobile"]
    if "tiny" in base:
        return PRESETS["tiny"]
    return family


def choose_preset(rule: str, name_or_path: str, model_type: str) -> Preset:
    """`rule` is "paper" (name rule), "family" (architecture) or a preset name from PRESETS."""
    if rule == "paper":
        return paper_preset(name_or_path, model_type)
    if rule == "family":
        return family_preset(model_type)
    if rule in PRESETS:
        return PRESETS[rule]
    raise ValueError(f"preset rule {rule!r} is not known; expected one of {list(RULES) + sorted(PRESETS)}")

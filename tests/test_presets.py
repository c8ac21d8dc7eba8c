"""Target presets: the paper's name rule, and the paper's trainable-parameter counts (Taylor et al.
2024, Table of trainable parameters) reproduced on full-size models built on the meta device."""

import pytest
import torch
from torch import nn

from models.bert import BertForSequenceClassification
from models.config import BertConfig, MobileBertConfig
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.mobilebert import MobileBertForSequenceClassification
from models.presets import PRESETS, choose_preset, family_preset, get_preset, paper_preset

TINY = BertConfig(
    vocab_size=28996, hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200
)
DISTIL_BIOBERT = BertConfig(vocab_size=28996, num_hidden_layers=6)  # a 6-layer BertModel


def _build(cls, cfg):
    with torch.device("meta"):
        return cls(cfg, num_labels=2)


def _matches(path, targets):
    return any(path == t or path.endswith("." + t) for t in targets)


def lora_count(model, targets, r=8):
    """Σ r·(d_in + d_out) over the targeted nn.Linear modules (A is r×in, B is out×r)."""
    return sum(
        r * (m.in_features + m.out_features)
        for p, m in model.named_modules()
        if isinstance(m, nn.Linear) and _matches(p, targets)
    )


def ia3_count(model, targets, feedforward):
    """One vector per targeted nn.Linear: d_in for feed-forward targets, else d_out."""
    return sum(
        m.in_features if _matches(p, feedforward) else m.out_features
        for p, m in model.named_modules()
        if isinstance(m, nn.Linear) and _matches(p, targets)
    )


def head_count(model, head):
    return sum(p.numel() for name, p in model.named_parameters() if _matches(name.rsplit(".", 1)[0], head))


# model, name as the paper ran it, model_type, paper's LoRA r=8 count, IA3 count,
# head params beyond the classifier
PAPER = [
    (
        "BioBERT",
        BertForSequenceClassification,
        BertConfig(vocab_size=28996),
        "dmis-lab/biobert-v1.1",
        "bert",
        294_912,
        64_512,
        0,
    ),
    ("TinyBioBERT", BertForSequenceClassification, TINY, "nlpie/tiny-biobert", "bert", 59_904, 8_544, 0),
    (
        "distil-biobert",
        BertForSequenceClassification,
        DISTIL_BIOBERT,
        "nlpie/distil-biobert",
        "bert",
        147_456,
        32_256,
        0,
    ),
    (
        "BioMobileBERT",
        MobileBertForSequenceClassification,
        MobileBertConfig(),
        "nlpie/bio-mobilebert",
        "mobilebert",
        221_184,
        58_368,
        0,
    ),
    (
        "BioDistilBERT",
        DistilBertForSequenceClassification,
        DistilBertConfig(),
        "nlpie/bio-distilbert-uncased",
        "distilbert",
        221_184,
        32_256,
        590_592,
    ),
]


@pytest.mark.parametrize(
    "label, cls, cfg, name, model_type, lora, ia3, pre", PAPER, ids=[p[0] for p in PAPER]
)
def test_paper_counts_by_formula(label, cls, cfg, name, model_type, lora, ia3, pre):
    model = _build(cls, cfg)
    preset = paper_preset(name, model_type)
    assert lora_count(model, preset.lora_targets) == lora
    assert ia3_count(model, preset.ia3_targets, preset.ia3_feedforward) == ia3
    classifier = cfg.hidden_size * 2 + 2
    assert head_count(model, preset.head) == classifier + pre


def test_mobilebert_count_follows_the_papers_shapes():
    """q 128->128, k 128->128, v 512->128 in 24 layers (the value reads the 512-wide body)."""
    model = _build(MobileBertForSequenceClassification, MobileBertConfig())
    att = model.mobilebert.encoder.layer[0].attention.self
    assert [(m.in_features, m.out_features) for m in (att.query, att.key, att.value)] == [
        (128, 128),
        (128, 128),
        (512, 128),
    ]
    assert lora_count(model, ("query", "key", "value")) == 8 * (256 + 256 + 640) * 24


def test_name_rule_and_family_rule():
    assert paper_preset("nlpie/tiny-biobert", "bert").lora_targets == ("query", "key", "value")
    assert paper_preset("/ckpt/TinyClinicalBERT/", "bert").name == "tiny"
    assert (
        paper_preset("~/.cache/huggingface/hub/models--nlpie--tiny-biobert/snapshots/0a1b", "bert").name
        == "tiny"
    )
    assert paper_preset("/models/biobert-v1.1", "bert").name == "bert"
    assert paper_preset("google/mobilebert-uncased", "mobilebert").name == "mobile"
    assert paper_preset("nlpie/distil-biobert", "bert").name == "bert"
    assert paper_preset("anything", "distilbert").name == "distilbert"
    assert (
        family_preset("bert").name == "bert"
        and choose_preset("family", "nlpie/tiny-biobert", "bert").name == "bert"
    )
    assert choose_preset("tiny", "x", "bert") is PRESETS["tiny"]
    for p in PRESETS.values():
        assert set(p.ia3_feedforward) <= set(p.ia3_targets)


def test_unknown_names_are_refused_by_name():
    with pytest.raises(KeyError, match="roberta"):
        family_preset("roberta")
    with pytest.raises(KeyError, match="huge"):
        get_preset("huge")
    with pytest.raises(ValueError, match="nearest"):
        choose_preset("nearest", "x", "bert")


@pytest.mark.parametrize(
    "label, cls, cfg, name, model_type, lora, ia3, pre", PAPER, ids=[p[0] for p in PAPER]
)
def test_paper_counts_with_minipeft_inject(label, cls, cfg, name, model_type, lora, ia3, pre):
    """The same counts through minipeft's inject + summary, the path `tasks.finetune` takes."""
    from minipeft import IA3Config, LoraConfig, inject, summary

    preset = paper_preset(name, model_type)
    classifier = cfg.hidden_size * 2 + 2
    model = _build(cls, cfg)
    inject(model, LoraConfig(r=8, alpha=8, targets=preset.lora_targets, modules_to_save=preset.head))
    s = summary(model)
    assert (s.adapter, s.head, s.trainable) == (lora, classifier + pre, lora + classifier + pre)
    model = _build(cls, cfg)
    inject(
        model,
        IA3Config(
            targets=preset.ia3_targets, feedforward=preset.ia3_feedforward, modules_to_save=preset.head
        ),
    )
    assert (summary(model).adapter, summary(model).head) == (ia3, classifier + pre)

"""The paper's §2.1 counts on random-weight BERTs of its shapes (our models, built on the meta device).

Adapter counts are checked against the LoRA formula r·(in + out) per module and the IA³ rule
(out for key/value, in for both output.dense), and the denominators against the paper's totals
(BioBERT / TinyBioBERT with a 2-label head, vocab 28,996)."""

import pytest
import torch

from minipeft import IA3Config, LoraConfig, inject, summary

models = pytest.importorskip("models")

BASE = dict(vocab_size=28996)  # BioBERT: 12 x 768, FFN 3072
TINY = dict(vocab_size=28996, hidden_size=312, num_hidden_layers=4, intermediate_size=1200)


def _bert(shape):
    with torch.device("meta"):
        return models.BertForSequenceClassification(models.BertConfig(**shape), num_labels=2)


@pytest.mark.parametrize(
    "shape, targets, total",
    [(BASE, ("query", "value"), 108_311_810), (TINY, ("query", "key", "value"), 13_874_762)],
)
def test_lora_counts(shape, targets, total):
    model = _bert(shape)
    inject(model, LoraConfig(r=8, alpha=8, targets=targets, modules_to_save=("classifier",)))
    s = summary(model)
    h, layers = shape.get("hidden_size", 768), shape.get("num_hidden_layers", 12)
    assert s.adapter == layers * len(targets) * 8 * (h + h)
    assert s.model == total and s.head == h * 2 + 2 and s.trainable == s.adapter + s.head
    print(s)


@pytest.mark.parametrize("shape, total", [(BASE, 108_311_810), (TINY, 13_874_762)])
def test_ia3_counts(shape, total):
    model = _bert(shape)
    inject(model, IA3Config(modules_to_save=("classifier",)))
    s = summary(model)
    h, f, layers = (
        shape.get("hidden_size", 768),
        shape.get("intermediate_size", 3072),
        shape.get("num_hidden_layers", 12),
    )
    assert s.adapter == layers * (h + h + h + f)  # key out, value out, attention.output in, output in
    assert s.model == total


def test_paper_numbers():
    """The four §2.1 values, as printed in the paper, with its percentages."""
    got = []
    for shape, cfg in [
        (BASE, LoraConfig()),
        (BASE, IA3Config()),
        (TINY, LoraConfig(targets=("query", "key", "value"))),
        (TINY, IA3Config()),
    ]:
        model = _bert(shape)
        inject(model, cfg)
        s = summary(model)
        got.append((s.adapter, round(s.percent, 3)))
    assert got == [(294_912, 0.272), (64_512, 0.060), (59_904, 0.432), (8_544, 0.062)]

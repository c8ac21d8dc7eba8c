"""minipeft.audit on prefix/prompt wrappers: the VirtualTokens table is role "prompt" (an adapter,
not base), the wrapper's saved head is "head", the roles partition the parameters, the summary
counts the table as adapter parameters (paper §2.1: prefix = P·L·2·H), and the base fingerprint
ignores the trained tensors but sees any base weight."""

import pytest
import torch

from minipeft import fingerprint, param_table, summary
from minipeft.audit import roles
from minipeft.inject import ADAPTER_TYPES
from minipeft.prompt import PrefixConfig, PromptConfig, VirtualTokens, prefix_tuning, prompt_tuning
from models import BertConfig, BertForSequenceClassification

SMALL = dict(
    vocab_size=60,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
)
WRAPS = {
    "prefix": lambda m, p: prefix_tuning(m, PrefixConfig(num_virtual_tokens=p)),
    "prompt": lambda m, p: prompt_tuning(m, PromptConfig(num_virtual_tokens=p)),
}


def _wrapped(kind, p=5):
    base = BertForSequenceClassification(BertConfig(**SMALL), num_labels=3)
    return base, WRAPS[kind](base, p)


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_roles_partition_parameters_with_prompt_rows(kind):
    base, w = _wrapped(kind)
    rows = param_table(w, hashes=False)
    by_role = {}
    for r in rows:
        by_role.setdefault(r.role, set()).add(r.name)
    assert by_role["prompt"] == {"prompt_encoder.embedding.weight"}
    assert by_role["head"] == {"base_model.classifier.weight", "base_model.classifier.bias"}
    assert by_role["base"] == {"base_model." + n for n, _ in base.named_parameters()} - by_role["head"]
    assert sum(map(len, by_role.values())) == len(list(w.named_parameters())) == len(rows)
    # exactly the prompt and head rows train; they are what requires_grad says
    assert {r.name for r in rows if r.trainable} == by_role["prompt"] | by_role["head"]
    assert VirtualTokens not in ADAPTER_TYPES  # merge/remove never see the table


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_summary_counts_the_table_as_adapter(kind):
    base, w = _wrapped(kind, p=5)
    cfg = base.config
    table = 5 * (cfg.num_hidden_layers * 2 * cfg.hidden_size if kind == "prefix" else cfg.hidden_size)
    head = cfg.hidden_size * 3 + 3
    s = summary(w)
    total = sum(p.numel() for p in w.parameters())
    assert (s.adapter, s.by_role["prompt"], s.head) == (table, table, head)
    assert s.model == total - table and s.trainable == table + head
    assert s.by_role["lora"] == s.by_role["ia3"] == 0


def test_prefix_count_of_a_bert_base_shaped_model_is_the_papers():
    """Paper §2.1: 10 virtual tokens × 12 layers × 2 (key, value) × 768 = 184,320. Only the
    attention shape matters, so the vocabulary and feed-forward are kept tiny."""
    cfg = BertConfig(
        vocab_size=30,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=8,
        max_position_embeddings=16,
    )
    w = prefix_tuning(BertForSequenceClassification(cfg, num_labels=2), PrefixConfig(num_virtual_tokens=10))
    s = summary(w)
    assert s.adapter == 10 * 12 * 2 * 768 == 184_320
    assert s.head == 768 * 2 + 2


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_fingerprint_ignores_trained_tensors_and_sees_base_weights(kind):
    _, w = _wrapped(kind)
    before = fingerprint(w)
    with torch.no_grad():
        w.prompt_encoder.embedding.weight.add_(1.0)
        w.base_model.classifier.weight.add_(1.0)
    assert fingerprint(w) == before
    with torch.no_grad():
        w.base_model.bert.encoder.layer[0].attention.self.query.weight[0, 0] += 1e-3
    assert fingerprint(w) != before


def test_roles_name_nested_wrappers_by_full_path():
    _, w = _wrapped("prefix")
    outer = torch.nn.ModuleDict({"net": w})
    r = roles(outer)
    assert r["net.prompt_encoder.embedding.weight"] == "prompt"
    assert r["net.base_model.classifier.bias"] == "head"


def test_one_base_has_one_fingerprint_under_every_method():
    """Same weights, same head module: LoRA (inject) and the prefix/prompt wrappers agree, because
    the wrapper's `base_model.` prefix is not part of the base's identity."""
    import copy

    from minipeft import IA3Config, LoraConfig, inject

    base = BertForSequenceClassification(BertConfig(**SMALL), num_labels=3)
    lora, ia3 = copy.deepcopy(base), copy.deepcopy(base)
    inject(lora, LoraConfig(targets=("query", "value"), modules_to_save=("classifier",)))
    inject(ia3, IA3Config(targets=("key", "value"), feedforward=(), modules_to_save=("classifier",)))
    prints = {fingerprint(lora), fingerprint(ia3)} | {
        fingerprint(WRAPS[k](copy.deepcopy(base), 3)) for k in WRAPS
    }
    assert len(prints) == 1
    with torch.no_grad():
        base.bert.embeddings.word_embeddings.weight[1, 0] += 1e-3  # another base: another print
    assert fingerprint(WRAPS["prefix"](base, 3)) not in prints

"""Prefix and prompt tuning: the math against written formulas, PEFT's layout both ways (test-only
extra peft==0.21.2), the paper's prefix counts, freezing, and training moving only the new tensors."""

import pytest
import torch
from small_models import SMALL_MOBILEBERT

from minipeft.prompt import PrefixConfig, PromptConfig, prefix_tuning, prompt_counts, prompt_tuning
from minipeft.prompt_io import load_prompt, save_prompt
from models import load_pretrained
from models.bert import BertForSequenceClassification, BertForTokenClassification
from models.config import BertConfig, MobileBertConfig
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.mobilebert import MobileBertForSequenceClassification

SMALL = dict(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=32,
)


def _perturb(model, scale=0.1):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def _batch(vocab=50):
    ids = torch.randint(1, vocab, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return ids, mask


def _bert(num_labels=3, cls=BertForSequenceClassification):
    model = cls(BertConfig(**SMALL), num_labels=num_labels).eval()
    _perturb(model)
    return model


# ---------------------------------------------------------------- math and layout
def test_prefix_kv_reads_peft_layout():
    """Row p of the (P, L·2·H) table is [k_0 | v_0 | k_1 | v_1], each block (heads, head_dim)."""
    w = prefix_tuning(_bert(), PrefixConfig(num_virtual_tokens=3))
    table = w.prompt_encoder.embedding.weight  # (3, 2·2·32)
    kv = w.prefix_kv(batch=2)
    assert len(kv) == 2 and kv[0][0].shape == (2, 4, 3, 8)
    for layer in range(2):
        for j, t in enumerate(kv[layer]):
            block = table[:, (2 * layer + j) * 32 : (2 * layer + j + 1) * 32]  # (P, H)
            torch.testing.assert_close(t[1], block.view(3, 4, 8).transpose(0, 1), rtol=0, atol=0)


def test_prompt_tuning_equals_prepending_embeddings_by_hand():
    base = _bert()
    w = prompt_tuning(base, PromptConfig(num_virtual_tokens=4))
    ids, mask = _batch()
    emb = torch.cat(
        [w.prompt_encoder.embedding.weight.expand(2, -1, -1), base.bert.embeddings.word_embeddings(ids)], 1
    )
    want = base(inputs_embeds=emb, attention_mask=torch.cat([torch.ones(2, 4, dtype=torch.long), mask], 1))
    torch.testing.assert_close(w(ids, mask), want, rtol=0, atol=0)


def test_token_classification_prompt_logits_cover_real_tokens_only():
    w = prompt_tuning(
        _bert(cls=BertForTokenClassification), PromptConfig(num_virtual_tokens=4, task_type="TOKEN_CLS")
    )
    ids, mask = _batch()
    assert w(ids, mask).shape == (2, 7, 3)


def test_only_virtual_tokens_and_head_train():
    for w in (prefix_tuning(_bert(), PrefixConfig()), prompt_tuning(_bert(), PromptConfig())):
        names = {n for n, p in w.named_parameters() if p.requires_grad}
        assert names == {
            "prompt_encoder.embedding.weight",
            "base_model.classifier.weight",
            "base_model.classifier.bias",
        }
        ids, mask = _batch()
        torch.nn.functional.cross_entropy(w(ids, mask), torch.tensor([0, 2])).backward()
        assert w.prompt_encoder.embedding.weight.grad.abs().sum() > 0
        assert all(p.grad is None for n, p in w.named_parameters() if n not in names)


def test_distilbert_pre_classifier_is_saved_by_peft_suffix_rule():
    base = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=32
        ),
        2,
    )
    w = prefix_tuning(base, PrefixConfig())
    assert w.saved == ("pre_classifier", "classifier")
    assert prompt_counts(w) == {
        "prompt": 10 * 2 * 2 * 32,
        "head": 32 * 32 + 32 + 32 * 2 + 2,
        "trainable": 640 * 2 + 32 * 32 + 32 + 66,
    }


# ---------------------------------------------------------------- the paper's counts
@pytest.mark.parametrize(
    "cfg, count",
    [
        (BertConfig(vocab_size=28996), 184_320),  # BioBERT / BERT-base
        (
            BertConfig(
                vocab_size=28996,
                hidden_size=312,
                num_hidden_layers=4,
                num_attention_heads=12,
                intermediate_size=1200,
            ),
            24_960,
        ),  # TinyBioBERT
    ],
    ids=["BERT-base", "TinyBioBERT"],
)
def test_paper_prefix_counts(cfg, count):
    with torch.device("meta"):
        w = prefix_tuning(
            BertForSequenceClassification(cfg, num_labels=2), PrefixConfig(num_virtual_tokens=10)
        )
    assert prompt_counts(w)["prompt"] == count == 10 * cfg.num_hidden_layers * 2 * cfg.hidden_size


def test_mobilebert_prefix_uses_the_key_width_not_peft_hidden_size():
    """The paper's 245,760 is PEFT's arithmetic 10·24·2·512 (token_dim = hidden_size); MobileBERT's
    keys are 128 wide, so a prefix that fits its attention has 10·24·2·128 = 61,440 values. PEFT
    itself builds the 245,760-value table and then cannot run it (MobileBERT takes no past keys)."""
    with torch.device("meta"):
        w = prefix_tuning(
            MobileBertForSequenceClassification(MobileBertConfig(), num_labels=2), PrefixConfig()
        )
    assert prompt_counts(w)["prompt"] == 10 * 24 * 2 * 128 == 61_440
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    hf = transformers.MobileBertForSequenceClassification(transformers.MobileBertConfig(num_labels=2))
    pm = peft.get_peft_model(hf, peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=10))
    assert pm.prompt_encoder["default"].embedding.weight.numel() == 245_760 == 10 * 24 * 2 * 512
    with pytest.raises(ValueError, match="past key values"):
        pm(input_ids=torch.tensor([[101, 102]]))


def test_mobilebert_prompt_width_is_its_embedding_size():
    with torch.device("meta"):
        w = prompt_tuning(
            MobileBertForSequenceClassification(MobileBertConfig(), num_labels=2), PromptConfig()
        )
    assert w.token_dim == 128 and prompt_counts(w)["prompt"] == 1_280


# ---------------------------------------------------------------- PEFT's files, both ways
def _hf_folder(tmp_path, family="bert"):
    transformers = pytest.importorskip("transformers")
    if family == "bert":
        hf = transformers.BertForSequenceClassification(transformers.BertConfig(**SMALL, num_labels=3))
    elif family == "distilbert":
        hf = transformers.DistilBertForSequenceClassification(
            transformers.DistilBertConfig(
                vocab_size=50,
                dim=32,
                n_layers=2,
                n_heads=4,
                hidden_dim=37,
                max_position_embeddings=32,
                num_labels=3,
            )
        )
    else:
        hf = transformers.MobileBertForSequenceClassification(
            transformers.MobileBertConfig(**{**SMALL_MOBILEBERT, "max_position_embeddings": 32}, num_labels=3)
        )
    _perturb(hf.eval())
    hf.save_pretrained(tmp_path / "base")
    return hf


@pytest.mark.parametrize(
    "method, family",
    [("prefix", "bert"), ("prompt", "bert"), ("prompt", "distilbert"), ("prompt", "mobilebert")],
)
def test_peft_adapter_loads_here_with_identical_logits(tmp_path, method, family):
    peft = pytest.importorskip("peft")
    hf = _hf_folder(tmp_path, family)
    if method == "prefix":
        pcfg = peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=10)
    else:  # the paper set token_dim=128 (the embedding width) for MobileBERT; PEFT needs it for DistilBERT
        token_dim = {"bert": 32, "distilbert": 32, "mobilebert": 8}[family]
        pcfg = peft.PromptTuningConfig(
            task_type="SEQ_CLS",
            num_virtual_tokens=10,
            token_dim=token_dim,
            num_layers=2,
            num_attention_heads=hf.config.num_attention_heads,
        )
    pm = peft.get_peft_model(hf, pcfg).eval()
    with torch.no_grad():  # a trained-looking head too
        for p in pm.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    pm.save_pretrained(tmp_path / "adapter")
    ours = load_prompt(
        load_pretrained(tmp_path / "base", head="sequence-classification").eval(), tmp_path / "adapter"
    ).eval()
    ids, mask = _batch()
    with torch.no_grad():
        want = pm(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_our_adapter_loads_in_peft_with_identical_logits(tmp_path, method):
    peft = pytest.importorskip("peft")
    hf = _hf_folder(tmp_path)
    base = load_pretrained(tmp_path / "base", head="sequence-classification").eval()
    w = prefix_tuning(base, PrefixConfig()) if method == "prefix" else prompt_tuning(base, PromptConfig())
    with torch.no_grad():
        for p in w.parameters():
            if p.requires_grad:  # prompt and head only
                p.add_(torch.randn_like(p))
    save_prompt(w, tmp_path / "adapter")
    pm = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            w(ids, mask), pm(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-5
        )
    again = load_prompt(
        load_pretrained(tmp_path / "base", head="sequence-classification").eval(), tmp_path / "adapter"
    )
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask), w(ids, mask), rtol=0, atol=0)


def test_load_refuses_what_it_cannot_compute(tmp_path):
    base = _bert()
    save_prompt(prefix_tuning(base, PrefixConfig()), tmp_path)
    cfg = (tmp_path / "adapter_config.json").read_text()
    (tmp_path / "adapter_config.json").write_text(
        cfg.replace('"prefix_projection": false', '"prefix_projection": true')
    )
    with pytest.raises(ValueError, match="prefix_projection"):
        load_prompt(_bert(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(cfg.replace('"num_layers": 2', '"num_layers": 3'))
    with pytest.raises(ValueError, match="num_layers=3"):
        load_prompt(_bert(), tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_prompt(_bert(), tmp_path / "nowhere")


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_a_few_steps_fit_a_toy_task_and_leave_the_base_untouched(method):
    torch.manual_seed(0)
    base = BertForSequenceClassification(
        BertConfig(**SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), num_labels=2
    )
    frozen = {k: v.clone() for k, v in base.state_dict().items() if not k.startswith("classifier")}
    w = prefix_tuning(base, PrefixConfig()) if method == "prefix" else prompt_tuning(base, PromptConfig())
    ids = torch.randint(1, 50, (16, 6))
    y = (ids[:, 1] > 25).long()  # label from one token
    opt = torch.optim.AdamW([p for p in w.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(w(ids), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # prefix tuning fits it; prompt tuning pools the first *virtual* token (PEFT's behaviour) and
    # only creeps down here, the collapse the paper reports
    if method == "prefix":
        assert losses[-1] < 0.5 * losses[0]
    else:
        assert min(losses[1:]) < losses[0]
    assert all(torch.equal(base.state_dict()[k], v) for k, v in frozen.items())


def test_prefix_gradients_survive_gradient_checkpointing():
    torch.manual_seed(0)
    base = BertForSequenceClassification(
        BertConfig(**SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), num_labels=3
    )
    w = prefix_tuning(base, PrefixConfig(num_virtual_tokens=3)).train()
    ids, mask = _batch()

    def grad():
        w.zero_grad()
        w(ids, mask).logsumexp(-1).sum().backward()
        return w.prompt_encoder.embedding.weight.grad.clone()

    g0 = grad()
    base.bert.encoder.gradient_checkpointing = True
    torch.testing.assert_close(grad(), g0)
    assert g0.abs().sum() > 0


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(num_virtual_tokens=0), "num_virtual_tokens"),
        (dict(task_type="CAUSAL_LM"), "CAUSAL_LM"),
        (dict(modules_to_save="classifier"), "write"),
    ],
)
def test_configs_refuse_bad_values(bad, words):
    for cls in (PrefixConfig, PromptConfig):
        with pytest.raises(ValueError, match=words):
            cls(**bad)


def test_unmatched_head_and_embedding_names_are_refused():
    with pytest.raises(KeyError, match="score"):
        prefix_tuning(_bert(), PrefixConfig(modules_to_save=("score",)))
    with pytest.raises(KeyError, match="token_embeddings"):
        prompt_tuning(_bert(), PromptConfig(embeddings="token_embeddings"))


def test_mobilebert_prefix_runs_on_its_128_wide_keys():
    """Beyond PEFT (which cannot prefix-tune MobileBERT): the prefix fits the bottleneck attention."""
    cfg = MobileBertConfig(**{**SMALL_MOBILEBERT, "max_position_embeddings": 32})
    w = prefix_tuning(
        MobileBertForSequenceClassification(cfg, num_labels=2), PrefixConfig(num_virtual_tokens=3)
    )
    assert w.prefix_kv(2)[0][0].shape == (2, 2, 3, 8)  # (batch, heads, P, 16 / 2)
    ids, mask = _batch()
    w(ids, mask).sum().backward()
    assert w.prompt_encoder.embedding.weight.grad.abs().sum() > 0

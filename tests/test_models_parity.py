"""Parity with the reference implementation, transformers==5.23.0 (test-only extra)."""

import pytest
import torch
from small_models import SMALL_BERT

from models import load_pretrained, load_tokenizer, save_pretrained

transformers = pytest.importorskip("transformers", reason="parity tests need the `reference` extra")

SMALL = SMALL_BERT
TEXTS = [
    "A short one.",
    "The patient was admitted with chest pain and shortness of breath overnight.",
    "Great movie!",
]


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    return transformers.BertModel.from_pretrained(str(minilm_dir)).eval()


def test_real_checkpoint_hidden_states_and_pooler(minilm_dir, hf_minilm):
    ours = load_pretrained(minilm_dir).eval()
    assert ours.state_dict().keys() == hf_minilm.state_dict().keys()
    batch = load_tokenizer(minilm_dir)(
        TEXTS, ["second part", "b", "another second segment here"]
    )  # pairs: token types 0 and 1
    assert batch["attention_mask"].sum(1).unique().numel() == 3  # three different lengths
    with torch.no_grad():
        a = ours(**batch)
        b = hf_minilm(**batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=0, atol=1e-5)


def _hf_small(cls, tmp_path, num_labels=3):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**SMALL, num_labels=num_labels)
    model = cls(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a mix-up would show
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(tmp_path / "hf"))
    return model, tmp_path / "hf"


@pytest.mark.parametrize(
    "hf_cls, head",
    [
        ("BertForSequenceClassification", "sequence-classification"),
        ("BertForTokenClassification", "token-classification"),
    ],
)
def test_heads_equal_transformers(tmp_path, hf_cls, head):
    ref, folder = _hf_small(getattr(transformers, hf_cls), tmp_path)
    ours = load_pretrained(folder, head=head).eval()
    assert ours.head_loaded and ours.num_labels == 3
    ids = torch.randint(1, 99, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 2 + [0] * 7])
    types = torch.tensor([[0] * 5 + [1] * 4] * 3)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        got = ours(ids, mask, types)
    if head == "token-classification":
        got, want = got[mask.bool()], want[mask.bool()]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "head, auto",
    [
        ("sequence-classification", "AutoModelForSequenceClassification"),
        ("token-classification", "AutoModelForTokenClassification"),
        (None, "AutoModel"),
    ],
)
def test_save_pretrained_loads_in_transformers(tmp_path, head, auto):
    _, folder = _hf_small(transformers.BertForSequenceClassification, tmp_path, num_labels=4)
    ours = load_pretrained(folder, head=head, num_labels=4 if head else None).eval()
    out = save_pretrained(ours, tmp_path / "ours")
    ref, info = getattr(transformers, auto).from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = torch.randint(1, 99, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        want = ref.eval()(input_ids=ids, attention_mask=mask)
        got = ours(ids, mask)
    if head is None:
        torch.testing.assert_close(got.pooler_output, want.pooler_output, rtol=0, atol=1e-6)
    else:
        real = mask.bool() if head == "token-classification" else slice(None)
        torch.testing.assert_close(got[real], want.logits[real], rtol=0, atol=1e-6)
        assert ref.config.id2label == ours.config.id2label


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_real_checkpoint_with_head_roundtrips_through_transformers(tmp_path, minilm_dir):
    """Our seq-cls model on MiniLM (fresh head), saved with tokenizer, loads in transformers unchanged."""
    ours = load_pretrained(minilm_dir, head="sequence-classification", num_labels=2, seed=3).eval()
    out = save_pretrained(ours, tmp_path / "cls", tokenizer_dir=minilm_dir)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    batch = transformers.AutoTokenizer.from_pretrained(str(out))(TEXTS, padding=True, return_tensors="pt")
    ours_batch = load_tokenizer(out)(TEXTS)
    assert torch.equal(ours_batch["input_ids"], batch["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(ours(**ours_batch), ref(**batch).logits, rtol=0, atol=1e-5)

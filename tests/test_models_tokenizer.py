"""Our tokenizer: token ids identical to transformers for tokenizer.json and vocab.txt folders."""

import shutil

import pytest
import torch

from models import load_tokenizer

TEXTS = [
    "Hello, world! Café naïve RÉSUMÉ",
    "The patient's BP was 120/80 mmHg; denies [SEP] pain.",
    "中文字符 mixed with text",
    "x",
    "unbelievably hyperparathyroidism " * 40,
]
PAIRS = ["second", "segment two is here", "", "y", "z"]
WORDS = [["John", "lives", "in", "New-York."], ["Hypertension", "unremarkable"], ["a"]]


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def folder(request, minilm_dir, tmp_path_factory):
    """The checkpoint folder itself, or a copy without tokenizer.json (the vocab.txt path)."""
    if request.param == "tokenizer.json":
        return minilm_dir
    out = tmp_path_factory.mktemp("vocab_only")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(minilm_dir / name, out / name)
    return out


@pytest.mark.parametrize("max_length", [None, 16])
@pytest.mark.parametrize("pairs", [False, True])
def test_ids_equal_transformers(folder, max_length, pairs):
    transformers = pytest.importorskip("transformers", reason="needs the `reference` extra")
    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    second = PAIRS if pairs else None
    ours = load_tokenizer(folder)(TEXTS, second, max_length=max_length)
    want = ref(
        TEXTS, second, padding=True, truncation=True, max_length=max_length or 512, return_tensors="pt"
    )
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[k].dtype == torch.long
        assert torch.equal(ours[k], want[k]), k
    if max_length:
        assert ours["input_ids"].shape[1] == max_length  # the long text is truncated


def test_word_ids_equal_transformers(folder):
    transformers = pytest.importorskip("transformers", reason="needs the `reference` extra")
    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    batch, word_ids = load_tokenizer(folder).encode_words(WORDS)
    want = ref(WORDS, is_split_into_words=True, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], want["input_ids"])
    assert "word_ids" not in batch
    expect = [[-1 if w is None else w for w in want.word_ids(i)] for i in range(len(WORDS))]
    assert word_ids.tolist() == expect


def test_baked_in_padding_is_off_and_pad_matches_call(minilm_dir):
    """MiniLM's tokenizer.json pads to a fixed 128; ours pads to the longest in the batch."""
    tok = load_tokenizer(minilm_dir)
    batch = tok(["a b c", "a"])
    assert batch["input_ids"].shape == (2, 5)  # [CLS] a b c [SEP]
    assert batch["input_ids"][1].tolist() == [
        tok.cls_id,
        batch["input_ids"][0, 1].item(),
        tok.sep_id,
        tok.pad_id,
        tok.pad_id,
    ]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    ids, types = tok.encode_lists(["a b c", "a"])
    assert [len(r) for r in ids] == [5, 3]
    for k, v in tok.pad(ids, types).items():
        assert torch.equal(v, batch[k])
    assert tok.vocab_size == 30522 == len((minilm_dir / "vocab.txt").read_text().splitlines())


def test_user_errors(minilm_dir, tmp_path):
    tok = load_tokenizer(minilm_dir)
    with pytest.raises(ValueError, match="text_pairs has 1"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty"):
        tok([])
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode_words(["not", "split"])
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        load_tokenizer(tmp_path)

"""BERT WordPiece tokenizer on the `tokenizers` library, returning tensors ready for our BertModel.

`load_tokenizer(folder)` reads `tokenizer.json` when present (switching off any baked-in fixed
padding or truncation), else builds the BERT pipeline from `vocab.txt` + `tokenizer_config.json`:
BertNormalizer (lower-casing per `do_lower_case`) -> BertPreTokenizer -> WordPiece("##") ->
"[CLS] A [SEP]" / "[CLS] A [SEP] B [SEP]" with token type ids 0 / 1.

    tok = load_tokenizer(path)
    batch = tok(["a text", "another"], max_length=128)      # input_ids, attention_mask, token_type_ids
    batch, word_ids = tok.encode_words([["John", "lives"]])  # NER: word index per sub-token, -1 = none
    ids, types = tok.encode_lists(texts, max_length=128)     # unpadded, for length-bucketed batching
    batch = tok.pad(ids, types)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from models.hf_config import read_json_object

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
    """A thin, stateless-looking wrapper around a `tokenizers.Tokenizer` without padding/truncation."""

    def __init__(self, backend: Backend, model_max_length: int = 512, source: str = ""):
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.model_max_length = model_max_length
        self.source = source
        ids = {t: backend.token_to_id(t) for t in SPECIALS}
        missing = [t for t in ("[PAD]", "[CLS]", "[SEP]") if ids[t] is None]
        if missing:
            raise ValueError(
                f"{source}: the vocabulary has no {missing}; expected a BERT WordPiece vocabulary"
            )
        self.pad_id, self.cls_id, self.sep_id = ids["[PAD]"], ids["[CLS]"], ids["[SEP]"]
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self._truncation = None

    def _set_max_length(self, max_length: int | None) -> None:
        n = self.model_max_length if max_length is None else int(max_length)
        if n < 3:
            raise ValueError(f"max_length={n} leaves no room for [CLS] and [SEP]; use at least 3")
        if n != self._truncation:
            self.backend.enable_truncation(n, strategy="longest_first")
            self._truncation = n

    def _encode(self, inputs, max_length, pretokenized=False):
        self._set_max_length(max_length)
        return self.backend.encode_batch(inputs, is_pretokenized=pretokenized)

    def encode_lists(self, texts, text_pairs=None, max_length: int | None = None):
        """-> (ids, type_ids): lists of int lists, unpadded, truncated to max_length
        (None: the tokenizer's model_max_length)."""
        texts = _as_list(texts, "texts")
        if text_pairs is not None:
            pairs = _as_list(text_pairs, "text_pairs")
            if len(pairs) != len(texts):
                raise ValueError(f"text_pairs has {len(pairs)} items, texts has {len(texts)}; expected equal")
            texts = list(zip(texts, pairs))
        enc = self._encode(texts, max_length)
        return [e.ids for e in enc], [e.type_ids for e in enc]

    def pad(self, ids: Sequence[Sequence[int]], type_ids=None) -> dict:
        """Pad to the longest row: input_ids (pad_id), attention_mask (0), token_type_ids (0)."""
        b, t = len(ids), max((len(r) for r in ids), default=0)
        input_ids = torch.full((b, t), self.pad_id, dtype=torch.long)  # (batch, seq)
        mask = torch.zeros((b, t), dtype=torch.long)  # (batch, seq)
        types = torch.zeros((b, t), dtype=torch.long)  # (batch, seq)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
            if type_ids is not None:
                types[i, : len(row)] = torch.tensor(type_ids[i], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}

    def __call__(self, texts, text_pairs=None, max_length: int | None = None) -> dict:
        return self.pad(*self.encode_lists(texts, text_pairs, max_length))

    def encode_words(self, words: Sequence[Sequence[str]], max_length: int | None = None):
        """Pre-split words in (one list per sentence) -> (batch dict, word_ids (batch, seq) LongTensor):
        the index of the word each sub-token came from, -1 for [CLS]/[SEP]/padding."""
        words = _as_list(words, "words")
        for i, w in enumerate(words):
            if isinstance(w, str) or not all(isinstance(x, str) for x in w):
                raise ValueError(f"words[{i}] must be a list of strings (pre-split words), got {w!r:.80}")
        enc = self._encode([list(w) for w in words], max_length, pretokenized=True)
        batch = self.pad([e.ids for e in enc], [e.type_ids for e in enc])
        word_ids = torch.full_like(batch["input_ids"], -1)  # (batch, seq)
        for i, e in enumerate(enc):
            row = [-1 if w is None else w for w in e.word_ids]
            word_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return batch, word_ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _as_list(x, name):
    if isinstance(x, str):
        return [x]
    x = list(x)
    if not x:
        raise ValueError(f"{name} is empty; expected at least one item")
    return x


def _read_json(file: Path) -> dict:
    """tokenizer_config.json as a dict whose special tokens are plain strings (HF may write an
    added-token dict {"content": "[UNK]", ...}) and whose switches are booleans."""
    if not file.exists():
        return {}
    cfg = read_json_object(file)
    for key in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
        v = cfg.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        if key in cfg and v is not None and not isinstance(v, str):
            raise ValueError(f"{file}: {key}={cfg[key]!r:.60}; expected a token string such as '[UNK]'")
        if key in cfg:
            cfg[key] = v
    for key in ("do_lower_case", "tokenize_chinese_chars", "strip_accents"):
        if key in cfg and not (isinstance(cfg[key], bool) or (cfg[key] is None and key == "strip_accents")):
            raise ValueError(f"{file}: {key}={cfg[key]!r:.60}; expected true or false")
    return cfg


def _from_vocab(vocab_file: Path, cfg: dict) -> Backend:
    """BERT's WordPiece pipeline built from vocab.txt and tokenizer_config.json settings."""
    vocab = {}
    try:
        text = vocab_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{vocab_file}: not UTF-8 text ({e}); expected one WordPiece token per line"
        ) from None
    for i, line in enumerate(text.splitlines()):
        vocab.setdefault(line.rstrip("\r"), i)
    unk = cfg.get("unk_token") or "[UNK]"
    tok = Backend(
        WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##", max_input_chars_per_word=100)
    )
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        strip_accents=cfg.get("strip_accents"),
        lowercase=cfg.get("do_lower_case", True),
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = cfg.get("cls_token") or "[CLS]", cfg.get("sep_token") or "[SEP]"
    for t in (cls, sep):
        if t not in vocab:
            raise ValueError(f"{vocab_file}: no {t} token; expected a BERT vocabulary")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = [
        cfg.get(k, d)
        for k, d in (
            ("pad_token", "[PAD]"),
            ("unk_token", "[UNK]"),
            ("cls_token", "[CLS]"),
            ("sep_token", "[SEP]"),
            ("mask_token", "[MASK]"),
        )
    ]
    tok.add_special_tokens([t for t in specials if isinstance(t, str) and t in vocab])
    return tok


def load_tokenizer(path) -> Tokenizer:
    """The tokenizer of a HuggingFace BERT folder (tokenizer.json, else vocab.txt)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: not a folder; expected a model folder with tokenizer.json or vocab.txt"
        )
    cfg = _read_json(path / "tokenizer_config.json")
    max_len = cfg.get("model_max_length", 512)
    max_len = 512 if not isinstance(max_len, int) or max_len > 100_000 else max_len
    if (path / "tokenizer.json").exists():
        try:
            backend = Backend.from_file(str(path / "tokenizer.json"))
        except Exception as e:  # the Rust error type is not importable; name the file and re-raise
            raise ValueError(f"{path / 'tokenizer.json'}: cannot be read by `tokenizers` ({e})") from e
        return Tokenizer(backend, max_len, source=str(path / "tokenizer.json"))
    if (path / "vocab.txt").exists():
        return Tokenizer(_from_vocab(path / "vocab.txt", cfg), max_len, source=str(path / "vocab.txt"))
    raise FileNotFoundError(
        f"{path}: neither tokenizer.json nor vocab.txt; expected the tokenizer files "
        f"of a HuggingFace BERT folder"
    )

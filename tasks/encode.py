"""Examples -> token id lists for the training loop's batching (unpadded; the collator pads per batch).

Sequence classification: `{"input_ids", "token_type_ids", "label"}` per note, right-truncated to
`max_length` tokens including [CLS] and [SEP].

Token classification: `{"input_ids", "token_type_ids", "labels"}` per sentence, one label per
sub-token, and separately the word index of every sub-token (-1 for [CLS]/[SEP]) so predictions
can be read back per word. Sub-word label alignment:
    align="first"  only the first sub-token of a word carries its tag, the rest get -100 (ignored)
    align="all"    every sub-token carries its word's tag (what the paper's code did)
Special tokens always get -100. Evaluation is per word in both cases: the prediction at a word's
first sub-token is the word's tag, and a word cut off by truncation counts as predicted `O`.
"""

from __future__ import annotations

from pathlib import Path

from tasks.registry import TaggedExample, TextExample

IGNORE = -100
ALIGNMENTS = ("first", "all")
CHUNK = 512  # sentences tokenized per call (bounds the padded tensor's size)


def encode_texts(tokenizer, examples: list[TextExample], max_length: int) -> list[dict]:
    ids, types = tokenizer.encode_lists([e.text for e in examples], max_length=max_length)
    return [{"input_ids": i, "token_type_ids": t, "label": e.label} for i, t, e in zip(ids, types, examples)]


def align_labels(word_ids: list[int], tags: tuple[int, ...], align: str) -> list[int]:
    """One label per sub-token from the word tags (see the module docstring)."""
    out, previous = [], -1
    for w in word_ids:
        if w < 0:
            out.append(IGNORE)
        elif align == "all" or w != previous:
            out.append(tags[w])
        else:
            out.append(IGNORE)
        previous = w
    return out


def encode_tagged(
    tokenizer, examples: list[TaggedExample], max_length: int, align: str = "first"
) -> tuple[list[dict], list[list[int]]]:
    """-> (encoded examples, word index per sub-token for each example)."""
    if align not in ALIGNMENTS:
        raise ValueError(f"label alignment {align!r} is not one of {ALIGNMENTS}")
    encoded, all_word_ids = [], []
    for start in range(0, len(examples), CHUNK):
        part = examples[start : start + CHUNK]
        batch, word_ids = tokenizer.encode_words([list(e.words) for e in part], max_length=max_length)
        lengths = batch["attention_mask"].sum(dim=1).tolist()  # (batch,)
        for k, (e, n) in enumerate(zip(part, lengths)):
            wids = word_ids[k, :n].tolist()
            encoded.append(
                {
                    "input_ids": batch["input_ids"][k, :n].tolist(),
                    "token_type_ids": batch["token_type_ids"][k, :n].tolist(),
                    "labels": align_labels(wids, e.tags, align),
                }
            )
            all_word_ids.append(wids)
    return encoded, all_word_ids


def word_predictions(
    token_preds: list[int], word_ids: list[int], n_words: int, outside: int = 0
) -> list[int]:
    """Per-word predictions from per-sub-token ones: the first sub-token of each word decides;
    words with no sub-token (cut by truncation) get `outside` (the index of tag `O`)."""
    out = [outside] * n_words
    seen = set()
    for p, w in zip(token_preds, word_ids):
        if w >= 0 and w not in seen:
            out[w] = p
            seen.add(w)
    return out


def check_vocab(tokenizer, model_dir) -> None:
    """A tokenizer whose ids run past the model's embedding table would fail mid-run (IndexError)."""
    from models.hf_config import read_json_object

    cfg_file = Path(model_dir) / "config.json"
    size = read_json_object(cfg_file).get("vocab_size") if cfg_file.is_file() else None
    if isinstance(size, int) and tokenizer.vocab_size > size:
        raise ValueError(
            f"{tokenizer.source}: the tokenizer has {tokenizer.vocab_size} tokens, but {cfg_file} has "
            f"vocab_size={size}; use the tokenizer files that came with this checkpoint"
        )

"""Dynamic padding and length-bucketed batches (minipeft.training.batching)."""

import random

import pytest
import torch

from minipeft.training.batching import IGNORE_INDEX, LengthBucketSampler, PadCollate, split_micro


def test_pad_collate_pads_to_longest_in_batch():
    examples = [
        {"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 0], "label": 1},
        {"input_ids": [8], "token_type_ids": [0], "label": 0},
    ]
    b = PadCollate(pad_id=3)(examples)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert b["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["label"].tolist() == [1, 0] and b["label"].dtype == torch.long


def test_pad_collate_token_labels_get_ignore_index_and_floats_stay_float():
    examples = [
        {"input_ids": [1, 2], "labels": [4, 5], "w": 0.5},
        {"input_ids": [1], "labels": [6], "w": 1.0},
    ]
    b = PadCollate()(examples)
    assert b["labels"].tolist() == [[4, 5], [6, IGNORE_INDEX]]
    assert b["w"].dtype == torch.float32


def test_pad_collate_rejects_mismatched_keys():
    with pytest.raises(KeyError, match="same fields"):
        PadCollate()([{"input_ids": [1]}, {"input_ids": [1], "label": 0}])


def _lengths(n=437, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 300) for _ in range(n)]


def test_sampler_covers_every_index_once_and_is_deterministic():
    lengths = _lengths()
    s = LengthBucketSampler(lengths, batch_size=16, seed=7, bucket_batches=4)
    b0 = s.batches(0)
    assert sorted(i for b in b0 for i in b) == list(range(len(lengths)))
    assert len(b0) == len(s) == -(-len(lengths) // 16)
    assert b0 == LengthBucketSampler(lengths, 16, seed=7, bucket_batches=4).batches(0)
    assert b0 != s.batches(1), "a new epoch must reshuffle"
    assert b0 != LengthBucketSampler(lengths, 16, seed=8, bucket_batches=4).batches(0)


def test_bucketing_pads_less_than_random_batches():
    """Padded tokens (sum over batches of batch_len*max_len - real tokens) drop with bucketing."""
    lengths = _lengths()

    def waste(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    bucketed = LengthBucketSampler(lengths, 16, seed=0, bucket_batches=8).batches(0)
    plain = LengthBucketSampler(lengths, 16, seed=0, bucket_batches=1).batches(0)  # bucket = 1 batch
    assert waste(bucketed) < 0.5 * waste(plain)
    for b in bucketed:  # each batch is sorted longest first inside its bucket
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_unshuffled_order_is_longest_first():
    lengths = _lengths(50)
    flat = [i for b in LengthBucketSampler(lengths, 8, shuffle=False).batches() for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_split_micro():
    assert split_micro([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]

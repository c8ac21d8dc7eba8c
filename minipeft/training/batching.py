"""Batching for variable-length token sequences: dynamic padding and length-bucketed batches.

An example is a dict whose values are lists of ints (sequences: `input_ids`, `token_type_ids`,
token-level `labels`) or scalars (a sequence-level `label(s)`). `PadCollate` pads every sequence
key to the longest example of the batch, never to a global maximum, and adds `attention_mask`.
`LengthBucketSampler` groups examples of similar length so short notes do not pay for long ones:

    shuffle all indices (seeded by seed and epoch) -> cut into buckets of `bucket_batches` batches
    -> sort each bucket by length -> cut into batches -> shuffle the batch order (same generator)

The batches of an epoch are a pure function of (seed, epoch), so a resumed run skips the first
`position` batches of its epoch and sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE_INDEX = -100  # label value ignored by torch.nn.functional.cross_entropy


@dataclass(frozen=True)
class PadCollate:
    """Turn a list of examples into a dict of tensors padded to the longest sequence in the batch.

    pad_id: the tokenizer's [PAD] id, used for `input_ids`. `pad_values` overrides the pad value
    of other sequence keys; unnamed sequence keys are padded with 0, except label keys (`labels`,
    `label`) which get IGNORE_INDEX so the loss skips padding. `attention_mask` (batch, seq) is 1 on
    real tokens, built from the length of `length_key`. Scalars become a (batch,) tensor (int64
    for ints, float32 for floats). Examples with different key sets raise KeyError.
    """

    pad_id: int = 0
    pad_values: Mapping[str, int] = field(default_factory=dict)
    length_key: str = "input_ids"

    def _pad_value(self, key: str) -> int:
        if key in self.pad_values:
            return self.pad_values[key]
        if key == "input_ids":
            return self.pad_id
        return IGNORE_INDEX if key in ("labels", "label") else 0

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("PadCollate got an empty batch; expected at least one example")
        keys = list(examples[0].keys())
        for i, ex in enumerate(examples):
            if set(ex.keys()) != set(keys):
                raise KeyError(
                    f"example {i} of the batch has keys {sorted(ex.keys())}, expected the "
                    f"keys of example 0 {sorted(keys)}; give every example the same fields"
                )
        batch = {}
        for key in keys:
            values = [ex[key] for ex in examples]
            if isinstance(values[0], (list, tuple)):
                batch[key] = _pad([list(v) for v in values], self._pad_value(key))  # (batch, seq)
            elif isinstance(values[0], torch.Tensor):
                batch[key] = torch.stack(values)
            else:
                dtype = torch.float32 if isinstance(values[0], float) else torch.long
                batch[key] = torch.tensor(values, dtype=dtype)  # (batch,)
        if self.length_key in batch and "attention_mask" not in batch:
            lengths = torch.tensor([len(ex[self.length_key]) for ex in examples])  # (batch,)
            seq = batch[self.length_key].shape[1]
            batch["attention_mask"] = (torch.arange(seq)[None, :] < lengths[:, None]).long()  # (batch, seq)
        return batch


def _pad(rows: list[list], value) -> torch.Tensor:
    longest = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (longest - len(r)) for r in rows])


class LengthBucketSampler:
    """Deterministic length-bucketed batches of indices, reproducible per (seed, epoch).

    lengths: one length per example. batch_size: examples per batch. bucket_batches: batches per
    sorting bucket (larger = less padding, less randomness). shuffle=False gives the plain
    length-sorted order (longest first), for evaluation. Iterate `batches(epoch)`; `len()` is the
    number of batches per epoch (the last batch may be smaller; nothing is dropped).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        bucket_batches: int = 50,
        shuffle: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)  # (n,)
        self.batch_size, self.seed = batch_size, seed
        self.bucket_batches, self.shuffle = bucket_batches, shuffle

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self, epoch: int = 0) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = _sort_by_length(torch.arange(n), self.lengths)
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)  # (n,)
        bucket = self.batch_size * self.bucket_batches
        out = []
        for start in range(0, n, bucket):
            chunk = _sort_by_length(perm[start : start + bucket], self.lengths)
            out += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def _sort_by_length(idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """idx reordered by descending length; ties keep their order (stable)."""
    return idx[torch.sort(lengths[idx], descending=True, stable=True).indices]


def split_micro(indices: list[int], micro_size: int) -> list[list[int]]:
    """Cut one optimiser step's indices into micro-batches of at most micro_size (accumulation)."""
    return [indices[i : i + micro_size] for i in range(0, len(indices), micro_size)]


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict:
    """The batch with every tensor moved to `device` (other values unchanged)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

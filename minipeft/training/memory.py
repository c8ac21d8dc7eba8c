"""Memory accounting for a training step.

CUDA: `torch.cuda.max_memory_allocated` (peak of the caching allocator, reset per measurement).
CPU: two numbers.
- saved-for-backward bytes: every tensor autograd stores for backward passes through
  `torch.autograd.graph.saved_tensors_hooks`; we record its storage once (views share a storage,
  so unique storages are counted by their full size) and skip the storages of the model's
  parameters, which exist anyway. Exact for what autograd keeps; allocator overhead, gradients and
  optimiser state are not in it. Under activation checkpointing the recomputed regions are not
  saved in forward, which is the point; their inputs are (they pass through the hooks).
- peak RSS of the process (`resource.getrusage`, Linux reports KiB): a high-water mark since the
  process started, so it only ever grows and includes everything else the process did.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
from torch import nn


class SavedTensorsMeter:
    """Count the bytes autograd saves for backward inside `with meter.measure():`.

    `meter.bytes` is the total of unique storages saved during the last `measure()` block,
    excluding the storages of `model`'s parameters and of the `exclude` tensors (pass neither to
    count everything).
    """

    def __init__(self, model: nn.Module | None = None, exclude=()):
        skip = [*(model.parameters() if model is not None else ()), *exclude]
        self._param_ptrs = {t.untyped_storage().data_ptr() for t in skip}
        self.bytes = 0
        self._seen: dict[int, int] = {}

    def _pack(self, t: torch.Tensor):
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # e.g. sparse or wrapper subclasses
            return t
        ptr = storage.data_ptr()
        if ptr not in self._param_ptrs and ptr not in self._seen:
            self._seen[ptr] = storage.nbytes()
        return t

    @contextmanager
    def measure(self):
        self._seen = {}
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            try:
                yield self
            finally:
                self.bytes = sum(self._seen.values())


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process in bytes; None where `resource` is missing."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def cuda_peak_bytes(device: torch.device) -> int | None:
    """Peak bytes allocated on a CUDA device since the last reset; None on other devices."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


def reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

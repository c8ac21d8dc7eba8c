"""Data-parallel training under `torchrun` with PyTorch's DistributedDataParallel.

    torchrun --nproc_per_node=2 -m tasks.finetune --task rotten-tomatoes --out runs/rt   # one machine
    dist = context()          # process group from torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK, ...)

Without torchrun (`WORLD_SIZE` unset or 1) `context()` is a single-process context whose every
method is the identity, so the training loop calls it unconditionally.

With W processes, one optimiser step over the global batch B (the step's N = |B| indices, the
same list on every process) is

    rank r takes B[r::W]  ->  micro-batches of batch_size  ->  each micro's mean loss weighted by
    W·|micro|/N  ->  DDP averages the gradients over the W processes (÷W)
    =>  grad = Σ_micro |micro|/N · ∇ mean-loss(micro) = ∇ mean over the N examples of B,

the gradient of a single process seeing the whole batch. DDP reduces only parameters with
`requires_grad` (its reducer skips the rest), so a frozen base sends nothing; only the last
micro-batch of each step synchronises (`no_sync` before it). A process whose share of a short
last batch is empty runs one example with weight 0 so that every process joins the reduction.

Dropout under W > 1 draws from a torch generator reseeded per (seed, step, rank): different masks
per process, and a resumed run draws the ones an uninterrupted run would have drawn.

Evaluation (minipeft.training.evaluation): with an Evaluator, each process predicts its share of the
batches, `gather_to_main` brings the outputs to rank 0, which computes the metrics once on the whole
set, and `broadcast` hands rank 0's metrics to every process (all agree on the best epoch).

Files: only rank 0 reads and writes the run directory; at start it broadcasts the step, the
trainable tensors, AdamW moments and best tensors to the others (no shared file system needed).
Failure: a process that raises exits non-zero and torchrun stops the others; a collective that
waits longer than MINIPEFT_DIST_TIMEOUT seconds (default 600) raises instead of hanging.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .batching import split_micro

DEFAULT_TIMEOUT_S = 600.0
_CONTEXT: DistContext | None = None


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. rank 0 is the main process (the only one writing)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (single process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        """This process's accelerator: cuda:<local_rank> under nccl, else cpu."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ training
    def shard(self, items: Sequence) -> list:
        """This process's share of `items`: items[rank::world_size] (balanced lengths when sorted)."""
        return list(items[self.rank :: self.world_size])

    def micro_batches(
        self, indices: Sequence[int], micro_size: int, model: nn.Module, seed: tuple[int, int] | None = None
    ) -> Iterator[tuple[list[int], float]]:
        """Yield (micro-batch indices, loss weight) for one optimiser step over the global `indices`.

        Weights are world_size·|micro|/N so that DDP's average of the processes' gradients is the
        gradient of the mean loss over all N examples. With a DDP `model`, every micro-batch but the
        last runs inside `model.no_sync()` (the loop body executes inside it). seed=(seed, step)
        reseeds torch per (seed, step, rank) when world_size > 1 (dropout masks survive a resume).
        """
        mine = self.shard(list(indices))
        micros = [(m, self.world_size * len(m) / len(indices)) for m in split_micro(mine, micro_size)]
        if not micros:  # short last batch: nothing for this rank, still reduce once
            micros = [(list(indices[:1]), 0.0)]
        if self.enabled and seed is not None:
            torch.manual_seed((seed[0] * 1_000_003 + seed[1]) * 4099 + self.rank)
        for k, (micro, weight) in enumerate(micros):
            quiet = isinstance(model, nn.parallel.DistributedDataParallel) and k < len(micros) - 1
            with model.no_sync() if quiet else contextlib.nullcontext():
                yield micro, weight

    def mean(self, value: float) -> float:
        """Average of a python number over the processes (identity for one process)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.item() / self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel(model) when world_size > 1, else the model itself.

        Parameters must already agree across processes (see sync_start); buffers are not
        broadcast per forward (no running statistics in our models)."""
        if not self.enabled:
            return model
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                "distributed training got a model without trainable parameters; inject an "
                "adapter or unfreeze a head before calling train()"
            )
        ddp = nn.parallel.DistributedDataParallel
        # sync_start already broadcast the trainable tensors and compared the base fingerprints, so
        # DDP's own start-up broadcast of every parameter (the frozen base included) is skipped
        quiet_start = {"init_sync": False} if "init_sync" in inspect.signature(ddp).parameters else {}
        return ddp(
            model,
            device_ids=[self.local_rank] if self.backend == "nccl" else None,
            broadcast_buffers=False,
            **quiet_start,
        )

    def sync_start(self, loop: Any, state: dict) -> dict:
        """Give every process rank 0's starting point: loop state, trainable tensors, AdamW moments,
        best tensors. Raises ValueError when the processes hold different base models."""
        if not self.enabled:
            return state
        from . import checkpoint as ckpt

        prints = [None] * self.world_size
        dist.all_gather_object(prints, state.get("fingerprint_before"))
        if len(set(prints)) > 1:
            raise ValueError(
                f"the processes hold different base models (fingerprints by rank "
                f"{[str(p)[:12] for p in prints]}); give every process the same checkpoint"
            )
        moments = ckpt.optimizer_tensors(loop.named, loop.optimizer) if self.is_main else None
        box = [state, loop.resumed_from, moments, loop.best_tensors]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        state, loop.resumed_from, moments, best = box
        with torch.no_grad():
            for _, p in loop.named:
                dist.broadcast(p.data, src=0)
        if not self.is_main:
            loop.optimizer.state.clear()
            ckpt.load_optimizer_tensors(loop.named, loop.optimizer, moments)
            loop.best_tensors = best
        return state

    # ------------------------------------------------------------------ evaluation
    def gather_to_main(self, items: list) -> list | None:
        """Every process's list concatenated in rank order, on rank 0 (None elsewhere; `items` itself
        for one process). Items travel pickled in memory (gloo/nccl object collectives), never to disk;
        tensors are moved to the CPU first."""
        if not self.enabled:
            return items
        parts = [None] * self.world_size if self.is_main else None
        dist.gather_object(_cpu(items), parts, dst=0)
        return [x for part in parts for x in part] if self.is_main else None

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process (identity for one process)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's tensor along dim 0 (sizes may differ), in rank order."""
        if not self.enabled:
            return tensor
        dev = self._comm_device()
        n = torch.tensor([tensor.shape[0]], device=dev)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n)
        longest = int(max(s.item() for s in sizes))
        padded = tensor.new_zeros((longest, *tensor.shape[1:])).to(dev)  # (longest, ...)
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(tensor.device)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device()


# ---------------------------------------------------------------------- process group
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer; torchrun sets it, "
            f"unset it to run a single process"
        ) from None


def timeout_seconds() -> float:
    value = os.environ.get("MINIPEFT_DIST_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"MINIPEFT_DIST_TIMEOUT={value!r} is not a number of seconds") from None


def init(backend: str | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment (idempotent).

    backend: default nccl when CUDA is available, else gloo. A single process (WORLD_SIZE unset or 1)
    gets DistContext() and no process group. Collectives time out after timeout_seconds()."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
        rank, world = dist.get_rank(), dist.get_world_size()
        _CONTEXT = DistContext(
            rank, world, _env_int("LOCAL_RANK", rank) if world > 1 else 0, backend if world > 1 else None
        )
        return _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    _CONTEXT = DistContext(rank, world, local, backend)
    return _CONTEXT


def context() -> DistContext:
    """The current DistContext, joining torchrun's process group on first use."""
    return _CONTEXT if _CONTEXT is not None else init()


def shutdown() -> None:
    """Leave the process group (if any); context() afterwards is a single process again."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


def _cpu(x):
    """x with every tensor inside (lists, tuples, dicts) detached and on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_cpu(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v) for v in x)
    if isinstance(x, dict):
        return {k: _cpu(v) for k, v in x.items()}
    return x


__all__ = ["DistContext", "context", "init", "shutdown", "timeout_seconds"]

"""The runs of a rank sweep (grid or the paper's random search) and the time estimate printed first.

Runs are ordered seed by seed, reference rank first, so a sweep stopped part-way already holds
complete paired seeds. With --search N, trial t of seed s draws its hyperparameters from
random.Random(f"{s}-{t}"): the same lr, alpha multiple and dropout at every rank (paired).
The estimate times two real training steps and one evaluation batch on this machine now (so it
includes whatever load the machine carries) and scales them by the padded tokens each run will
process, which the deterministic batching lets us count exactly before training.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import minipeft
from minipeft.training.batching import LengthBucketSampler, to_device
from tasks.objective import model_inputs, seq_cls_loss

SEARCH_LR = (1e-5, 1e-3)  # log-uniform, the paper's Optuna space
SEARCH_ALPHA_MULT = (0.3, 0.5, 1.0)  # alpha = round(r x mult)
SEARCH_DROPOUT = (0.1, 0.3, 0.5)


@dataclass
class Context:
    task: object
    labels: tuple
    model: object
    model_dir: Path
    encoded: dict  # "train" | "val" | "test" -> list of token-id examples
    collate: object
    files: dict  # data file -> sha256


@dataclass(frozen=True)
class Run:
    rank: int
    seed: int
    trial: int
    policy: str  # fixed | proportional | rslora | search
    alpha: float
    lr: float
    dropout: float

    @property
    def key(self) -> tuple[int, int, int]:
        return self.rank, self.seed, self.trial

    @property
    def scaling(self) -> float:
        return self.alpha / math.sqrt(self.rank) if self.policy == "rslora" else self.alpha / self.rank

    def lora_config(self, targets, head) -> minipeft.LoraConfig:
        return minipeft.LoraConfig(
            r=self.rank,
            alpha=self.alpha,
            dropout=self.dropout,
            targets=tuple(targets),
            modules_to_save=tuple(head),
            use_rslora=self.policy == "rslora",
        )


def search_draw(seed: int, trial: int) -> tuple[float, float, float]:
    """(lr, alpha multiple, dropout) of one random-search trial; independent of the rank."""
    rng = random.Random(f"{seed}-{trial}")
    lr = math.exp(rng.uniform(math.log(SEARCH_LR[0]), math.log(SEARCH_LR[1])))
    return lr, rng.choice(SEARCH_ALPHA_MULT), rng.choice(SEARCH_DROPOUT)


def plan_runs(args) -> list[Run]:
    ranks = [args.reference_rank] + [r for r in args.ranks if r != args.reference_rank]
    runs = []
    for seed in args.seeds:
        for rank in ranks:
            if args.search:
                for t in range(args.search):
                    lr, mult, dropout = search_draw(seed, t)
                    runs.append(Run(rank, seed, t, "search", float(max(1, round(rank * mult))), lr, dropout))
            else:
                alpha = float(rank) if args.alpha_policy == "proportional" else args.alpha
                runs.append(Run(rank, seed, 0, args.alpha_policy, alpha, args.lr, args.dropout))
    return runs


def _padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def calibrate(ctx: Context, pending: list[Run], args) -> tuple[float, float]:
    """Seconds per padded token of a training step and of evaluation, measured now (2 steps, 1 batch)."""
    model, enc = ctx.model, ctx.encoded
    lengths = [len(e["input_ids"]) for e in enc["train"]]
    batches = LengthBucketSampler(lengths, args.batch_size, seed=0).batches(0)[:3]
    minipeft.inject(model, max(pending, key=lambda r: r.rank).lora_config(args.targets, ("classifier",)))
    try:
        model.train()
        times = []
        for b in batches:
            batch = to_device(ctx.collate([enc["train"][i] for i in b]), next(model.parameters()).device)
            t0 = time.perf_counter()
            seq_cls_loss(model, batch).backward()
            times.append((time.perf_counter() - t0) / batch["input_ids"].numel())
            model.zero_grad(set_to_none=True)
        model.eval()
        order = LengthBucketSampler(
            [len(e["input_ids"]) for e in enc["val"]], max(64, args.batch_size), shuffle=False
        ).batches()
        batch = ctx.collate([enc["val"][i] for i in order[len(order) // 2]])
        t0 = time.perf_counter()
        with torch.no_grad():
            model(**model_inputs(batch))
        per_eval = (time.perf_counter() - t0) / batch["input_ids"].numel()
    finally:
        minipeft.remove(model)
        model.zero_grad(set_to_none=True)
    return sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0], per_eval


def estimate_seconds(
    ctx: Context, pending: list[Run], args, per_token_step: float, per_token_eval: float
) -> float:
    enc = ctx.encoded
    train_len = [len(e["input_ids"]) for e in enc["train"]]
    eval_bs = max(64, args.batch_size)
    eval_tokens = 0
    for split, times in (("val", args.epochs), ("test", 1)):
        lens = [len(e["input_ids"]) for e in enc[split]]
        eval_tokens += times * _padded_tokens(
            lens, LengthBucketSampler(lens, eval_bs, shuffle=False).batches()
        )
    total = 0.0
    for run in pending:
        sampler = LengthBucketSampler(train_len, args.batch_size, seed=run.seed)
        tokens = sum(_padded_tokens(train_len, sampler.batches(e)) for e in range(args.epochs))
        total += tokens * per_token_step + eval_tokens * per_token_eval
    return total

"""Statistics of the rank sweep: paired per-seed ΔAUROC against the reference rank, and its noise.

For rank r and seed s, Δ(r, s) = AUROC(r, s) − AUROC(ref, s): the same seed gives the same data
order, head initialisation and dropout stream at every rank, so seed-to-seed variation common to
both runs cancels. Over the n seeds we report mean ± sample std (ddof=1) of Δ and call it
"within noise" when the two-sided 95% t-interval of the mean, mean ± t(0.975, n−1)·std/√n,
contains 0. One seed cannot measure noise at all, which the summary says instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# two-sided 95% quantiles t(0.975, df) of Student's t, df = 1..30 (beyond: 1.96)
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t975(df: int) -> float:
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


@dataclass(frozen=True)
class Delta:
    mean: float
    std: float
    n: int
    half_width: float  # of the 95% t-interval of the mean; NaN for n < 2

    @property
    def verdict(self) -> str:
        if self.n < 2 or math.isnan(self.half_width):
            return "one seed: noise unknown"
        if abs(self.mean) <= self.half_width:
            return "within noise"
        return "better" if self.mean > 0 else "worse"


def paired_delta(by_seed: dict[int, float], ref_by_seed: dict[int, float]) -> Delta:
    """Δ over the seeds present at both ranks."""
    seeds = sorted(set(by_seed) & set(ref_by_seed))
    diffs = [by_seed[s] - ref_by_seed[s] for s in seeds]
    m, sd = mean_std(diffs)
    n = len([d for d in diffs if not math.isnan(d)])
    hw = t975(n - 1) * sd / math.sqrt(n) if n >= 2 and not math.isnan(sd) else math.nan
    return Delta(m, sd, n, hw)


def select_trials(rows: list[dict]) -> list[dict]:
    """One row per (rank, seed): the trial with the best validation AUROC (first one on ties)."""
    best: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: (int(r["rank"]), int(r["seed"]), int(r["trial"]))):
        key = (int(row["rank"]), int(row["seed"]))
        if key not in best or float(row["val_auroc"]) > float(best[key]["val_auroc"]):
            best[key] = row
    return [best[k] for k in sorted(best)]


def summarise(rows: list[dict], ref_rank: int) -> list[dict]:
    """Per rank: mean ± std of val/test AUROC and F1, paired Δ vs ref_rank, adapter parameters."""
    chosen = select_trials(rows)
    ranks = sorted({int(r["rank"]) for r in chosen})
    per = {(int(r["rank"]), int(r["seed"])): r for r in chosen}

    def metric(rank, key):
        return {s: float(r[key]) for (k, s), r in per.items() if k == rank}

    out = []
    for rank in ranks:
        any_row = next(r for (k, _), r in per.items() if k == rank)
        entry = {
            "rank": rank,
            "seeds": sorted(s for (k, s) in per if k == rank),
            "adapter_params": int(any_row["adapter_params"]),
            "adapter_percent": float(any_row["adapter_percent"]),
        }
        for split in ("val", "test"):
            for name in ("auroc", "f1_macro"):
                entry[f"{split}_{name}"] = mean_std(list(metric(rank, f"{split}_{name}").values()))
            entry[f"{split}_delta"] = paired_delta(
                metric(rank, f"{split}_auroc"), metric(ref_rank, f"{split}_auroc")
            )
        entry["train_seconds"] = mean_std([float(per[(rank, s)]["train_seconds"]) for s in entry["seeds"]])[0]
        out.append(entry)
    return out


def seed_noise(summary: list[dict], ref_rank: int) -> float:
    """Std over seeds of test AUROC at the reference rank (unpaired run-to-run noise)."""
    for e in summary:
        if e["rank"] == ref_rank:
            return e["test_auroc"][1]
    return math.nan

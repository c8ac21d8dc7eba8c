"""summary.md, rank_sweep.png and the JSON summary of the rank sweep (from sweep_stats' summary)."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.sweep_stats import Delta, seed_noise
from minipeft.files import write_atomic


def _pm(pair: tuple[float, float], digits: int = 3) -> str:
    m, s = pair
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _delta(d: Delta, ref: bool) -> str:
    if ref:
        return "0 (reference)"
    if math.isnan(d.mean):
        return "n/a"
    sd = "" if math.isnan(d.std) else f" ± {d.std:.3f}"
    return f"{d.mean:+.3f}{sd} ({d.verdict})"


def table(summary: list[dict], ref_rank: int) -> str:
    head = (
        "| rank | seeds | adapter params (% of model) | val AUROC | test AUROC | Δ val AUROC vs r="
        f"{ref_rank} | Δ test AUROC vs r={ref_rank} | test F1 macro | train s/run |"
    )
    lines = [head, "|" + "---|" * 9]
    for e in summary:
        ref = e["rank"] == ref_rank
        lines.append(
            f"| {e['rank']} | {len(e['seeds'])} | {e['adapter_params']:,} ({e['adapter_percent']:.3f}%) "
            f"| {_pm(e['val_auroc'])} | {_pm(e['test_auroc'])} | {_delta(e['val_delta'], ref)} "
            f"| {_delta(e['test_delta'], ref)} | {_pm(e['test_f1_macro'])} | {e['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def verdict(summary: list[dict], ref_rank: int) -> tuple[str, bool | None]:
    """One sentence on whether ranks above the reference beat it on test, and the flag itself."""
    above = [e for e in summary if e["rank"] > ref_rank]
    if not above:
        return f"No rank above {ref_rank} in the grid: nothing to say about higher ranks.", None
    better = [e["rank"] for e in above if e["test_delta"].verdict == "better"]
    unknown = [e["rank"] for e in above if e["test_delta"].verdict.startswith("one seed")]
    if unknown:
        return (
            f"Single seed: the differences above r={ref_rank} cannot be told from seed noise "
            f"(the paper saw about ±0.01 AUROC between seeds); run several --seeds."
        ), None
    if better:
        names = f"Rank {better[0]} beats" if len(better) == 1 else f"Ranks {', '.join(map(str, better))} beat"
        return (
            f"{names} r={ref_rank} on test AUROC beyond seed noise (95% paired t-interval excludes 0), "
            f"in this training budget."
        ), True
    return (
        f"No rank above {ref_rank} beats it beyond seed noise: every paired test ΔAUROC's 95% "
        f"t-interval contains 0 or is negative, as in the paper (about ±0.01)."
    ), False


def markdown(summary: list[dict], ref_rank: int, settings: dict, wall: float, cpu: float) -> str:
    noise = seed_noise(summary, ref_rank)
    text, _ = verdict(summary, ref_rank)
    lines = [
        f"# LoRA rank sweep: {settings['task']}",
        "",
        f"Model `{settings['model']}`, targets {settings['targets']}, alpha policy "
        f"`{settings['alpha_policy']}`, {settings['epochs']} epoch(s) on {settings['train_examples']} "
        f"training examples, validation {settings['val_examples']} / test {settings['test_examples']} "
        f"examples, seeds {settings['seeds']}"
        + (
            f", best of {settings['search']} random trials per rank and seed (by validation AUROC)"
            if settings.get("search")
            else f", lr {settings['lr']}, dropout {settings['dropout']}"
        )
        + ".",
        "",
        table(summary, ref_rank),
        "",
        "Δ is paired per seed (same data order, head initialisation and dropout stream at every rank), "
        "mean ± std over seeds; 'within noise' = the 95% t-interval of the mean Δ contains 0.",
        f"Seed-to-seed std of test AUROC at r={ref_rank}: "
        + ("n/a (one seed)" if math.isnan(noise) else f"{noise:.4f}")
        + ".",
        "Adapter parameters exclude the classification head and are a share of all non-adapter "
        "parameters (base + head), as the paper counts them.",
        "",
        f"**{text}**",
        "",
        f"This invocation: {wall / 60:.1f} min wall clock, {cpu / 60:.1f} min of process CPU time "
        f"(wall clock grows when other jobs share the cores; runs already in runs.csv are not re-timed).",
        "",
    ]
    return "\n".join(lines)


def interval_bars(summary: list[dict], ref_rank: int, split: str) -> tuple[list[float], list[float]]:
    """Per rank, the mean paired Δ and the half-width of its 95% t-interval, t(0.975, n−1)·std/√n:
    the interval the "within noise" verdict uses (0 at the reference rank and for a single seed)."""
    means, halves = [], []
    for e in summary:
        d = e[f"{split}_delta"]
        ref = e["rank"] == ref_rank
        means.append(0.0 if ref else d.mean)
        halves.append(0.0 if ref or math.isnan(d.half_width) else d.half_width)
    return means, halves


def plot(summary: list[dict], ref_rank: int, path: Path, title: str) -> None:
    """The figure as `path` (PNG) and beside it as SVG (same name, .svg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [e["rank"] for e in summary]
    x = list(range(len(ranks)))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for split, style, shift in (("test", "o-", -0.04), ("val", "s--", 0.04)):
        means, halves = interval_bars(summary, ref_rank, split)
        ax.errorbar([i + shift for i in x], means, yerr=halves, fmt=style, capsize=4, label=f"{split} ΔAUROC")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.axhspan(-0.01, 0.01, color="0.9", zorder=0, label="±0.01 (paper's seed noise)")
    ax.set_xticks(x, [str(r) for r in ranks])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel(f"$AUROC_r - AUROC_{{{ref_rank}}}$ (mean, paired 95% t-interval)", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(x, [e["adapter_params"] for e in summary], "^:", color="tab:gray", label="adapter params")
    ax2.set_yscale("log")
    ax2.set_ylabel("adapter parameters (log)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        write_atomic(path, fig.savefig, suffix=".png")
        write_atomic(Path(path).with_suffix(".svg"), fig.savefig, suffix=".svg")
    finally:
        plt.close(fig)


def json_summary(summary: list[dict], ref_rank: int) -> list[dict]:
    def num(x):
        return (
            None if isinstance(x, float) and math.isnan(x) else (round(x, 5) if isinstance(x, float) else x)
        )

    out = []
    for e in summary:
        item = {
            "rank": e["rank"],
            "seeds": e["seeds"],
            "adapter_params": e["adapter_params"],
            "adapter_percent": num(e["adapter_percent"]),
        }
        for split in ("val", "test"):
            item[f"{split}_auroc_mean"], item[f"{split}_auroc_std"] = map(num, e[f"{split}_auroc"])
            d = e[f"{split}_delta"]
            item[f"{split}_delta_mean"], item[f"{split}_delta_std"] = num(d.mean), num(d.std)
            item[f"{split}_delta_verdict"] = "reference" if e["rank"] == ref_rank else d.verdict
        out.append(item)
    return out

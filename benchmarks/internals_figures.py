"""PNG figures of benchmarks.internals (matplotlib, Agg backend), each written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from benchmarks.internals_analyse import HEADLINE_EPS, short
from minipeft import files


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    files.write_bytes(path, buf.getvalue())
    return path.name


def _pick(rows, kind):
    """The first similarity row of each module for one pair kind."""
    seen, out = set(), []
    for r in rows:
        if r["pair"] == kind and r["module"] not in seen:
            seen.add(r["module"])
            out.append(r)
    return out


def similarity_figure(doc, path: Path) -> str | None:
    """Heatmaps of φ(i, j) (Hu et al. Fig. 3 and 4): rank pair and seed pair, one column per module."""
    rows = sorted(doc["similarity"], key=lambda r: -(r["rank_a"] or 0))  # seed pairs: highest rank (Fig. 4)
    panels = [r for kind in ("rank", "seed") for r in _pick(rows, kind)] or _pick(rows, "other")
    panels = panels[:6]
    if not panels:
        return None
    plt = _plt()
    cols = min(len(panels), 2 if len(panels) <= 4 else 3)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False, layout="constrained"
    )
    for ax, r in zip(axes.flat, panels):
        im = ax.imshow(
            r["grid"],
            vmin=0,
            vmax=1,
            cmap="viridis",
            aspect="auto",
            origin="upper",
            extent=(0.5, len(r["grid"][0]) + 0.5, len(r["grid"]) + 0.5, 0.5),
        )
        ax.set_title(f"W_{short(r['module'])}, layer {r['layer']}: {r['a']} vs {r['b']}", fontsize=9)
        ax.set_xlabel(f"j ({r['b']})")
        ax.set_ylabel(f"i ({r['a']})")
        fig.colorbar(im, ax=ax, label="φ(i, j)")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Subspace similarity of LoRA's A matrices (Hu et al. 2021, §7.2)")
    return _save(fig, path)


def spectra_figure(doc, path: Path) -> str | None:
    """Singular values of ΔW on the figure layer: LoRA updates and full fine-tuning, same axes."""
    mods = doc["modules"]
    if not doc["spectra"]:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(mods), figsize=(5 * len(mods), 3.8), squeeze=False)
    for ax, m in zip(axes[0], mods):
        for s in (s for s in doc["spectra"] if s["module"] == m):
            sv = s["singular_values"]
            style = "-" if s["kind"] == "FULL" else "--"
            ax.semilogy(range(1, len(sv) + 1), [max(v, 1e-12) for v in sv], style, label=s["name"], lw=1.3)
        ax.set_title(f"ΔW of W_{short(m)}, layer {doc['figure_layer']}", fontsize=10)
        ax.set_xlabel("index i")
        ax.set_ylabel("singular value σ_i")
        ax.legend(fontsize=7)
    fig.suptitle("Spectrum of the update: LoRA vs full fine-tuning (Biderman et al. 2024)")
    return _save(fig, path)


def sizes_figure(doc, path: Path) -> str | None:
    """Heatmap of ‖ΔW‖_F / ‖W0‖_F, layer × module, one panel per update (at most 6)."""
    names = [u["name"] for u in doc["updates"]][:6]
    if not names:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(names), figsize=(max(3.2, 1.3 + 0.55 * 6) * len(names), 3.6), squeeze=False
    )
    for ax, name in zip(axes[0], names):
        rows = [r for r in doc["sizes"] if r["name"] == name]
        layers = sorted({r["layer"] for r in rows})
        mods = sorted({r["module"] for r in rows})
        grid = [
            [
                next((r["relative"] for r in rows if r["layer"] == l and r["module"] == m), float("nan"))
                for m in mods
            ]
            for l in layers
        ]
        im = ax.imshow(grid, cmap="magma", aspect="auto")
        ax.set_xticks(
            range(len(mods)),
            [m.replace("attention.", "att.") for m in mods],
            rotation=60,
            ha="right",
            fontsize=7,
        )
        ax.set_yticks(range(len(layers)), layers)
        ax.set_ylabel("layer")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, format="%.1e")
    fig.suptitle("Where the change is: ‖ΔW‖_F / ‖W0‖_F per layer and module")
    return _save(fig, path)


def intruders_figure(doc, path: Path) -> str | None:
    """Intruder dimensions summed over the compared matrices, against ε (Shuttleworth et al. Fig. 3)."""
    if not doc["intruder_totals"]:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, counts in doc["intruder_totals"].items():
        kind = next(u["kind"] for u in doc["updates"] if u["name"] == name)
        ax.plot(doc["eps"], counts, "-o" if kind == "FULL" else "--.", label=name, ms=4)
    ax.axvline(HEADLINE_EPS, color="grey", lw=0.6)
    ax.set_xlabel("ε (cosine-similarity threshold)")
    ax.set_ylabel(f"intruders in top {doc['top_k']}, summed")
    ax.set_title(f"Intruder dimensions over W_{', W_'.join(short(m) for m in doc['modules'])}", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def amplification_figure(doc, path: Path) -> str | None:
    """Amplification factor against r: LoRA at its own rank, full fine-tuning's ΔW at several r."""
    rows = doc["amplification"]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in doc["modules"]:
        full = sorted((r["r"], r["factor_mean"]) for r in rows if r["kind"] == "FULL" and r["module"] == m)
        if full:
            ax.plot(*zip(*full), "-o", ms=4, label=f"full, W_{short(m)}")
        lora = {}
        for r in rows:
            if r["kind"] == "LORA" and r["module"] == m:
                lora.setdefault(r["r"], []).append(r["factor_mean"])
        if lora:
            xs = sorted(lora)
            ax.plot(xs, [sum(lora[x]) / len(lora[x]) for x in xs], "s--", ms=6, label=f"LoRA, W_{short(m)}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("r (directions of ΔW)")
    ax.set_ylabel("‖ΔW‖_F / ‖UᵀWV‖_F")
    ax.set_title("Amplification factor against rank (Hu et al. 2021, §7.3)", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def figures(doc: dict, out: Path) -> dict:
    """{title: file name} of every figure drawn into `out`."""
    made = {
        "subspace similarity": similarity_figure(doc, out / "similarity.png"),
        "spectra": spectra_figure(doc, out / "spectra.png"),
        "update size": sizes_figure(doc, out / "update_sizes.png"),
        "intruder dimensions": intruders_figure(doc, out / "intruders.png"),
        "amplification": amplification_figure(doc, out / "amplification.png"),
    }
    return {k: v for k, v in made.items() if v}

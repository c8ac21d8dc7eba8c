"""report.md and the short stdout summary of benchmarks.internals, in sentences made from the numbers.

Each section states the question, our numbers, the paper's finding and whether ours agrees.
The figures are drawn by benchmarks.internals_figures.
"""

from __future__ import annotations

from benchmarks.internals_analyse import short

PAPERS = {
    "hu": "Hu et al. 2021, LoRA (arXiv 2106.09685)",
    "biderman": "Biderman et al. 2024, LoRA Learns Less and Forgets Less (arXiv 2405.09673)",
    "shuttle": "Shuttleworth et al. 2024, LoRA vs Full Fine-tuning: An Illusion of Equivalence "
    "(arXiv 2410.21228)",
    "roy": "Roy & Vetterli 2007, The effective rank",
}


def _f(x, nd=2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _modules(doc) -> list[str]:
    return [short(m) for m in doc["modules"]]


PAIR_ORDER = {"rank": 0, "seed": 1, "other": 2}


def _pair_text(kind: str) -> str:
    if kind == "rank":
        return "between the two ranks (same seed)"
    if kind == "other":
        return "between adapters that differ in rank and seed"
    return f"between two seeds at {kind.split()[-1]}"


def _opening(title: str, question: str) -> list[str]:
    """A section's heading and the question it answers (markdown() puts a blank line between sections)."""
    return [f"## {title}", "", f"Question: {question}"]


def similarity_section(doc) -> list[str]:
    h = doc["headline"]["phi11"]
    lines = _opening(
        "1. Subspace similarity (" + PAPERS["hu"] + ", §7.2)",
        "do adapters trained at different ranks, or from different seeds, learn the same top "
        "directions? φ(A₁, A₂, i, j) = ‖U₁⁽ⁱ⁾ᵀU₂⁽ʲ⁾‖²_F / min(i, j) over the right-singular vectors of A; "
        "1 means the same subspace, random directions give max(i, j)/d.",
    )
    if not h:
        return lines + ["", "Not computed: it needs at least two LoRA adapters on the same modules."]
    chance = doc["similarity"][0]["chance11"]
    keys = sorted(h, key=lambda k: (PAIR_ORDER.get(k.split(":")[0].split()[0], 3), k))
    if any(not k.startswith("other") for k in keys):  # differ in rank and seed at once: JSON only
        keys = [k for k in keys if not k.startswith("other")]
    lines.append("")
    for key in keys:
        kind, module = key.split(":")
        lines.append(
            f"- W_{module}: φ at i = j = 1 {_pair_text(kind)} is {_f(h[key], 3)} (mean over layers and "
            f"pairs; random directions: {_f(chance, 4)})."
        )
    rank = [v for k, v in h.items() if k.startswith("rank:")]
    if rank:
        ok = min(rank) > 0.5
        lines += [
            "",
            f"Paper: the top direction is shared between r=8 and r=64 (φ > 0.5 at i = j = 1). Ours: "
            f"{'agrees' if ok else 'does not agree'}: the lowest module mean is {_f(min(rank), 3)}, "
            f"{'above' if ok else 'at or below'} 0.5 and {min(rank) / chance:.0f}x the random level.",
        ]
    return lines


def amplification_section(doc) -> list[str]:
    h = doc["headline"]["amplification"]
    lines = _opening(
        "2. Amplification factor (" + PAPERS["hu"] + ", §7.3)",
        "does ΔW amplify directions W already has? ‖UᵀWV‖_F projects W onto r directions: "
        "ΔW's own top-r singular vectors, W's top-r, or random ones (as their Table 7); the factor is "
        "‖ΔW‖_F / ‖UᵀWV‖_F with ΔW's directions. A factor far above 1 means ΔW boosts directions that W "
        "holds but does not emphasise. Means over layers and seeds.",
    )
    if not h:
        return lines + ["", "Not computed: no LoRA adapter or full fine-tune."]
    lines += [
        "",
        "| update : module | ‖UᵀWV‖ ΔW dirs | ‖UᵀWV‖ W dirs | ‖UᵀWV‖ random | ‖W‖_F | ‖ΔW‖_F | factor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, v in h.items():
        lines.append(
            f"| {key.replace(':', ' : W_')} | {_f(v['proj_delta'], 3)} | {_f(v['proj_w'])} | "
            f"{_f(v['proj_random'], 3)} | {_f(v['norm_w'])} | {_f(v['norm_delta'], 3)} | {_f(v['factor'])} |"
        )
    lines += [
        "",
        "Paper (GPT-3, W_q): factor about 21.5 at r=4 and about 1.9 at r=64, ΔW's directions "
        "projecting far less than W's own but more than random ones.",
    ]
    lines += [_amp_verdict(h, m) for m in _modules(doc)]
    return [line for line in lines if line is not None]


def _amp_verdict(h: dict, module: str) -> str | None:
    lora = {
        int(k.split("=")[1].split(":")[0]): v
        for k, v in h.items()
        if k.startswith("LoRA") and k.endswith(":" + module)
    }
    if len(lora) < 2:
        return None
    lo, hi = lora[min(lora)], lora[max(lora)]
    falls, amplifies = lo["factor"] > hi["factor"], lo["factor"] > 1
    between = lo["proj_random"] < lo["proj_delta"] < lo["proj_w"]
    verdict = (
        "agrees"
        if falls and amplifies and between
        else "partly agrees"
        if falls or amplifies
        else "does not agree"
    )
    return (
        f"- W_{module}: factor {_f(lo['factor'])} at r={min(lora)} and {_f(hi['factor'])} at r={max(lora)} "
        f"({'falls' if falls else 'does not fall'} with rank, "
        f"{'above' if amplifies else 'not above'} 1; ΔW's "
        f"directions project {'between' if between else 'not between'} random and W's own): {verdict}."
    )


def spectrum_section(doc) -> list[str]:
    h = doc["headline"]["rank90_median"]
    lines = _opening(
        "3. Spectrum and rank of the update (" + PAPERS["biderman"] + ")",
        "how many directions does each update use? The 90%-variance rank is the smallest k whose "
        "top-k singular values hold 90% of Σσ²; median over the "
        f"{', '.join('W_' + m for m in _modules(doc))} "
        f"matrices of all layers. Stable and effective rank ({PAPERS['roy']}) are in internals.json.",
    )
    lines += [""] + [f"- {k}: median 90%-variance rank {v:g}." for k, v in h.items()]
    full = h.get("full")
    loras = {k: v for k, v in h.items() if k.startswith("LoRA")}
    if full is not None and loras:
        ratios = {k: full / v for k, v in loras.items() if v}
        text = ", ".join(f"{_f(r, 1)}x that of {k}" for k, r in ratios.items())
        ok = min(ratios.values()) >= 10
        verdict = (
            "agrees"
            if ok
            else "agrees in direction, not in size"
            if min(ratios.values()) > 1
            else "does not agree"
        )
        lines += [
            "",
            "Paper: full fine-tuning's ΔW has 10-100x the rank of typical LoRA configurations. "
            f"Ours: the full update's rank is {text}: {verdict}.",
        ]
    return lines


def intruder_section(doc) -> list[str]:
    h, eps = doc["headline"]["intruders_mean_total"], doc["headline"]["intruders_at_eps"]
    n = doc["headline"]["matrices_per_update"]
    lines = _opening(
        "4. Intruder dimensions (" + PAPERS["shuttle"] + ")",
        "does fine-tuning create new dominant directions? Among the top "
        f"{doc['top_k']} left-singular "
        f"vectors of W0 + ΔW, count those whose largest cosine similarity with every singular vector of W0 "
        f"is below ε; summed over the {n} compared matrices of one update, mean over seeds.",
    )
    lines += [""] + [f"- {k}: {_f(v, 1)} intruder dimensions at ε = {eps}." for k, v in h.items()]
    full, loras = h.get("full"), {k: v for k, v in h.items() if k.startswith("LoRA")}
    if full is not None and loras:
        ok = all(v > full for v in loras.values())
        lines += [
            "",
            f"Paper: LoRA creates intruder dimensions and full fine-tuning hardly does. Ours: "
            f"{'agrees' if ok else 'does not agree'} (full: {_f(full, 1)}; LoRA: "
            f"{', '.join(f'{k} {_f(v, 1)}' for k, v in loras.items())}). The counts for every ε are in "
            "intruders.png and internals.json.",
        ]
    return lines


def sizes_section(doc) -> list[str]:
    lines = _opening(
        "5. Where the change is",
        "which layers and modules does each update change most? Relative change ‖ΔW‖_F / ‖W0‖_F:",
    )
    lines.append("")
    for u in doc["updates"]:
        rows = [r for r in doc["sizes"] if r["name"] == u["name"]]
        if rows:
            top = max(rows, key=lambda r: r["relative"])
            mean = sum(r["relative"] for r in rows) / len(rows)
            lines.append(
                f"- {u['name']}: mean {mean:.2e} over {len(rows)} matrices; largest {top['relative']:.2e} "
                f"at layer {top['layer']} {top['module']}."
            )
    if doc["ia3"]:
        lines += [
            "",
            "IA³ vectors (|l − 1| per layer and module):",
            "",
            "| adapter | layer | module | mean | max | moved > 5% |",
            "|---|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['name']} | {r['layer']} | {r['module']} | {r['mean_abs_dev']:.4f} | "
            f"{r['max_abs_dev']:.4f} | "
            f"{100 * r['share_moved']:.1f}% |"
            for r in doc["ia3"]
        ]
    return lines


def markdown(doc: dict, figures: dict) -> str:
    lines = ["# Adapter internals", ""]
    lines.append(f"Base model: `{doc['model']}`. Updates analysed:")
    lines.append("")
    for u in doc["updates"]:
        m = u["metrics"]
        extra = f", test AUROC {m['test_auroc']:.3f}" if m.get("test_auroc") is not None else ""
        rank = f", r={u['rank']}" if u["rank"] else ""
        seed = f", seed {u['seed']}" if u["seed"] is not None else ""
        lines.append(f"- {u['name']}: {u['kind']}{rank}{seed}{extra} (`{u['source']}`)")
    lines += [
        "",
        f"Heatmaps and spectra show layer {doc['figure_layer']}; this analysis took "
        f"{doc['wall_seconds']:.0f} s (training times: runs.csv, full/result.json).",
        "",
    ]
    for section in (
        similarity_section,
        amplification_section,
        spectrum_section,
        intruder_section,
        sizes_section,
    ):
        lines += ([""] if section is not similarity_section else []) + section(doc)
    lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()]
    return "\n".join(lines) + "\n"


def summary_text(doc: dict) -> str:
    h = doc["headline"]
    parts = [f"phi(1,1) {k}: {_f(v, 3)}" for k, v in h["phi11"].items()]
    parts += [
        f"amplification {k}: {_f(v['factor'])}" for k, v in h["amplification"].items() if k.startswith("LoRA")
    ]
    parts += [f"90%-rank {k}: {v:g}" for k, v in h["rank90_median"].items()]
    parts += [
        f"intruders (eps {h['intruders_at_eps']}) {k}: {_f(v, 1)}"
        for k, v in h["intruders_mean_total"].items()
    ]
    return "\n".join(parts)

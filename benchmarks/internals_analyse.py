"""The analyses of benchmarks.internals over loaded updates (benchmarks.internals_load.Update).

Each function returns JSON-ready rows; `headline` condenses them into the numbers the report
states. Modules are named by their last path component in headlines ("query", "value").
"""

from __future__ import annotations

import statistics
from itertools import combinations

import torch

from minipeft import analysis

EPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # intruder thresholds (Shuttleworth et al.: 0.1-0.9)
HEADLINE_EPS = 0.5
FULL_RANKS = (1, 2, 4, 8, 16, 32, 64)  # r at which full fine-tuning's ΔW is projected
AMP_FIELDS = ("proj_delta", "proj_w", "proj_random", "norm_delta", "norm_w")


class BaseSVD:
    """svd(W0) per (layer, module), computed once: every update shares the base weights (checked)."""

    def __init__(self):
        self.done = {}

    def get(self, key, w0):
        hit = self.done.get(key)
        if hit is None or not torch.equal(hit[0], w0):
            hit = self.done[key] = (w0, analysis.svd(w0))
        return hit[1]


def short(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _r(x, nd=4):
    return None if x is None else round(float(x), nd)


def compared_modules(updates) -> list[str]:
    """The modules every analysis compares: those the LoRA/IA³ adapters adapted, else all."""
    adapted = sorted({m for u in updates if u.kind != "FULL" for m in u.modules})
    return adapted or sorted({m for u in updates for m in u.modules})


def pairs(updates) -> list[tuple[str, object, object]]:
    """(kind, a, b) for every two LoRA updates: 'rank' (same seed, other rank; lower rank first),
    'seed' (same rank, other seed) or 'other'."""
    out = []
    for a, b in combinations([u for u in updates if u.kind == "LORA"], 2):
        if a.rank != b.rank and a.seed == b.seed:
            out.append(("rank", *sorted((a, b), key=lambda u: u.rank)))
        elif a.rank == b.rank and a.seed != b.seed:
            out.append(("seed", a, b))
        else:
            out.append(("other", a, b))
    return out


def similarity(updates, fig_layer: int) -> list[dict]:
    """φ(A_a, A_b, 1, 1) per layer and module, and the full (i, j) grid on `fig_layer` (Hu et al. §7.2)."""
    rows = []
    for kind, a, b in pairs(updates):
        for module in sorted({m for _, m in a.lora_a} & {m for _, m in b.lora_a}):
            layers = sorted(l for l, m in a.lora_a if m == module and (l, m) in b.lora_a)
            by_layer = {
                l: analysis.subspace_similarity(a.lora_a[(l, module)], b.lora_a[(l, module)], 1, 1)
                for l in layers
            }
            fig = fig_layer if fig_layer in by_layer else layers[len(layers) // 2]
            grid = analysis.similarity_grid(a.lora_a[(fig, module)], b.lora_a[(fig, module)])
            rows.append(
                {
                    "pair": kind,
                    "a": a.name,
                    "b": b.name,
                    "rank_a": a.rank,
                    "rank_b": b.rank,
                    "module": module,
                    "phi11_by_layer": {str(l): _r(v) for l, v in by_layer.items()},
                    "phi11_mean": _r(_mean(by_layer.values())),
                    "chance11": _r(
                        1 / a.lora_a[(fig, module)].shape[1], 5
                    ),  # E φ(1,1) = 1/d for random directions
                    "layer": fig,
                    "grid": [[_r(v, 3) for v in row] for row in grid.tolist()],
                }
            )
    return rows


def _amp_row(u, module: str, r: int, svds: dict, bases: BaseSVD) -> dict | None:
    keys = sorted(k for k in u.deltas if k[1] == module)
    keys = [k for k in keys if r <= min(u.deltas[k].shape)]
    if not keys:
        return None
    amps = {}
    for k in keys:
        if k not in svds:
            svds[k] = analysis.svd(u.deltas[k])
        w_svd = bases.get(k, u.base[k])
        amps[k[0]] = analysis.amplification(u.deltas[k], u.base[k], r, k[0], svds[k], w_svd)
    avg = {f: _mean(getattr(a, f) for a in amps.values()) for f in AMP_FIELDS}
    return {
        "name": u.name,
        "kind": u.kind,
        "r": r,
        "module": module,
        "factor_mean": _r(_mean(a.factor for a in amps.values()), 3),
        "factor_by_layer": {str(l): _r(a.factor, 3) for l, a in amps.items()},
        **{f"{f}_mean": _r(v, 5) for f, v in avg.items()},
    }


def amplification(updates, bases: BaseSVD) -> list[dict]:
    """Hu et al. §7.3 at each LoRA adapter's own rank, and full fine-tuning's ΔW at FULL_RANKS."""
    rows = []
    for u in updates:
        ranks = [u.rank] if u.kind == "LORA" else FULL_RANKS if u.kind == "FULL" else []
        svds = {}  # svd(ΔW) per (layer, module), shared by the ranks
        for module in compared_modules(updates):
            rows += [row for r in ranks if (row := _amp_row(u, module, r, svds, bases)) is not None]
    return rows


def sizes(updates, fig_layer: int) -> tuple[list[dict], list[dict]]:
    """(one update_row per update and (layer, module); spectra of the compared modules on fig_layer)."""
    rows, spectra = [], []
    keep = set(compared_modules(updates))
    for u in updates:
        for (layer, module), d in sorted(u.deltas.items()):
            row = analysis.update_row(f"{layer}.{module}", d, u.base[(layer, module)])
            rows.append({"name": u.name, "kind": u.kind, "rank": u.rank, **row})
            if layer == fig_layer and module in keep:
                s = analysis.singular_values(d)
                spectra.append(
                    {
                        "name": u.name,
                        "kind": u.kind,
                        "module": module,
                        "layer": layer,
                        "singular_values": [float(f"{v:.4g}") for v in s[:128].tolist()],
                    }
                )
    return rows, spectra


def intruders(updates, k: int, bases: BaseSVD) -> list[dict]:
    """Shuttleworth et al. 2024: intruder counts among the top-k singular vectors of W0 + ΔW, per ε."""
    rows = []
    for u in updates:
        for (layer, module), d in sorted(u.deltas.items()):
            w0 = u.base[(layer, module)].to(torch.float64)
            u0 = bases.get((layer, module), u.base[(layer, module)])[0]
            counts = analysis.intruder_dimensions(w0 + d, w0, k, EPS, u0)
            rows.append(
                {
                    "name": u.name,
                    "kind": u.kind,
                    "rank": u.rank,
                    "layer": layer,
                    "module": module,
                    "counts": counts,
                }
            )
    return rows


def intruder_totals(rows, modules) -> dict:
    """{update name: [total count over the compared modules, per ε]}."""
    out = {}
    for r in rows:
        if r["module"] in modules:
            tot = out.setdefault(r["name"], [0] * len(EPS))
            out[r["name"]] = [t + c for t, c in zip(tot, r["counts"])]
    return out


def group(kind: str, rank) -> str:
    return {"LORA": f"LoRA r={rank}", "FULL": "full", "IA3": "IA3"}[kind]


def _by_group(items, key, value) -> dict:
    out = {}
    for it in items:
        out.setdefault(key(it), []).append(value(it))
    return out


def headline(doc: dict) -> dict:
    """The numbers the report states, averaged over seeds, layers and pairs of one kind."""
    modules = doc["modules"]
    phi = _by_group(
        doc["similarity"],
        lambda r: (r["pair"] if r["pair"] != "seed" else f"seed r={r['rank_a']}", short(r["module"])),
        lambda r: r["phi11_mean"],
    )
    amp = _by_group(
        [r for r in doc["amplification"] if r["kind"] == "LORA" or r["r"] in doc["lora_ranks"]],
        lambda r: (
            group(r["kind"], r["r"]) if r["kind"] == "LORA" else f"full r={r['r']}",
            short(r["module"]),
        ),
        lambda r: r,
    )
    rank90 = _by_group(
        [r for r in doc["sizes"] if r["module"] in modules],
        lambda r: group(r["kind"], r["rank"]),
        lambda r: r["rank90"],
    )
    names = {u["name"]: group(u["kind"], u["rank"]) for u in doc["updates"]}
    i = EPS.index(HEADLINE_EPS)
    intr = _by_group(doc["intruder_totals"].items(), lambda kv: names[kv[0]], lambda kv: kv[1][i])
    return {
        "phi11": {f"{k[0]}:{k[1]}": _r(_mean(v), 3) for k, v in sorted(phi.items())},
        "amplification": {
            f"{k[0]}:{k[1]}": {
                "factor": _r(_mean(x["factor_mean"] for x in v), 3),
                **{f: _r(_mean(x[f"{f}_mean"] for x in v), 4) for f in AMP_FIELDS},
            }
            for k, v in sorted(amp.items())
        },
        "rank90_median": {k: statistics.median(v) for k, v in sorted(rank90.items())},
        "intruders_at_eps": HEADLINE_EPS,
        "intruders_mean_total": {k: _r(_mean(v), 2) for k, v in sorted(intr.items())},
        "matrices_per_update": len([r for r in doc["sizes"] if r["module"] in modules])
        // max(1, len(doc["updates"])),
    }


def analyse(updates, fig_layer: int | None, k: int) -> dict:
    """Every analysis over `updates`; fig_layer None: the middle layer."""
    layers = sorted({l for u in updates for l, _ in u.deltas})
    fig_layer = layers[len(layers) // 2] if fig_layer is None else fig_layer
    if fig_layer not in layers:
        raise ValueError(f"--layer {fig_layer}: the updates have layers {layers[0]}..{layers[-1]}")
    modules = compared_modules(updates)
    size_rows, spectra = sizes(updates, fig_layer)
    bases = BaseSVD()
    intr = intruders(updates, k, bases)
    doc = {
        "updates": [
            {
                "name": u.name,
                "kind": u.kind,
                "rank": u.rank,
                "seed": u.seed,
                "source": u.source,
                "metrics": u.metrics,
            }
            for u in updates
        ],
        "modules": modules,
        "layers": layers,
        "figure_layer": fig_layer,
        "lora_ranks": sorted({u.rank for u in updates if u.kind == "LORA"}),
        "top_k": k,
        "eps": list(EPS),
        "similarity": similarity(updates, fig_layer),
        "amplification": amplification(updates, bases),
        "sizes": size_rows,
        "spectra": spectra,
        "intruders": intr,
        "intruder_totals": intruder_totals(intr, set(modules)),
        "ia3": [{"name": u.name, **row} for u in updates for row in u.ia3],
    }
    doc["headline"] = headline(doc)
    return doc

"""What benchmarks.train_step prints: the table of variants (medians, side-by-side ratios,
activation bytes, page faults), the compiled-vs-eager table under --compile, the --profile
breakdown by kind of op, and the last stdout line, one JSON document.
"""

from __future__ import annotations

import json
import platform
import statistics

import torch

from benchmarks.ops import summarize


def summarise(res) -> None:
    """Per variant, in place: paired ratios against full and hf-peft (median of per-round ratios:
    robust to load drifting), the share of full's step a variant adds to frozen, the median and
    spread of its times (benchmarks.ops.summarize) and its median minor page faults per step."""
    for name in res:
        for ref in ("full", "hf-peft"):
            if ref in res:
                res[name][f"time_ratio_paired_{ref.replace('-', '_')}"] = statistics.median(
                    a / b for a, b in zip(res[name]["times"], res[ref]["times"])
                )
        if "frozen" in res and "full" in res:  # what a variant adds to frozen, as a share of full's step
            res[name]["over_frozen_paired_full"] = statistics.median(
                (a - f) / b
                for a, f, b in zip(res[name]["times"], res["frozen"]["times"], res["full"]["times"])
            )
    for name in res:
        res[name]["times_raw"] = list(res[name]["times"])
        res[name].update(summarize(res[name].pop("times")))
        faults = res[name].pop("faults")
        res[name]["minor_faults_per_step"] = statistics.median(faults) if None not in faults else None


def compile_summary(res) -> dict:
    """Per variant with a compiled twin "<name>+c": compile seconds (its first step minus the eager
    median), eager and compiled medians, compiled ÷ eager (median of per-round ratios, from the
    paired times) and the steps to pay the compile time back (None: compiled is not faster)."""
    out = {}
    for name, r in res.items():
        c = res.get(name + "+c")
        if c is None:
            continue
        eager_s, comp_s = r["median_ms"] / 1e3, c["median_ms"] / 1e3
        compile_s = c["first_step_s"] - eager_s
        gain = eager_s - comp_s
        out[name] = {
            "compile_s": compile_s,
            "eager_ms": r["median_ms"],
            "compiled_ms": c["median_ms"],
            "compiled_over_eager_paired": statistics.median(
                a / b for a, b in zip(c["times_raw"], r["times_raw"])
            ),
            "payback_steps": compile_s / gain if gain > 0 else None,
        }
    return out


# kinds of ATen op, for --profile; the rest is "other" (elementwise, softmax, GELU, LayerNorm, ...)
OP_KINDS = {
    "matrix products": (
        "aten::mm",
        "aten::addmm",
        "aten::addmm_",
        "aten::bmm",
        "aten::baddbmm",
        "aten::baddbmm_",
    ),
    "random numbers": ("aten::random_", "aten::bernoulli_", "aten::uniform_", "aten::normal_"),
}


def profile_step(runner, batch, labels, steps: int) -> dict:
    """ms per step by kind of op (self CPU time, so nothing is counted twice), plus the top ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.step(batch, labels)
    ops = {e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()}
    out = {kind: sum(ops.get(k, 0.0) for k in keys) for kind, keys in OP_KINDS.items()}
    out["other"] = sum(ops.values()) - sum(out.values())
    out["total"] = sum(ops.values())
    out["top"] = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12])
    return out


def _count(n):
    return "-" if n is None else f"{n:.0f}"


def report(res, notes, args, compiled=None):
    full = res.get("full")
    hf = res.get("hf-peft")
    print(
        f"{'variant':16} {'trainable':>10} {'median ms':>10} {'[min, max]':>17} {'/full':>6} {'/hf':>6} "
        f"{'p/full':>6} {'p/hf':>6} {'+frz/f':>6} {'act MiB':>8} {'/full':>6} {'/hf':>6} {'faults':>7}"
    )
    for name, r in res.items():
        for ref, key in ((full, "full"), (hf, "hf_peft")):
            if ref:
                r[f"time_ratio_{key}"] = r["median_ms"] / ref["median_ms"]
                r[f"bytes_ratio_{key}"] = r["activation_bytes"] / ref["activation_bytes"]
        fmt = lambda k, r=r: f"{r[k]:6.2f}" if k in r else f"{'-':>6}"
        print(
            f"{name:16} {r['trainable']:10d} {r['median_ms']:10.1f} [{r['min_ms']:7.1f},{r['max_ms']:7.1f}] "
            f"{fmt('time_ratio_full')} {fmt('time_ratio_hf_peft')} {fmt('time_ratio_paired_full')} "
            f"{fmt('time_ratio_paired_hf_peft')} {fmt('over_frozen_paired_full')} "
            f"{r['activation_bytes'] / 2**20:8.1f} "
            f"{fmt('bytes_ratio_full')} {fmt('bytes_ratio_hf_peft')} {_count(r['minor_faults_per_step']):>7}"
        )
    for name, note in notes.items():
        print(f"note {name}: {note}")
    if compiled:
        print(
            f"\n{'compiled':16} {'compile s':>10} {'eager ms':>10} {'compiled ms':>12} "
            f"{'c/eager':>8} {'payback steps':>14}"
        )
        for name, c in compiled.items():
            pay = "never" if c["payback_steps"] is None else f"{c['payback_steps']:.0f}"
            print(
                f"{name:16} {c['compile_s']:10.1f} {c['eager_ms']:10.1f} {c['compiled_ms']:12.1f} "
                f"{c['compiled_over_eager_paired']:8.2f} {pay:>14}"
            )
    for name, r in res.items():
        if "profile_ms_per_step" in r:
            p = r["profile_ms_per_step"]
            kinds = ", ".join(f"{k} {p[k]:.1f}" for k in (*OP_KINDS, "other"))
            top = ", ".join(f"{k.removeprefix('aten::')} {v:.1f}" for k, v in list(p["top"].items())[:8])
            print(f"profile {name}: {p['total']:.1f} ms/step under the profiler = {kinds}; top ops: {top}")
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "config": vars(args),
                "torch": torch.__version__,
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "notes": notes,
                "results": {k: {f: v for f, v in r.items() if f != "times_raw"} for k, r in res.items()},
                "compiled": compiled,
            }
        )
    )

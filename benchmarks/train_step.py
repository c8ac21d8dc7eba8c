"""One whole training step on the real checkpoint (all-MiniLM-L6-v2), every variant in one run.

    python -m benchmarks.train_step [--variants ...] [--batch 8] [--seq 128] [--repeats 10] [--compile]
                                    [--profile STEPS]

A step = forward (sequence classification, 2 labels) + cross-entropy + backward + AdamW step +
zero_grad, in train mode (hidden and attention dropout 0.1 from the checkpoint's config). AdamW is
torch's fused kernel for every variant, as minipeft's training loop and HF Trainer (torch >= 2.8)
use it; `--optimizer foreach` runs torch's multi-tensor AdamW instead (much slower on a CPU for
full fine-tuning's 22.7M parameters, cheap for an adapter's). Variants:
  full            full fine-tuning, every parameter trainable
  full-all        the same with the config's first_position_only off: the last layer
                  computes every position, as HF's does (ours computes only the [CLS] row the
                  pooler reads by default)
  full-sdpa       full with the config's recompute_attention off (SDPA keeps probabilities)
  frozen          no adapter: the base frozen but for layer 0's query/key/value biases (and the
                  classifier), so backward runs through every layer as it does for LoRA on
                  query,key,value: the floor any adapter adds its own cost to
  lora-plain      LoRA r=8 on query,key,value, dropout 0.1, composed path (LoraConfig(fused=False))
  lora-fused      the same through minipeft.ops (LoraConfig(fused=True))
  lora-fused-all  lora-fused with first_position_only off, as full-all
  lora-fused-sdpa lora-fused with recompute_attention off
  ia3             IA³ on key,value,output.dense (fused)
  dora-plain      DoRA r=8 on the LoRA targets, composed path (DoraConfig(fused=False))
  dora            the same through minipeft.ops.dora_linear (DoraConfig(fused=True))
  vera            VeRA r=256 (PEFT's default) on the LoRA targets, dropout 0.1 (fused)
  hf-peft         transformers BertForSequenceClassification + peft LoRA with the same settings
                  (skipped with a note when transformers/peft are not installed)
LoRA and IA³ variants also train the classifier (modules_to_save), as HF peft's SEQ_CLS task does.
Variants run round-robin, starting from a variant rotated each round, so ratios are measured side
by side: "/full", "/hf" are ratios of medians, "p/full", "p/hf" medians of per-round ratios, "+frz/f"
the median per round of (variant − frozen) ÷ full, and "faults" the median minor page faults per
step (docs/benchmarks.md).
"Activation bytes" are the unique storages autograd saves for backward during one forward,
parameters excluded (torch.autograd.graph.saved_tensors_hooks), on the eager model.
With --compile, every variant of ours (not hf-peft) also runs as "<variant>+c", a second copy of the
model under torch.compile(fullgraph=True) (Inductor), in the same round-robin, and a second table
gives per variant: the compile time (the first compiled step minus the eager median), eager and
compiled medians, compiled ÷ eager (median of per-round ratios) and the steps it takes to pay the
compile time back ("never" when compiled is not faster). Under compile attention is SDPA and
dropout F.dropout / rand (traceable); activation bytes are those of the eager model.

The default of the config's recompute_attention (True) comes from this benchmark: compare
full vs full-sdpa and lora-fused vs lora-fused-sdpa. The last stdout line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

try:
    import resource  # page-fault counts (Unix)
except ImportError:
    resource = None

VARIANTS = (
    "full",
    "full-all",
    "full-sdpa",
    "frozen",
    "lora-plain",
    "lora-fused",
    "lora-fused-all",
    "lora-fused-sdpa",
    "ia3",
    "dora-plain",
    "dora",
    "vera",
    "hf-peft",
)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of the variants above (default %(default)s)",
    )
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (default %(default)s)")
    ap.add_argument(
        "--seq", type=int, default=128, help="tokens per sequence (no padding) (default %(default)s)"
    )
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (default %(default)s)")
    ap.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default %(default)s)")
    ap.add_argument(
        "--dropout",
        type=float,
        default=0.1,
        help="LoRA dropout (on the adapter branch) (default %(default)s)",
    )
    ap.add_argument(
        "--targets",
        default="query,key,value",
        help="comma-separated LoRA target modules (default %(default)s)",
    )
    ap.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per variant first (default %(default)s)"
    )
    ap.add_argument(
        "--repeats", type=int, default=10, help="timed steps per variant, round-robin (default %(default)s)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads; 0 (the default) leaves torch's own"
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also run each variant of ours compiled (torch.compile, fullgraph) side by side, and "
        "print the compile time and the steps that pay it back",
    )
    ap.add_argument(
        "--optimizer",
        choices=("fused", "foreach"),
        default="fused",
        help="AdamW kernel of every variant: fused (default: what minipeft's loop and HF Trainer "
        "with torch >= 2.8 use) or foreach (torch's multi-tensor default)",
    )
    ap.add_argument(
        "--model-dir", default=None, help="checkpoint folder (default: the cached all-MiniLM-L6-v2)"
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after timing, profile STEPS more steps per variant with torch.profiler and print "
        "where a step's time goes (ms per step, by kind of op); 0 = off (default %(default)s)",
    )
    return ap.parse_args(argv)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    parse_args()

import torch
import torch.nn.functional as F

from benchmarks.ops import saved_bytes, summarize


def _ours(kind, path, args, first_position_only=True, recompute_attention=True):
    from minipeft import DoraConfig, IA3Config, LoraConfig, VeraConfig, inject
    from models import load_pretrained

    model = load_pretrained(
        path,
        head="sequence-classification",
        num_labels=2,
        first_position_only=first_position_only,
        recompute_attention=recompute_attention,
    )
    if kind.startswith("lora"):
        inject(
            model,
            LoraConfig(
                r=args.r,
                alpha=args.alpha,
                dropout=args.dropout,
                targets=tuple(args.targets.split(",")),
                modules_to_save=("classifier",),
                fused=kind != "lora-plain",
            ),
        )
    elif kind == "ia3":
        inject(model, IA3Config(modules_to_save=("classifier",)))
    elif kind.startswith("dora"):
        targets = tuple(args.targets.split(","))
        fused, head = kind == "dora", ("classifier",)
        inject(model, DoraConfig(args.r, args.alpha, args.dropout, targets, head, fused=fused))
    elif kind == "vera":
        targets = tuple(args.targets.split(","))
        inject(model, VeraConfig(dropout=args.dropout, targets=targets, modules_to_save=("classifier",)))
    elif kind == "frozen":
        first = tuple(f"encoder.layer.0.attention.self.{m}.bias" for m in ("query", "key", "value"))
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("classifier.") or name.endswith(first))
    return model


def _hf_peft(path, args):
    try:
        import peft
        from transformers import BertForSequenceClassification
    except ImportError as e:
        return None, f"skipped: {e}"
    model = BertForSequenceClassification.from_pretrained(str(path), num_labels=2)
    cfg = peft.LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=args.targets.split(","),
        task_type="SEQ_CLS",
    )
    model = peft.get_peft_model(model, cfg)
    impl = getattr(model.config, "_attn_implementation", "?")
    return model, f"transformers+peft {peft.__version__}, attention {impl}"


class Runner:
    """One variant: its model and optimizer; `forward` is the model or its compiled wrapper."""

    def __init__(self, name, model, note="", optimizer="fused"):
        self.name, self.model, self.note = name, model, note
        self.model.train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            self.params, lr=1e-5, fused=optimizer == "fused", foreach=optimizer == "foreach"
        )
        self.forward = model

    def loss(self, batch, labels):
        out = self.forward(**batch)
        logits = out.logits if hasattr(out, "logits") else out  # (batch, 2)
        return F.cross_entropy(logits, labels)

    def step(self, batch, labels):
        self.loss(batch, labels).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def activation_bytes(self, batch, labels):
        """Counted on the eager model (under --compile, what a compiled graph saves is decided by
        its partitioner and not visible to saved_tensors_hooks)."""
        exclude = list(self.model.parameters()) + list(self.model.buffers())
        forward, self.forward = self.forward, self.model
        try:
            nbytes, loss = saved_bytes(lambda: self.loss(batch, labels), exclude)
        finally:
            self.forward = forward
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        return nbytes


def build(args, path):
    runners, notes = [], {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise ValueError(f"--variants: unknown {name!r}; expected some of {','.join(VARIANTS)}")
        torch.manual_seed(0)
        if name == "hf-peft":
            model, note = _hf_peft(path, args)
            notes[name] = note
            if model is None:
                continue
        else:
            model, note = _our_variant(name, path, args), ""
        runners.append(Runner(name, model, note=note, optimizer=args.optimizer))
        if args.compile and name != "hf-peft":
            torch.manual_seed(0)
            r = Runner(name + "+c", _our_variant(name, path, args), note="compiled", optimizer=args.optimizer)
            r.forward = torch.compile(r.model, fullgraph=True)
            runners.append(r)
    return runners, notes


def _our_variant(name, path, args):
    kind = name.replace("-sdpa", "").replace("-all", "")
    return _ours(kind, path, args, not name.endswith("-all"), not name.endswith("-sdpa"))


def minor_faults():
    """Minor page faults of this process so far (a fresh page touched for the first time), or None
    where `resource` is missing (Windows)."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def batch_of(args, vocab):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (args.batch, args.seq), generator=g)  # (batch, seq)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    return batch, torch.randint(0, 2, (args.batch,), generator=g)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from models.assets import MINILM, asset_dir

    path = args.model_dir or asset_dir(MINILM)
    runners, notes = build(args, path)
    batch, labels = batch_of(args, vocab=30522)
    res = {
        r.name: {
            "activation_bytes": r.activation_bytes(batch, labels),
            "times": [],
            "faults": [],
            "note": r.note,
            "trainable": sum(p.numel() for p in r.params),
        }
        for r in runners
    }
    for i in range(max(args.warmup, 1 if args.compile else 0)):
        for r in runners:
            t0 = time.perf_counter()
            r.step(batch, labels)
            if i == 0:  # the compiled variants compile here
                res[r.name]["first_step_s"] = time.perf_counter() - t0
    for i in range(args.repeats):
        # round-robin (side by side), the starting variant rotated every round, so no variant
        # always runs first or always follows the same other one
        k = i % max(len(runners), 1)
        for r in runners[k:] + runners[:k]:
            f0, t0 = minor_faults(), time.perf_counter()
            r.step(batch, labels)
            res[r.name]["times"].append(time.perf_counter() - t0)
            f1 = minor_faults()
            res[r.name]["faults"].append(None if f0 is None else f1 - f0)
    for name in res:  # median of per-repeat ratios (same round): robust to load drifting
        for ref in ("full", "hf-peft"):
            if ref in res:
                res[name][f"time_ratio_paired_{ref.replace('-', '_')}"] = statistics.median(
                    a / b for a, b in zip(res[name]["times"], res[ref]["times"])
                )
        if (
            "frozen" in res and "full" in res
        ):  # what a variant adds to the frozen base, as a share of full's step
            res[name]["over_frozen_paired_full"] = statistics.median(
                (a - f) / b
                for a, f, b in zip(res[name]["times"], res["frozen"]["times"], res["full"]["times"])
            )
    for name in res:
        res[name]["times_raw"] = list(res[name]["times"])
        res[name].update(summarize(res[name].pop("times")))
        faults = res[name].pop("faults")
        res[name]["minor_faults_per_step"] = statistics.median(faults) if None not in faults else None
    if args.profile:
        for r in runners:
            res[r.name]["profile_ms_per_step"] = profile_step(r, batch, labels, args.profile)
    compiled = compile_summary(res)
    report(res, notes, args, compiled)


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


if __name__ == "__main__":
    main()

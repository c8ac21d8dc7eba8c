"""Fused adapter ops vs their plain composition: forward+backward time and bytes saved for backward.

    python -m benchmarks.ops [--shapes minilm,bert-base] [--tokens 1024] [--repeats 15] ...

Cases per shape (hidden h, intermediate f):
  lora-qkv   three LoRA projections h→h reading one x (query, key, value), dropout on the LoRA branch
  lora-ffn   one LoRA projection h→f (intermediate.dense)
  dora-qkv   three DoRA projections h→h reading one x, dropout on the update (PEFT's DoRA formula)
  ia3-kv     IA³ output scaling on two projections h→h reading one x (key, value)
  ia3-ff     IA³ input scaling f→h (output.dense)
Then the dropout masks alone (--masks, on by default), at x's shape (tokens, h) and at the attention
probabilities' shape (tokens/128, 12, 128, 128): nn.Dropout's CPU draw (a float mask from
bernoulli_), minipeft's 16-bit lanes compared into a bool tensor viewed as uint8 (how it was done
before), and compared straight into uint8 (minipeft.ops.dropout_mask, the same bytes).
"plain" is the PEFT-style composition F.linear(x,W,b) + s·F.linear(F.linear(dropout(x),A),B) (and
F.linear(x,W,b)·l / F.linear(x·l,W,b) for IA³; for DoRA PEFT's F.linear(x,W,b) +
(m/n-1)·F.linear(x_d,W) + (m/n)·s·F.linear(F.linear(x_d,A),B) with n = ‖W + s·BA‖ detached);
"fused" is minipeft.ops. Plain and fused run interleaved in every repeat, in an order flipped
every repeat, so their ratio is measured side by side ("t f/p": ratio of medians; "paired":
median of the per-repeat ratios, robust to load drifting on a shared machine). Bytes saved for
backward are counted with torch.autograd.graph.saved_tensors_hooks over unique storages, parameters excluded.
The last stdout line is one JSON document.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

from benchmarks import cli_args

SHAPES = {"minilm": (384, 1536), "bert-base": (768, 3072)}


def parse_args(argv=None):
    ap = cli_args.parser("benchmarks.ops", __doc__)
    ap.add_argument(
        "--shapes",
        default="minilm,bert-base",
        help="comma-separated model shapes: minilm (384, 1536), bert-base (768, 3072) (default %(default)s)",
    )
    ap.add_argument(
        "--cases",
        default="lora-qkv,lora-ffn,dora-qkv,ia3-kv,ia3-ff",
        help="comma-separated cases (see above) (default %(default)s)",
    )
    ap.add_argument(
        "--tokens",
        type=int,
        default=1024,
        help="rows of x, i.e. batch × sequence (8 × 128) (default %(default)s)",
    )
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (default %(default)s)")
    ap.add_argument(
        "--alpha", type=float, default=16.0, help="LoRA alpha; scaling = alpha / r (default %(default)s)"
    )
    ap.add_argument(
        "--dropout", type=float, default=0.1, help="LoRA dropout on the adapter branch (default %(default)s)"
    )
    ap.add_argument(
        "--masks",
        default="on",
        choices=["on", "off"],
        help="also time the dropout masks alone (default %(default)s)",
    )
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="dtype of x, weights and adapters (default %(default)s)",
    )
    ap.add_argument(
        "--device", default="auto", help="cpu, cuda, or auto (cuda when available) (default %(default)s)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads; 0 (the default) leaves torch's own"
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed forward+backward steps per path first (default %(default)s)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=15,
        help="timed repeats; median and min/max reported (default %(default)s)",
    )
    ap.add_argument(
        "--inner",
        type=int,
        default=3,
        help="steps per timed repeat (time is their mean) (default %(default)s)",
    )
    return ap.parse_args(argv)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    parse_args()

import torch
import torch.nn.functional as F

from minipeft import ops
from minipeft.training.memory import SavedTensorsMeter
from models.dropout import random_lanes


def saved_bytes(fn, exclude=()):
    """(bytes of unique storages autograd saves for backward while fn() runs, fn's result).

    Storages of `exclude` (parameters) are not counted; views of one storage count once."""
    meter = SavedTensorsMeter(exclude=exclude)
    with meter.measure():
        out = fn()
    return meter.bytes, out


def summarize(times_s):
    """Median and spread (min, max) in milliseconds."""
    ms = sorted(t * 1e3 for t in times_s)
    return {"median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1]}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds_per_call(fn, inner, device):
    """Wall seconds per call of fn(), averaged over `inner` back-to-back calls (device synchronised)."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / inner


def _params(shapes, r, dtype, device, gen):
    """Frozen W, b and trainable adapter tensors for each (d_in, d_out, kind)."""
    out = []
    for d_in, d_out, kind in shapes:
        mk = lambda *s, std=1.0: torch.randn(*s, generator=gen, dtype=dtype).mul_(std).to(device)
        W = torch.nn.Parameter(mk(d_out, d_in, std=d_in**-0.5), requires_grad=False)
        b = torch.nn.Parameter(mk(d_out, std=0.02), requires_grad=False)
        if kind in ("lora", "dora"):
            extra = (torch.nn.Parameter(mk(r, d_in, std=0.1)), torch.nn.Parameter(mk(d_out, r, std=0.1)))
            if kind == "dora":  # magnitude near ‖W‖ per row
                extra += (torch.nn.Parameter(W.detach().norm(dim=1) * (1 + mk(d_out, std=0.05))),)
        else:
            n = d_in if kind == "ia3-ff" else d_out
            extra = (torch.nn.Parameter(1 + mk(n, std=0.1)),)
        out.append((W, b) + extra)
    return out


def make_case(name, h, f, r, scaling, p):
    """(projection shapes, plain fn, fused fn); fns map (x, params) to the list of outputs."""

    def lora_plain(x, W, b, A, B):
        return F.linear(x, W, b) + scaling * F.linear(F.linear(F.dropout(x, p, True), A), B)

    def lora_fused(x, W, b, A, B):
        return ops.lora_linear(x, W, b, A, B, scaling, p, True)

    def dora_plain(x, W, b, A, B, m):
        g = m / (W + scaling * B @ A).norm(dim=1).detach()  # (out,)
        xd = F.dropout(x, p, True)
        return F.linear(x, W, b) + (g - 1) * F.linear(xd, W) + g * scaling * F.linear(F.linear(xd, A), B)

    def dora_fused(x, W, b, A, B, m):
        return ops.dora_linear(x, W, b, A, B, m, scaling, p, True)

    ff = name == "ia3-ff"
    ia3_plain = (
        (lambda x, W, b, l: F.linear(x * l, W, b)) if ff else (lambda x, W, b, l: F.linear(x, W, b) * l)
    )
    ia3_fused = lambda x, W, b, l: ops.ia3_linear(x, W, b, l, ff)
    shapes, plain, fused = {
        "lora-qkv": ([(h, h, "lora")] * 3, lora_plain, lora_fused),
        "lora-ffn": ([(h, f, "lora")], lora_plain, lora_fused),
        "dora-qkv": ([(h, h, "dora")] * 3, dora_plain, dora_fused),
        "ia3-kv": ([(h, h, "ia3")] * 2, ia3_plain, ia3_fused),
        "ia3-ff": ([(f, h, "ia3-ff")], ia3_plain, ia3_fused),
    }[name]
    each = lambda fn: lambda x, params: [fn(x, *p) for p in params]
    return shapes, each(plain), each(fused)


def measure_case(args, name, h, f, device, dtype):
    gen = torch.Generator().manual_seed(0)
    shapes, plain, fused = make_case(name, h, f, args.r, args.alpha / args.r, args.dropout)
    params = _params(shapes, args.r, dtype, device, gen)
    flat = [t for p in params for t in p]
    x = torch.randn(args.tokens, shapes[0][0], generator=gen, dtype=dtype).to(device).requires_grad_(True)
    dys = [torch.randn(args.tokens, d_out, generator=gen, dtype=dtype).to(device) for _, d_out, _ in shapes]
    step = lambda fn: torch.autograd.backward(fn(x, params), dys)  # no loss op: nothing extra saved
    res = {}
    for path, fn in (("plain", plain), ("fused", fused)):
        nbytes, _ = saved_bytes(lambda fn=fn: fn(x, params), flat)
        res[path] = {"saved_bytes": nbytes, "times": []}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(fn)
            res[path]["cuda_peak_bytes"] = torch.cuda.max_memory_allocated() - base
    for _ in range(args.warmup):
        step(plain), step(fused)
    paths = [("plain", plain), ("fused", fused)]
    for i in range(args.repeats):
        # interleaved (side by side), the order flipped every repeat, and every path starting from
        # cleared gradients, so neither path is always the one that runs second or accumulates
        for path, fn in paths if i % 2 == 0 else paths[::-1]:
            x.grad = None
            for t in flat:
                t.grad = None
            res[path]["times"].append(_seconds_per_call(lambda fn=fn: step(fn), args.inner, device))
    paired = [f / p for f, p in zip(res["fused"]["times"], res["plain"]["times"])]
    for path in ("plain", "fused"):
        res[path].update(summarize(res[path].pop("times")))
    res["time_ratio_fused_plain"] = res["fused"]["median_ms"] / res["plain"]["median_ms"]
    res["time_ratio_paired"] = statistics.median(paired)  # median of per-repeat ratios: robust to drift
    res["bytes_ratio_fused_plain"] = res["fused"]["saved_bytes"] / max(res["plain"]["saved_bytes"], 1)
    return res


def measure_masks(args, shape, device):
    """Median ms per mask of each way to draw a dropout keep-mask of `shape`, interleaved."""
    p = args.dropout

    def lanes_bool():
        lanes, threshold, _ = random_lanes(shape, p, device)  # (*shape) int16
        return (lanes >= threshold).view(torch.uint8)

    ways = {
        "bernoulli": lambda: torch.empty(shape, device=device).bernoulli_(1 - p),
        "lanes-bool": lanes_bool,
        "lanes-uint8": lambda: ops.dropout_mask(shape, p, device)[0],
    }
    torch.manual_seed(0)
    old = ways["lanes-bool"]()
    torch.manual_seed(0)
    if not torch.equal(old, ways["lanes-uint8"]()):
        raise AssertionError("lanes-bool and lanes-uint8 masks differ for the same seed")
    times = {k: [] for k in ways}
    for _ in range(args.warmup):
        for fn in ways.values():
            fn()
    order = list(ways.items())
    for i in range(args.repeats):
        for k, fn in order if i % 2 == 0 else order[::-1]:  # order flipped every repeat
            times[k].append(_seconds_per_call(fn, args.inner, device))
    res = {k: summarize(v) for k, v in times.items()}
    res["paired_uint8_bool"] = statistics.median(
        a / b for a, b in zip(times["lanes-uint8"], times["lanes-bool"])
    )
    return res


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = getattr(torch, args.dtype)
    results = []
    print(
        f"{'shape':10} {'case':9} {'plain ms':>17} {'fused ms':>17} {'t f/p':>6} {'paired':>6} "
        f"{'plain MiB':>9} {'fused MiB':>9} {'B f/p':>6}"
    )
    for shape in args.shapes.split(","):
        h, f = SHAPES[shape]
        for case in args.cases.split(","):
            r = measure_case(args, case, h, f, device, dtype)
            p, q = r["plain"], r["fused"]
            print(
                f"{shape:10} {case:9} {p['median_ms']:7.2f} [{p['min_ms']:.1f},{p['max_ms']:.1f}] "
                f"{q['median_ms']:7.2f} [{q['min_ms']:.1f},{q['max_ms']:.1f}] "
                f"{r['time_ratio_fused_plain']:6.2f} {r['time_ratio_paired']:6.2f} "
                f"{p['saved_bytes'] / 2**20:9.2f} {q['saved_bytes'] / 2**20:9.2f} "
                f"{r['bytes_ratio_fused_plain']:6.2f}"
            )
            results.append({"shape": shape, "hidden": h, "intermediate": f, "case": case, **r})
    masks = []
    if args.masks == "on":
        mshapes = [(f"x {s}", (args.tokens, SHAPES[s][0])) for s in args.shapes.split(",")]
        mshapes.append(("attention", (max(args.tokens // 128, 1), 12, 128, 128)))
        print(f"\ndropout mask, p={args.dropout}: median ms [min, max] per mask")
        print(
            f"{'shape':24} {'bernoulli (nn.Dropout)':>24} {'lanes -> bool':>22} "
            f"{'lanes -> uint8':>22} {'u8/bool':>7}"
        )
        for label, shape in mshapes:
            m = measure_masks(args, shape, device)
            cell = lambda k, m=m: f"{m[k]['median_ms']:7.3f} [{m[k]['min_ms']:.2f},{m[k]['max_ms']:.2f}]"
            print(
                f"{label + ' ' + 'x'.join(map(str, shape)):24} {cell('bernoulli'):>24} "
                f"{cell('lanes-bool'):>22} "
                f"{cell('lanes-uint8'):>22} {m['paired_uint8_bool']:7.2f}"
            )
            masks.append({"label": label, "shape": list(shape), **m})
    print(
        json.dumps(
            {
                "benchmark": "ops",
                "config": vars(args),
                "torch": torch.__version__,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "results": results,
                "masks": masks,
            }
        )
    )


if __name__ == "__main__":
    main()

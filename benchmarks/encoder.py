"""Forward throughput of our BERT encoder on the real checkpoint (all-MiniLM-L6-v2), and, where
`transformers` is installed, of `transformers.BertModel` with the same weights in the same run.

The two models are timed interleaved (ours, theirs, theirs, ours, ...) on identical inputs so that
load from other processes on a shared machine hits both alike; the ratio is taken per repeat pair
and its median reported. Each batch has rows of different lengths (attention_mask zeros at the end,
lengths uniform in [seq/2, seq]); tokens/s counts all batch×seq positions, padding included.

    python -m benchmarks.encoder                       # 8x128 and 32x64, 3 warm-up, 15 repeats
    python -m benchmarks.encoder --shapes 1x512 --repeats 5 --threads 1

Prints a table; the last stdout line is one JSON document (config, torch version, device, results).
"""

from __future__ import annotations

import json
import platform
import statistics
import time

from benchmarks import cli_args
from models.assets import MINILM, asset_dir


def parse_args(argv=None):
    p = cli_args.parser("benchmarks.encoder", __doc__.split("\n\n")[0])
    p.add_argument(
        "--shapes",
        default="8x128,32x64",
        help="comma-separated batch shapes BATCHxSEQ to time (default: 8x128,32x64)",
    )
    cli_args.add_timing(
        p,
        warmup=(3, "untimed forward passes per model and shape"),
        repeats=(15, "timed forward passes per model and shape"),
        threads="torch.set_num_threads for this run; 0 keeps torch's default (default 0)",
    )
    p.add_argument(
        "--model-dir",
        default=None,
        help="a HuggingFace BERT folder to time instead of the cached all-MiniLM-L6-v2",
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="time only our encoder, even when transformers is installed",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random token ids and lengths (default 0)")
    return p.parse_args(argv)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    parse_args()

import torch

from models import load_pretrained


def make_batch(b: int, t: int, vocab: int, gen: torch.Generator) -> dict:
    ids = torch.randint(1000, vocab, (b, t), generator=gen)  # (batch, seq)
    lengths = torch.randint(t // 2, t + 1, (b,), generator=gen)
    lengths[0] = t  # the longest row sets seq
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()  # (batch, seq)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def time_once(model, batch) -> float:
    start = time.perf_counter()
    model(**batch)
    return time.perf_counter() - start


def load_reference(folder, disabled: bool):
    if disabled:
        return None, "disabled by --no-reference"
    try:
        import transformers
    except ImportError:
        return None, "transformers not installed"
    transformers.logging.set_verbosity_error()
    model = transformers.BertModel.from_pretrained(str(folder)).eval()
    return model, f"transformers {transformers.__version__} ({model.config._attn_implementation})"


def bench_shape(ours, ref, b, t, args, gen) -> dict:
    batch = make_batch(b, t, ours.config.vocab_size, gen)
    models = {"ours": ours} | ({"transformers": ref} if ref is not None else {})
    for _ in range(args.warmup):
        for m in models.values():
            m(**batch)
    times = {name: [] for name in models}
    for r in range(args.repeats):
        order = list(models) if r % 2 == 0 else list(models)[::-1]  # interleave, alternate first
        for name in order:
            times[name].append(time_once(models[name], batch))
    row = {"batch": b, "seq": t, "tokens": b * t}
    for name, ts in times.items():
        tps = sorted(b * t / s for s in ts)
        row[name] = {
            "median_ms": 1e3 * statistics.median(ts),
            "min_ms": 1e3 * min(ts),
            "max_ms": 1e3 * max(ts),
            "tokens_per_s": statistics.median(tps),
            "tokens_per_s_p25": tps[len(tps) // 4],
            "tokens_per_s_p75": tps[(3 * len(tps)) // 4],
        }
    if ref is not None:
        ratios = sorted(r_ / o for o, r_ in zip(times["ours"], times["transformers"]))
        row["speed_ratio"] = {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}
    return row


def check_equal(ours, ref, gen) -> float:
    batch = make_batch(2, 16, ours.config.vocab_size, gen)
    a, b = ours(**batch), ref(**batch)
    real = batch["attention_mask"].bool()
    return (a.last_hidden_state[real] - b.last_hidden_state[real]).abs().max().item()


def print_table(rows, has_ref: bool) -> None:
    head = f"{'shape':>8} | {'ours ms':>9} {'ours tok/s':>11} (p25-p75)"
    if has_ref:
        head += f" | {'HF ms':>9} {'HF tok/s':>11} | {'speed ours/HF':>13} (min-max)"
    print(head)
    print("-" * len(head))
    for r in rows:
        o = r["ours"]
        line = (
            f"{r['batch']}x{r['seq']:<5} | {o['median_ms']:9.2f} {o['tokens_per_s']:11.0f} "
            f"({o['tokens_per_s_p25']:.0f}-{o['tokens_per_s_p75']:.0f})"
        )
        if has_ref:
            h, s = r["transformers"], r["speed_ratio"]
            line += (
                f" | {h['median_ms']:9.2f} {h['tokens_per_s']:11.0f} | {s['median']:13.3f} "
                f"({s['min']:.3f}-{s['max']:.3f})"
            )
        print(line)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.shapes.split(",") if s]
    folder = args.model_dir or asset_dir(MINILM)
    ours = load_pretrained(folder).eval()
    ref, ref_note = load_reference(folder, args.no_reference)
    gen = torch.Generator().manual_seed(args.seed)
    rows, max_diff = [], None
    with torch.inference_mode():
        if ref is not None:
            max_diff = check_equal(ours, ref, gen)
        for b, t in shapes:
            rows.append(bench_shape(ours, ref, b, t, args, gen))
    print(
        f"encoder forward, {folder}; reference: {ref_note}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; tokens/s over batch x seq (padding included)"
    )
    print_table(rows, ref is not None)
    if max_diff is not None:
        print(f"max |ours - HF| hidden state on real tokens: {max_diff:.2e}")
    print(
        json.dumps(
            {
                "benchmark": "encoder",
                "config": {**vars(args), "model_dir": str(folder), "reference": ref_note},
                "torch": torch.__version__,
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "processor": platform.processor(),
                "max_abs_diff_vs_reference": max_diff,
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    main()

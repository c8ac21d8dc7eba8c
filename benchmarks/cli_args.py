"""The flags the benchmark command lines share, defined once: type, default and usual help text.

    add(p, DEFAULTS, "--seeds", "--epochs", seeds="seeds, one run per rank and seed (default ...)")

adds each named flag in the order given, its default read from the CLI's DEFAULTS dict, with the
usual help text below unless a keyword (the flag's dest: `max_length` for --max-length) gives the
CLI's own wording. add_timing() is the --warmup/--repeats/--threads block of the micro-benchmarks.
Torch-free: every CLI parses its arguments before torch loads, so --help answers at once.
"""

from __future__ import annotations

import argparse

from tasks.cli import comma_list


def parser(module: str, description: str, cls=argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`: help names the command as it is typed, description verbatim."""
    return cls(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def ints(text: str) -> list[int]:
    """'2,8,32' -> [2, 8, 32] (an argparse type)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def positive_int(text: str, flag: str) -> int:
    """A --threads value that is not 'auto': a positive integer, or a ValueError naming the flag."""
    if not str(text).isdigit() or int(text) < 1:
        raise ValueError(f"{flag} must be a positive integer or 'auto', got {text!r}")
    return int(text)


# flag -> its add_argument keywords for a CLI's defaults `d`; "help" is the usual wording
FLAGS = {
    "--model": lambda d: dict(help="HuggingFace BERT folder (default: the fetched all-MiniLM-L6-v2)"),
    "--data-dir": lambda d: dict(
        help="folder with your files in the task's layout (see python -m tasks.finetune --help)"
    ),
    "--ranks": lambda d: dict(type=ints, default=ints(d["ranks"]), help=f"LoRA ranks (default {d['ranks']})"),
    "--seeds": lambda d: dict(
        type=ints, default=ints(d["seeds"]), help=f"seeds, one run each (default {d['seeds']}, the paper's)"
    ),
    "--alpha-policy": lambda d: dict(
        choices=("fixed", "proportional", "rslora"),
        default=d["alpha_policy"],
        help="LoRA scaling: fixed alpha/r, proportional (alpha=r), rslora alpha/sqrt(r)",
    ),
    "--alpha": lambda d: dict(
        type=float,
        default=d["alpha"],
        help=f"alpha of the fixed and rslora policies (default {d['alpha']:g})",
    ),
    "--targets": lambda d: dict(
        type=comma_list,
        default=comma_list(d["targets"]),
        help=f"LoRA target modules (default {d['targets']})",
    ),
    "--epochs": lambda d: dict(type=int, default=d["epochs"], help=f"epochs per run (default {d['epochs']})"),
    "--batch-size": lambda d: dict(
        type=int,
        default=d.get("batch_size", 16),
        help=f"training batch size (default {d.get('batch_size', 16)})",
    ),
    "--max-length": lambda d: dict(
        type=int, default=d["max_length"], help=f"max tokens per example (default {d['max_length']})"
    ),
    "--max-train-examples": lambda d: dict(
        type=int,
        default=d.get("max_train_examples", 0),
        help="train on a fixed random subset of this size "
        f"(default {d.get('max_train_examples', 0)}; 0 = all)",
    ),
    "--max-eval-examples": lambda d: dict(
        type=int,
        default=d["max_eval_examples"],
        help="score on fixed random subsets of validation and test of this size "
        f"(default {d['max_eval_examples']}; 0 = all)",
    ),
    "--data-seed": lambda d: dict(type=int, default=0, help="seed of the data subsets (default 0)"),
    "--threads": lambda d: dict(
        default="auto",
        help="torch threads, or 'auto' (default): time a step with torch's default and with 1 thread "
        "and keep the faster",
    ),
    "--workers": lambda d: dict(type=int, default=1, help="processes to spread the runs over (default 1)"),
    "--max-runs": lambda d: dict(
        type=int, help="stop after this many new runs (resume later with the same --out)"
    ),
    "--shard": lambda d: dict(
        metavar="K/N",
        help="run only the K-th of N slices of the plan (Slurm arrays: docs/grids.md); "
        "rerun without it to assemble",
    ),
    "--out": lambda d: dict(default=d["out"], help=f"output folder (default {d['out']})"),
    "--no-progress": lambda d: dict(action="store_true", help="no progress bars"),
}


# how much each run trains and is scored on, in this order in every training study's --help
SIZE = ("--batch-size", "--max-length", "--max-train-examples", "--max-eval-examples")


def add(p: argparse.ArgumentParser, d: dict, *flags: str, **helps: str) -> None:
    """Add `flags` (keys of FLAGS) to `p` in this order; helps[dest] replaces a flag's usual help."""
    unknown = set(helps) - {f[2:].replace("-", "_") for f in flags}
    assert not unknown, f"help given for flags not added: {sorted(unknown)}"
    for flag in flags:
        kwargs = FLAGS[flag](d)
        kwargs["help"] = helps.get(flag[2:].replace("-", "_"), kwargs["help"])
        p.add_argument(flag, **kwargs)


def add_timing(
    p: argparse.ArgumentParser,
    warmup: tuple[int, str],
    repeats: tuple[int, str],
    threads: str = "torch.set_num_threads; 0 (the default) leaves torch's own",
) -> None:
    """--warmup N, --repeats N (each: default, what it counts) and --threads N (0: torch's own)."""
    for flag, (default, what) in (("--warmup", warmup), ("--repeats", repeats)):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help=threads)

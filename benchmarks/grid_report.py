"""Statistics and text shared by the studies' reports: median (std) over seeds, paired Δ against a
reference method with the rank sweep's noise verdict, and markdown/CSV tables.

Cells are reported as the paper printed them: median over seeds and, in brackets, the sample
standard deviation (ddof=1, pandas' default). A difference between two methods is paired per seed
(same seed: same data order, head initialisation and few-shot draw) and called "within noise"
when the 95% t-interval of the mean paired Δ contains 0 (benchmarks.sweep_stats.paired_delta).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable
from pathlib import Path

from benchmarks.sweep_stats import Delta, mean_std, paired_delta

NAMES = {"roc_auc": "AUROC", "f1_macro": "F1 macro", "f1_micro": "F1 micro", "entity_f1": "entity F1"}


def number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def median_std(values: Iterable[float]) -> tuple[float, float, int]:
    xs = [x for x in values if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan, 0
    return statistics.median(xs), mean_std(xs)[1], len(xs)


def cell(values: Iterable[float], digits: int = 3) -> str:
    m, s, n = median_std(values)
    if n == 0:
        return "n/a"
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ({s:.{digits}f})"


def by_seed(rows: list[dict], metric: str, **match) -> dict[int, float]:
    return {
        int(r["seed"]): number(r[metric]) for r in rows if all(str(r[k]) == str(v) for k, v in match.items())
    }


def delta(rows: list[dict], metric: str, method: str, reference: str, **match) -> Delta:
    return paired_delta(
        by_seed(rows, metric, method=method, **match), by_seed(rows, metric, method=reference, **match)
    )


def delta_text(d: Delta) -> str:
    if math.isnan(d.mean):
        return "n/a"
    sd = "" if math.isnan(d.std) else f" ± {d.std:.3f}"
    return f"{d.mean:+.3f}{sd} ({d.verdict})"


def sentence(d: Delta, what: str, method: str, reference: str, metric: str) -> str:
    """One sentence on a paired Δ, in the words of the rank sweep's summary."""
    name = NAMES.get(metric, metric)
    if d.n == 0:
        return f"{what}: no seed has both {method} and {reference}, so they cannot be compared yet."
    if d.verdict.startswith("one seed"):
        return (
            f"{what}: {method} − {reference} = {d.mean:+.3f} test {name} from a single seed; "
            f"run several --seeds to tell it from seed noise."
        )
    if d.verdict == "within noise":
        return (
            f"{what}: {method} and {reference} are within seed noise on test {name} "
            f"(paired Δ {d.mean:+.3f} ± {d.std:.3f} over {d.n} seeds; the 95% t-interval contains 0)."
        )
    return (
        f"{what}: {method} is {d.verdict} than {reference} on test {name} beyond seed noise "
        f"(paired Δ {d.mean:+.3f} ± {d.std:.3f} over {d.n} seeds; the 95% t-interval excludes 0)."
    )


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def csv_text(header: list[str], body: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(body)
    return buf.getvalue()


def reference_method(methods: tuple[str, ...], wanted: str | None) -> str:
    """--reference, else full when it is in the grid, else the first method."""
    if wanted:
        if wanted not in methods:
            raise ValueError(f"--reference {wanted} is not in --methods {','.join(methods)}; add it")
        return wanted
    return "full" if "full" in methods else methods[0]


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def save_figure(fig, path) -> None:
    from minipeft.files import write_atomic

    try:
        write_atomic(path, fig.savefig, suffix=".png")
    finally:
        plt().close(fig)


def scope(rows: list[dict], inputs: dict, args, ns=None) -> tuple[list, tuple, tuple, str, list[dict]]:
    """(models, tasks, methods, reference, rows): the rows of runs.csv this invocation's grid holds
    (other shards' and earlier invocations' runs of other settings left out). `ns`: the examples
    per class to keep (None: any)."""
    models = [Path(m).name for m in inputs["models"]]
    tasks, methods = inputs["tasks"], inputs["methods"]
    mine = [
        r
        for r in rows
        if r["model"] in models
        and r["task"] in tasks
        and r["method"] in methods
        and int(r["seed"]) in args.seeds
        and (ns is None or int(r["n_per_class"]) in ns)
    ]
    return models, tasks, methods, reference_method(methods, args.reference), mine


def timing_sentence(wall: float, cpu: float) -> str:
    return (
        f"This invocation: {wall / 60:.1f} min wall clock, {cpu / 60:.1f} min of process CPU time (the "
        f"machine may have been shared; runs already in runs.csv are not re-timed)."
    )


def predicted_one_class(row: dict) -> bool:
    """Whether a classification run predicted one class for every test example, read from its
    scores: a model that always predicts class c has accuracy a = share of c, F1 = 2a/(1+a) on c
    (precision a, recall 1) and 0 on the other K - 1 classes, so F1 macro = 2a / ((1 + a) K)."""
    a, f1, k = number(row.get("test_accuracy")), number(row.get("test_f1_macro")), number(row.get("labels"))
    if math.isnan(a) or math.isnan(f1) or math.isnan(k) or k < 2:
        return False  # NER, or a row written before runs.csv had the labels column
    return abs(f1 - 2 * a / ((1 + a) * k)) < 1e-6


def one_class_notes(rows: list[dict]) -> list[str]:
    """One sentence per (model, task, method) with runs that predicted a single class on test."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["task"], r["method"], r.get("n_per_class", "")), []).append(r)
    notes = []
    for (model, task, method, n), runs in groups.items():
        flat = sum(predicted_one_class(r) for r in runs)
        if flat:
            where = f"{task}, {model}" + (f", n={n} per class" if n not in ("", "0", 0, None) else "")
            notes.append(
                f"{where}: {method} predicted a single class for every test example in {flat} of "
                f"{len(runs)} seeds (its F1 macro is that of a constant prediction): under-trained at this "
                f"budget, so its F1 says nothing about the method; raise --epochs or --lr."
            )
    return notes


def publish(
    out: Path, summary: list[str], md: str, sentences: list[str], reference: str, rows: list[dict]
) -> dict:
    """Write summary.md (with a note on runs that predicted one class), print the table and the
    findings; the study's JSON results."""
    from minipeft.files import write_text

    flat = one_class_notes(rows)
    if flat:
        summary = [*summary, "Runs that predicted a single class:", "", *[f"- {s}" for s in flat], ""]
    write_text(Path(out) / "summary.md", "\n".join(summary))
    print(md)
    print("\n".join(sentences + flat))
    return {"reference": reference, "findings": sentences, "single_class": flat}

"""`python -m benchmarks.few_shot`: score against the number of training examples per class (§4.6).

For each n in --n-per-class, every seed draws n examples of every class from the training split
(benchmarks.grid_study.per_class: shuffled per class by the seed; a seed's draw at a smaller n is
inside its draw at a larger n); validation and test stay as they are. Each (model, task, n,
method, seed) is one run on the grid engine (resume, --workers, --shard): the paper's 10 epochs,
the best epoch by validation F1 macro, scored on test. Outputs in --out: runs.csv, table.md and
table.csv (test AUROC median (std) per n and method, paired Δ against the reference method),
few_shot.png (AUROC against n per class, mean ± sd bands), summary.md, grid.json; the last
stdout line is JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import grid_cli
from benchmarks.cli_args import ints

DEFAULTS = dict(
    methods="lora,full",
    tasks="rotten-tomatoes",
    seeds="12,34,56",
    epochs=10,
    max_length=64,
    max_eval_examples=150,
    n_per_class="8,32,128",
    out="runs/few_shot",
)

DESCRIPTION = """\
Few-shot study (Taylor et al. 2024, §4.6): test AUROC against n training examples per class, LoRA
against full fine-tuning, 10 epochs, best epoch by validation, seeds 12,34,56.

Default (about 9 min on one CPU core; the estimate is printed first): the real all-MiniLM-L6-v2
checkpoint on rotten-tomatoes, n = 8, 32, 128 per class, 64 tokens, validation and test subsets
of 150 examples (evaluating the whole validation split after each of the 10 epochs would cost
more than the training). The paper's protocol on your files:
    --tasks mimic-mp --data-dir DIR --n-per-class 16,32,64,128,256,512,1024,2048,4096
    --max-length 480 --max-eval-examples 0 --lr lora=3e-4,full=3e-5
"""


def _own_flags(a) -> None:
    a(
        "--n-per-class",
        type=ints,
        default=ints(DEFAULTS["n_per_class"]),
        help=f"training examples per class, one set of runs each (default {DEFAULTS['n_per_class']}; "
        "the paper: 16,32,...,4096)",
    )


def build_parser() -> argparse.ArgumentParser:
    return grid_cli.study_parser("benchmarks.few_shot", DESCRIPTION, DEFAULTS, _own_flags)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

from benchmarks import grid_report, grid_study
from benchmarks.grid_report import cell, number
from benchmarks.sweep_stats import mean_std
from minipeft.files import write_text

load_context, run_one = grid_study.load_context, grid_study.study_run  # the grid engine's hooks


def plan(args, inputs: dict) -> list[grid_study.Run]:
    return grid_study.plan(args, inputs, args.n_per_class)


def table(rows, models, tasks, methods, ns, reference) -> tuple[str, str, list[str]]:
    """(markdown, CSV, sentences): per (model, task, n): each method's test AUROC and its paired Δ."""
    header = ["model", "task", "n per class", "train examples"]
    header += [f"{m} test AUROC" for m in methods]
    header += [f"Δ {m} − {reference}" for m in methods if m != reference]
    body, flat, sentences = [], [], []
    for model in models:
        for task in tasks:
            for n in ns:
                sel = [r for r in rows if (r["model"], r["task"], int(r["n_per_class"])) == (model, task, n)]
                if not sel:
                    continue
                line = [model, task, n, sel[0]["train_examples"]]
                for m in methods:
                    values = [number(r["test_roc_auc"]) for r in sel if r["method"] == m]
                    line.append(cell(values))
                    med, sd, k = grid_report.median_std(values)
                    flat.append([model, task, n, m, med, sd, k])
                for m in methods:
                    if m == reference:
                        continue
                    d = grid_report.delta(sel, "test_roc_auc", m, reference)
                    line.append(grid_report.delta_text(d))
                    sentences.append(
                        grid_report.sentence(d, f"{task}, {model}, n={n} per class", m, reference, "roc_auc")
                    )
                body.append(line)
    csv_text = grid_report.csv_text(
        ["model", "task", "n_per_class", "method", "median", "std", "seeds"], flat
    )
    return grid_report.markdown_table(header, body), csv_text, sentences


def figure(rows, models, tasks, methods, ns, path: Path) -> None:
    """Test AUROC against n per class (categorical x): mean over seeds, ±sd band, per method."""
    plt = grid_report.plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.0), dpi=120, squeeze=False)
    x = list(range(len(ns)))
    for ax, task in zip(axes.flat, tasks):
        for i, method in enumerate(methods):
            for j, model in enumerate(models):
                stats = [
                    mean_std(
                        [
                            number(r["test_roc_auc"])
                            for r in rows
                            if (r["model"], r["task"], r["method"], int(r["n_per_class"]))
                            == (model, task, method, n)
                        ]
                    )
                    for n in ns
                ]
                mean = [s[0] for s in stats]
                sd = [0.0 if s[1] != s[1] else s[1] for s in stats]
                style = ("-", "--", ":", "-.")[j % 4]
                label = method if len(models) == 1 else f"{model} {method}"
                ax.plot(x, mean, style, marker="o", color=f"C{i}", label=label)
                ax.fill_between(
                    x,
                    [m - s for m, s in zip(mean, sd)],
                    [m + s for m, s in zip(mean, sd)],
                    color=f"C{i}",
                    alpha=0.2,
                )
        ax.set_xticks(x, [str(n) for n in ns])
        ax.set_xlabel("training examples per class")
        ax.set_ylabel("test AUROC (mean ± sd over seeds)")
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    grid_report.save_figure(fig, path)


def report(args, out: Path, rows, settings, inputs, wall, cpu) -> dict:
    models, tasks, methods, reference, rows = grid_report.scope(rows, inputs, args, args.n_per_class)
    md, csv_text, sentences = table(rows, models, tasks, methods, args.n_per_class, reference)
    write_text(out / "table.md", md + "\n")
    write_text(out / "table.csv", csv_text)
    figure(rows, models, tasks, methods, args.n_per_class, out / "few_shot.png")
    summary = [
        "# Few-shot: test AUROC against training examples per class",
        "",
        f"Models {', '.join(models)}; tasks {', '.join(tasks)}; methods {', '.join(methods)}; n per class "
        f"{args.n_per_class} drawn per class by each seed {args.seeds}; {settings['epochs']} epochs, "
        f"the best "
        f"epoch by validation, {settings['max_length']} tokens, validation/test subsets "
        f"{settings['max_eval_examples'] or 'whole'}. Cells: median (std) over seeds; Δ: mean ± std of "
        f"the paired per-seed difference.",
        "",
        md,
        "",
        *[f"- {s}" for s in sentences],
        "",
        grid_report.timing_sentence(wall, cpu),
        "",
    ]
    return grid_report.publish(out, summary, md, sentences, reference, rows)


def check(args) -> None:
    if min(args.n_per_class) < 1:
        raise ValueError(f"--n-per-class {args.n_per_class}: every n must be >= 1")
    grid_study.require_classification(args.tasks, "few-shot draws examples per class (classification)")


def main_run(args) -> str | None:
    return grid_cli.run_study(args, "few_shot", plan, report, {"study": "few_shot"}, check)


def main(argv=None) -> None:
    grid_cli.main(build_parser, main_run, argv)


if __name__ == "__main__":
    main()

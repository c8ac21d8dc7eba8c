"""`python -m benchmarks.paper_grid`: the paper's main grid, methods x models x tasks (§4.1-4.5).

Every (model, task, method, seed) is one run on the grid engine (benchmarks.grid: resume,
--workers, --shard). Outputs in --out: runs.csv (one row per run), tables.md and tables.csv (the
paper's tables: median (std) over seeds of test AUROC and F1 macro for classification, entity F1
for NER), params_vs_score.png (§4.5: score against log10 trainable parameters, one panel per task,
colour = model, marker = method), summary.md (the findings in sentences, with paired noise
verdicts against the reference method), grid.json (settings); the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmarks import grid_cli

DEFAULTS = dict(
    methods="lora,ia3,full",
    tasks="rotten-tomatoes,drug-reviews-condition",
    seeds="12,34,56",
    epochs=3,
    max_length=64,
    max_train_examples=800,
    max_eval_examples=200,
    out="runs/paper_grid",
)
MARKERS = {"full": "o", "lora": "X", "ia3": "s", "frozen": "v", "prefix": "^", "prompt": "D"}

DESCRIPTION = """\
The paper's grid (Taylor et al. 2024, §4.1-4.5): each method on each model and task, seeds 12,34,56,
tables as median (std) over seeds, and the score against trainable parameters (§4.5).

Default (about 6 min on 2 idle CPU cores, 10 on one; the estimate is printed first): the real
all-MiniLM-L6-v2 checkpoint, methods lora,ia3,full, tasks rotten-tomatoes (binary) and
drug-reviews-condition (11 conditions), 3 epochs on 800 training examples, 64 tokens, scored on 200
validation and 200 test examples. The paper's protocol on your files:
    --models DIR,DIR --tasks mimic-mp,mimic-los,icd9-triage,i2b2-re --data-dir mimic-mp=...,...
    --epochs 5 --max-length 480 --max-train-examples 0 --max-eval-examples 0 --lr lora=3e-4,ia3=3e-4,full=3e-5
"""


def build_parser() -> argparse.ArgumentParser:
    return grid_cli.study_parser("benchmarks.paper_grid", DESCRIPTION, DEFAULTS)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

from benchmarks import grid_report, grid_study
from benchmarks.grid_report import NAMES, cell, number
from minipeft.files import write_text
from tasks.registry import SEQ_CLS, get_task

plan = grid_study.plan  # model by model, task by task, seed by seed
load_context, run_one = grid_study.load_context, grid_study.study_run  # the grid engine's hooks


def metrics_of(task: str) -> tuple[str, ...]:
    return ("roc_auc", "f1_macro") if get_task(task).type == SEQ_CLS else ("entity_f1",)


def primary(task: str) -> str:
    return "roc_auc" if get_task(task).type == SEQ_CLS else "entity_f1"


def _params(row: dict) -> str:
    return f"{int(number(row['trainable_params'])):,} ({number(row['trainable_percent']):.2f}%)"


def tables(rows: list[dict], models, tasks, methods) -> tuple[str, str]:
    """(markdown, CSV): one markdown table per task type, a long CSV of every cell."""
    md, long = [], []
    for kind, group in (
        ("classification", [t for t in tasks if get_task(t).type == SEQ_CLS]),
        ("NER", [t for t in tasks if get_task(t).type != SEQ_CLS]),
    ):
        if not group:
            continue
        header = ["model", "method", f"trainable params ({' / '.join(group)})"] + [
            f"{t} {NAMES[m]}" for t in group for m in metrics_of(t)
        ]
        body = []
        for model in models:
            for method in methods:
                cells = [r for r in rows if r["model"] == model and r["method"] == method]
                if not cells:
                    continue
                by_task = {r["task"]: r for r in cells}  # the head's size differs between tasks
                line = [
                    model,
                    method,
                    " / ".join(_params(by_task[t]) for t in group if t in by_task),
                ]
                for t in group:
                    params = int(number(by_task[t]["trainable_params"])) if t in by_task else 0
                    for m in metrics_of(t):
                        values = [number(r[f"test_{m}"]) for r in cells if r["task"] == t]
                        line.append(cell(values))
                        med, sd, n = grid_report.median_std(values)
                        long.append(
                            [model, method, t, m, params, med, sd, n, " ".join(f"{v:.5f}" for v in values)]
                        )
                body.append(line)
        md.append(
            f"### {kind}: test scores, median (std) over seeds\n\n" + grid_report.markdown_table(header, body)
        )
    header = ["model", "method", "task", "metric", "trainable_params", "median", "std", "seeds", "values"]
    return "\n\n".join(md), grid_report.csv_text(header, long)


def findings(rows, models, tasks, methods, reference) -> list[str]:
    out = []
    for model in models:
        for task in tasks:
            for method in methods:
                if method == reference:
                    continue
                d = grid_report.delta(
                    rows, f"test_{primary(task)}", method, reference, model=model, task=task
                )
                out.append(grid_report.sentence(d, f"{task}, {model}", method, reference, primary(task)))
    return out


def figure(rows: list[dict], models, tasks, methods, path: Path) -> None:
    """§4.5: median test score against log10 trainable parameters; one panel per task."""
    plt = grid_report.plt()
    cols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.8 * nrows), dpi=120, squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    for ax, task in zip(axes.flat, tasks):
        metric = f"test_{primary(task)}"
        for model in models:
            for method in methods:
                cells = [r for r in rows if (r["model"], r["task"], r["method"]) == (model, task, method)]
                if not cells:
                    continue
                med = grid_report.median_std(number(r[metric]) for r in cells)[0]
                x = math.log10(max(1, int(number(cells[0]["trainable_params"]))))
                ax.scatter(
                    [x],
                    [med],
                    c=colours[model],
                    marker=MARKERS.get(method, "P"),
                    s=60,
                    label=f"{model} {method}",
                )
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("log10 trainable parameters")
        ax.set_ylabel(f"test {NAMES[primary(task)]} (median over seeds)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, fontsize=7, loc="lower center", ncol=max(1, min(4, len(labels))), frameon=False
    )
    fig.suptitle("score against trainable parameters (colour: model, marker: method)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    grid_report.save_figure(fig, path)


def report(args, out: Path, rows, settings, inputs, wall, cpu) -> dict:
    keys = {(r["model"], r["task"], r["method"], int(r["seed"])) for r in rows}
    models, tasks, methods, reference, rows = grid_report.scope(rows, inputs, args, (0,))
    md, csv_text = tables(rows, models, tasks, methods)
    write_text(out / "tables.md", md + "\n")
    write_text(out / "tables.csv", csv_text)
    figure(rows, models, tasks, methods, out / "params_vs_score.png")
    sentences = findings(rows, models, tasks, methods, reference)
    missing = len(models) * len(tasks) * len(methods) * len(args.seeds) - len(
        keys & {(m, t, me, s) for m in models for t in tasks for me in methods for s in args.seeds}
    )
    summary = [
        "# Paper grid: methods x models x tasks",
        "",
        f"Models {', '.join(models)}; tasks {', '.join(tasks)}; methods {', '.join(methods)}; seeds "
        f"{args.seeds}; {settings['epochs']} epoch(s), batch {args.batch_size}, "
        f"{settings['max_length']} tokens, "
        f"train subset {settings['max_train_examples'] or 'all'}, validation/test subsets "
        f"{settings['max_eval_examples'] or 'whole'}; the best epoch by the task's validation metric "
        "is scored on test.",
        "",
        md,
        "",
        f"Paired against {reference} (same seed: same data order and head initialisation), on each "
        f"task's headline metric:",
        "",
        *[f"- {s}" for s in sentences],
        "",
        (
            "All runs of the grid are in runs.csv."
            if missing <= 0
            else f"{missing} runs of the grid are not in runs.csv yet; rerun to finish."
        ),
        grid_report.timing_sentence(wall, cpu),
        "",
    ]
    return grid_report.publish(out, summary, md, sentences, reference, rows)


def main_run(args) -> str | None:
    return grid_cli.run_study(args, "paper_grid", plan, report, {"study": "paper_grid"})


def main(argv=None) -> None:
    grid_cli.main(build_parser, main_run, argv)


if __name__ == "__main__":
    main()

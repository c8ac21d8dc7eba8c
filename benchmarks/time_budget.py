"""`python -m benchmarks.time_budget`: validation AUROC against seconds of training (§4.7).

Every (model, task, method, seed) trains until --budget seconds of training steps are spent
(TrainConfig.max_seconds; evaluation time is not counted) or its epochs end, scoring validation
every --eval-every optimiser steps (TrainConfig.eval_every_steps) and once more when the budget
stops it. The curve (step, training seconds, validation AUROC) of every run is kept in runs.csv
and curves.csv; the best validation state is scored on test. Runs go through the grid engine
(resume, --workers, --shard). Outputs in --out: runs.csv, curves.csv, table.md and table.csv,
time_budget.png, summary.md, grid.json; the last stdout line is JSON.

Seconds are this machine's: on a machine shared with other jobs every step is slower and fewer
steps fit in the budget, which the summary's step counts show.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import grid_cli

DEFAULTS = dict(
    methods="lora,full",
    tasks="rotten-tomatoes",
    seeds="12,34,56",
    epochs=1,
    max_length=64,
    max_eval_examples=200,
    budget=75.0,
    eval_every=10,
    out="runs/time_budget",
)
FRACTIONS = (0.25, 0.5, 1.0)

DESCRIPTION = """\
Time-budget study (Taylor et al. 2024, §4.7): validation AUROC every K steps against seconds of
training (evaluation excluded), training stopped once the budget is spent.

Default (about 12 min on one CPU core; the estimate is printed first): the real all-MiniLM-L6-v2
checkpoint on rotten-tomatoes (the whole training split, 1 epoch as the schedule's horizon), LoRA
against full fine-tuning, seeds 12,34,56, a budget of 75 s per run, validation (200 examples) every
10 steps. The paper's protocol on your files:
    --tasks mimic-mp --data-dir DIR --budget 2000 --eval-every 200 --epochs 5 --max-length 480
    --max-eval-examples 0 --lr lora=3e-4,full=3e-5
"""


def _own_flags(a) -> None:
    a(
        "--budget",
        type=float,
        default=DEFAULTS["budget"],
        help="seconds of training per run (default 75; paper 2000)",
    )
    a(
        "--eval-every",
        type=int,
        default=DEFAULTS["eval_every"],
        help="optimiser steps between validations (default 10; paper 200)",
    )


def build_parser() -> argparse.ArgumentParser:
    return grid_cli.study_parser("benchmarks.time_budget", DESCRIPTION, DEFAULTS, _own_flags)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

from benchmarks import grid_report, grid_study
from benchmarks.grid_report import cell, number
from minipeft.files import write_text

plan, load_context = grid_study.plan, grid_study.load_context  # the plan; the grid engine's hook


def run_one(contexts, run, args) -> dict:
    """The grid engine's hook: a run stopped after --budget seconds, validated every --eval-every steps."""
    return grid_study.study_run(
        contexts, run, args, max_seconds=args.budget, eval_every_steps=args.eval_every
    )


def curve(row: dict) -> list[tuple[int, float, float]]:
    return [tuple(p) for p in json.loads(row["curve"] or "[]")]


def best_by(row: dict, seconds: float | None) -> float:
    """The best validation AUROC among evaluations at or before `seconds` of training (None: all of
    them, including the last look after the step that spent the budget, which may end past it)."""
    scores = [auc for _, sec, auc in curve(row) if seconds is None or sec <= seconds + 1e-9]
    return max(scores) if scores else float("nan")


def table(rows, models, tasks, methods, budget, reference) -> tuple[str, str, list[str]]:
    header = ["model", "task", "method", "steps in budget"]
    header += [f"best val AUROC by {f:g}× budget" for f in FRACTIONS]
    header += ["test AUROC (best val state)", f"Δ test AUROC vs {reference}"]
    body, flat, sentences = [], [], []
    for model in models:
        for task in tasks:
            sel = [r for r in rows if (r["model"], r["task"]) == (model, task)]
            for m in methods:
                mine = [r for r in sel if r["method"] == m]
                if not mine:
                    continue
                line = [model, task, m, cell([number(r["steps"]) for r in mine], 0)]
                for f in FRACTIONS:
                    values = [best_by(r, f * budget if f < 1 else None) for r in mine]
                    line.append(cell(values))
                    med, sd, k = grid_report.median_std(values)
                    flat.append([model, task, m, f * budget, med, sd, k])
                line.append(cell([number(r["test_roc_auc"]) for r in mine]))
                if m == reference:
                    line.append("0 (reference)")
                else:
                    d = grid_report.delta(sel, "test_roc_auc", m, reference)
                    line.append(grid_report.delta_text(d))
                    sentences.append(
                        grid_report.sentence(d, f"{task}, {model}, {budget:g} s", m, reference, "roc_auc")
                    )
                body.append(line)
    header_csv = ["model", "task", "method", "seconds", "best_val_auroc_median", "std", "seeds"]
    return grid_report.markdown_table(header, body), grid_report.csv_text(header_csv, flat), sentences


def curves_csv(rows) -> str:
    body = [
        [r["model"], r["task"], r["method"], r["seed"], step, sec, auc]
        for r in rows
        for step, sec, auc in curve(r)
    ]
    return grid_report.csv_text(
        ["model", "task", "method", "seed", "step", "train_seconds", "val_auroc"], body
    )


def figure(rows, models, tasks, methods, budget, path: Path) -> None:
    """Validation AUROC against training seconds: one line per run, colour = method, style = model."""
    plt = grid_report.plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.8 * len(tasks), 4.0), dpi=120, squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for i, method in enumerate(methods):
            for j, model in enumerate(models):
                mine = [r for r in rows if (r["model"], r["task"], r["method"]) == (model, task, method)]
                for k, r in enumerate(mine):
                    pts = curve(r)
                    label = (method if len(models) == 1 else f"{model} {method}") if k == 0 else None
                    ax.plot(
                        [p[1] for p in pts],
                        [p[2] for p in pts],
                        ("-", "--", ":", "-.")[j % 4],
                        marker=".",
                        color=f"C{i}",
                        alpha=0.8,
                        lw=1.2,
                        label=label,
                    )
        ax.axvline(budget, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel("seconds of training (evaluation excluded)")
        ax.set_ylabel("validation AUROC")
        ax.set_title(f"{task}: one line per seed, budget {budget:g} s", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    grid_report.save_figure(fig, path)


def report(args, out: Path, rows, settings, inputs, wall, cpu) -> dict:
    models, tasks, methods, reference, rows = grid_report.scope(rows, inputs, args)
    md, csv_text, sentences = table(rows, models, tasks, methods, args.budget, reference)
    write_text(out / "table.md", md + "\n")
    write_text(out / "table.csv", csv_text)
    write_text(out / "curves.csv", curves_csv(rows))
    figure(rows, models, tasks, methods, args.budget, out / "time_budget.png")
    summary = [
        "# Time budget: validation AUROC against seconds of training",
        "",
        f"Models {', '.join(models)}; tasks {', '.join(tasks)}; methods {', '.join(methods)}; "
        f"seeds {args.seeds}; "
        f"a budget of {args.budget:g} s of training steps per run (evaluation excluded), validation every "
        f"{args.eval_every} steps on {settings['max_eval_examples'] or 'all'} examples, "
        f"{settings['max_length']} "
        f"tokens. Cells: median (std) over seeds; 'best val AUROC by f× budget' is the best validation score "
        f"among the evaluations within that share of the budget.",
        "",
        md,
        "",
        *[f"- {s}" for s in sentences],
        "",
        f"Step counts differ between methods because a step's cost differs (full fine-tuning updates every "
        f"weight); on a shared machine fewer steps fit into the same seconds. This invocation: "
        f"{wall / 60:.1f} "
        f"min wall clock, {cpu / 60:.1f} min of process CPU time.",
        "",
    ]
    return grid_report.publish(out, summary, md, sentences, reference, rows)


def check(args) -> None:
    if not args.budget > 0 or args.eval_every < 1:
        raise ValueError(
            f"--budget must be > 0 and --eval-every >= 1, got {args.budget} and {args.eval_every}"
        )
    why = "the time budget scores validation AUROC (classification)"
    grid_study.require_classification(args.tasks, why)


def main_run(args) -> str | None:
    extra = {"study": "time_budget", "budget": args.budget, "eval_every": args.eval_every}
    return grid_cli.run_study(args, "time_budget", plan, report, extra, check, args.budget, args.eval_every)


def main(argv=None) -> None:
    grid_cli.main(build_parser, main_run, argv)


if __name__ == "__main__":
    main()

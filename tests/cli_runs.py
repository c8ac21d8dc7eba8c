"""tasks.finetune, tasks.predict and benchmarks.rank_sweep as the tests run them in this process, with
the small settings they share (one epoch, batch 8, 48 tokens, no progress bars). In every command
line `extra` comes last, and argparse lets the last value of a flag win."""

from tasks import finetune, predict

FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "48", "--no-progress", "--seed", "3"]


def _run_argv(task, data_dir, model, out) -> list[str]:
    return ["--task", task, "--data-dir", str(data_dir), "--model", str(model), "--out", str(out)]


def finetune_argv(task, data_dir, model, out, *extra) -> list[str]:
    """The command line of a small tasks.finetune run (seed 3)."""
    return [*_run_argv(task, data_dir, model, out), *FAST, *extra]


def sweep_argv(data_dir, model, out, *extra) -> list[str]:
    """The command line of a small benchmarks.rank_sweep on the mimic-mp layout: ranks 2 and 8, seeds
    1 and 2, lr 3e-3."""
    sweep = ["--ranks", "2,8", "--seeds", "1,2", "--epochs", "1", "--batch-size", "8", "--max-length", "48"]
    return [*_run_argv("mimic-mp", data_dir, model, out), *sweep, "--lr", "3e-3", "--no-progress", *extra]


def run_finetune(task, data_dir, model, out, *extra) -> dict:
    """tasks.finetune.run on that command line: the metrics document it writes."""
    return finetune.run(finetune.build_parser().parse_args(finetune_argv(task, data_dir, model, out, *extra)))


def run_predict(adapter, model, input_file, output, *extra) -> None:
    """python -m tasks.predict on `input_file` with the adapter of a run, without progress bars;
    model None: the base that the adapter's task.json records."""
    predict.main(
        [
            *("--adapter", str(adapter)),
            *(("--model", str(model)) if model is not None else ()),
            *("--input", str(input_file), "--output", str(output)),
            *extra,
            "--no-progress",
        ]
    )

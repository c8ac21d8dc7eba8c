"""tasks.finetune and tasks.predict run in this process, with the small settings the tests share
(one epoch, batch 8, 48 tokens, seed 3, no progress bars)."""

from tasks import finetune, predict

FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "48", "--no-progress", "--seed", "3"]


def finetune_argv(task, data_dir, model, out, *extra) -> list[str]:
    """The command line of a small tasks.finetune run; `extra` comes last and so wins."""
    return [
        "--task",
        task,
        "--data-dir",
        str(data_dir),
        "--model",
        str(model),
        "--out",
        str(out),
        *FAST,
        *extra,
    ]


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

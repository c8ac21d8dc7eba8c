"""benchmarks.paper_grid on tiny synthetic data (a tiny random BERT, MIMIC- and CoNLL-layout
folders): the plan, tables against runs.csv by hand, the figure, resume, two shards running at the
same time, and the one-line errors that come before any training."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from synthetic_tasks import write_conll, write_mimic

from benchmarks import paper_grid
from benchmarks.grid_report import median_std

ROOT = Path(__file__).resolve().parents[1]


def _args(model, data, out, *extra):
    return [
        "--models", str(model), "--tasks", "mimic-mp", "--data-dir", str(data), "--methods", "lora,full",
        "--seeds", "1,2", "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--threads", "1",
        "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


def _rows(out):
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_plan_is_every_model_task_seed_and_method_in_pair_order():
    inputs = {"models": ["a/m1", "b/m2"], "tasks": ("t1", "t2"), "methods": ("lora", "ia3", "full")}
    runs = paper_grid.plan(SimpleNamespace(seeds=[12, 34]), inputs)
    assert len(runs) == 2 * 2 * 3 * 2 and len({r.key for r in runs}) == len(runs)
    # the methods of one seed are adjacent: a grid stopped early holds complete paired seeds
    assert [(r.seed, r.method) for r in runs[:6]] == [
        (12, "lora"),
        (12, "ia3"),
        (12, "full"),
        (34, "lora"),
        (34, "ia3"),
        (34, "full"),
    ]


@pytest.mark.slow
def test_grid_end_to_end_tables_figure_and_resume(tmp_path, tiny_model, capsys):
    data = write_mimic(tmp_path / "mimic", "mp")
    ner = write_conll(tmp_path / "conll")
    out = tmp_path / "grid"
    extra = ["--tasks", "mimic-mp,i2b2-2010", "--data-dir", f"mimic-mp={data},i2b2-2010={ner}"]
    paper_grid.main(_args(tiny_model, data, out, *extra, "--max-runs", "3"))
    assert len(_rows(out)) == 3
    capsys.readouterr()
    paper_grid.main(_args(tiny_model, data, out, *extra))
    text = capsys.readouterr().out
    assert "8 runs planned, 3 already in" in text and "5 to do now" in text
    rows = _rows(out)
    assert len(rows) == 8
    for r in rows:  # NER rows carry entity F1, classification rows AUROC, never both
        assert (r["test_entity_f1"] == "") == (r["task"] == "mimic-mp") and (r["test_roc_auc"] == "") != (
            r["task"] == "mimic-mp"
        )
    with open(out / "tables.csv", newline="") as f:
        cells = {(c["method"], c["task"], c["metric"]): c for c in csv.DictReader(f)}
    for method in ("lora", "full"):  # the table's median and std are those of the rows
        values = [float(r["test_roc_auc"]) for r in rows if (r["method"], r["task"]) == (method, "mimic-mp")]
        c = cells[(method, "mimic-mp", "roc_auc")]
        assert float(c["median"]) == pytest.approx(statistics.median(values))
        assert float(c["std"]) == pytest.approx(statistics.stdev(values))
        assert (method, "i2b2-2010", "entity_f1") in cells
    md = (out / "tables.md").read_text()
    assert "mimic-mp AUROC" in md and "i2b2-2010 entity F1" in md and "### NER" in md
    med, sd, _ = median_std(
        [float(r["test_roc_auc"]) for r in rows if (r["method"], r["task"]) == ("lora", "mimic-mp")]
    )
    assert f"{med:.3f} ({sd:.3f})" in md
    summary = (out / "summary.md").read_text()
    assert "Paired against full" in summary and "All runs of the grid are in runs.csv" in summary
    assert (out / "params_vs_score.png").stat().st_size > 5000
    doc = json.loads(text.strip().splitlines()[-1])
    assert doc["benchmark"] == "paper_grid" and doc["results"]["reference"] == "full"


def _spawn(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.paper_grid", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_shards_at_once_lose_nothing_and_a_plain_rerun_assembles(tmp_path, tiny_model, capsys):
    data = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "grid"
    base = _args(tiny_model, data, out, "--seeds", "1,2,3")
    procs = [_spawn([*base, "--shard", f"{k}/2"]) for k in (1, 2)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        assert "shard" in stdout and "rerun without --shard" in stdout
    rows = _rows(out)
    assert sorted((r["method"], int(r["seed"])) for r in rows) == sorted(
        (m, s) for m in ("lora", "full") for s in (1, 2, 3)
    )
    assert not (out / "summary.md").exists(), "shards leave the report to the assembling run"
    paper_grid.main(base)
    text = capsys.readouterr().out
    assert "6 already in" in text and "0 to do now" in text and (out / "summary.md").exists()
    assert len(_rows(out)) == 6


@pytest.mark.parametrize(
    "change, message",
    [
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--methods", "lora,loha"], "unknown ['loha']"),
        (["--shard", "3/2"], "expected K/N with 1 <= K <= N"),
        (["--models", "EMPTY"], "no config.json in it"),
        (["--data-dir", "PARTIAL"], "test"),
    ],
)
def test_bad_input_is_one_line_before_training(tmp_path, tiny_model, capsys, change, message):
    data = write_mimic(tmp_path / "mimic", "mp")
    (tmp_path / "empty").mkdir()
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("train.csv", "valid.csv"):  # no test.csv
        (partial / name).write_bytes((data / name).read_bytes())
    args = _args(tiny_model, data, tmp_path / "out")
    for i, flag in enumerate(args[:-1]):
        if flag == change[0]:
            args[i + 1] = change[1].replace("EMPTY", str(tmp_path / "empty")).replace("PARTIAL", str(partial))
    if change[0] not in args:
        args += change
    with pytest.raises(SystemExit) as e:
        paper_grid.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "runs.csv").exists(), "nothing trained"


@pytest.mark.slow
def test_workers_give_the_rows_of_one_process(tmp_path, tiny_model, capsys):
    data = write_mimic(tmp_path / "mimic", "mp")
    paper_grid.main(_args(tiny_model, data, tmp_path / "one"))
    paper_grid.main(_args(tiny_model, data, tmp_path / "two", "--workers", "2"))
    assert "spreading 4 runs over 2 processes" in capsys.readouterr().out
    same = ("method", "seed", "trainable_params", "val_roc_auc", "test_roc_auc", "test_f1_macro", "steps")
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [{k: r[k] for k in same} for r in one] == [{k: r[k] for k in same} for r in two]


@pytest.mark.parametrize("k", [2, 3, 11])
def test_a_run_that_predicts_one_class_is_named_in_the_summary(k):
    """predicted_one_class reads a constant predictor from its scores (F1 macro = 2a/((1+a)K)) and
    no other: checked against sklearn's metrics of a constant and of a mixed prediction."""
    from benchmarks.grid_report import one_class_notes, predicted_one_class
    from tasks.metrics import classification_metrics

    y = [i % k for i in range(40)] + [0] * 17  # class 0 is the most frequent
    constant = [[1.0 if c == 1 else 0.0 for c in range(k)] for _ in y]  # always class 1
    mixed = [[1.0 if c == (t if i % 5 else (t + 1) % k) else 0.0 for c in range(k)] for i, t in enumerate(y)]
    rows = []
    for seed, probs in ((1, constant), (2, mixed)):
        m = classification_metrics(y, probs)
        row = {"model": "m", "task": "t", "method": "lora", "n_per_class": "0", "seed": str(seed)}
        rows.append({**row, "labels": str(k), **{f"test_{key}": str(v) for key, v in m.items()}})
    assert [predicted_one_class(r) for r in rows] == [True, False]
    assert not predicted_one_class({**rows[0], "labels": ""})  # a row from before the column
    assert not predicted_one_class({"test_entity_f1": "0.5", "labels": "5"})  # NER: no accuracy
    (note,) = one_class_notes(rows)
    assert note.startswith("t, m: lora predicted a single class for every test example in 1 of 2 seeds")

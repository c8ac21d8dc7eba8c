"""benchmarks.few_shot and benchmarks.time_budget on tiny synthetic data: the per-class draw, the
tables against runs.csv, the curves and the figures."""

import csv
import json
import statistics

import pytest
from synthetic_tasks import write_mimic

from benchmarks import few_shot, grid_study, time_budget
from tasks.registry import TextExample


def _examples(counts):
    return [TextExample(f"{c}-{i}", f"text {c} {i}", c) for c, n in enumerate(counts) for i in range(n)]


def test_per_class_draw_takes_n_of_each_class_nested_and_seeded():
    pool = _examples((30, 12, 50))
    for seed in (1, 2):
        small, large = grid_study.per_class(pool, 8, seed), grid_study.per_class(pool, 20, seed)
        assert [sum(e.label == c for e in small) for c in range(3)] == [8, 8, 8]
        assert [sum(e.label == c for e in large) for c in range(3)] == [20, 12, 20]  # all 12 of class 1
        assert {e.id for e in small} <= {e.id for e in large}, "a smaller n is inside the larger draw"
    assert {e.id for e in grid_study.per_class(pool, 8, 1)} != {
        e.id for e in grid_study.per_class(pool, 8, 2)
    }


def _common(tmp_path, tiny_model, out):
    data = write_mimic(tmp_path / "mimic", "mp")
    return [
        "--models", str(tiny_model), "--tasks", "mimic-mp", "--data-dir", str(data), "--seeds", "1,2",
        "--epochs", "2", "--batch-size", "4", "--max-length", "32", "--threads", "1", "--no-progress",
        "--out", str(out),
    ]  # fmt: skip


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_few_shot_end_to_end(tmp_path, tiny_model, capsys):
    out = tmp_path / "fs"
    few_shot.main([*_common(tmp_path, tiny_model, out), "--n-per-class", "2,6"])
    rows = _rows(out / "runs.csv")
    assert len(rows) == 2 * 2 * 2  # n x seeds x methods
    for r in rows:  # two classes in mimic-mp: n of each
        assert int(r["train_examples"]) == 2 * int(r["n_per_class"])
    with open(out / "table.csv", newline="") as f:
        cells = {(int(c["n_per_class"]), c["method"]): c for c in csv.DictReader(f)}
    for n in (2, 6):
        for m in ("lora", "full"):
            values = [
                float(r["test_roc_auc"]) for r in rows if (int(r["n_per_class"]), r["method"]) == (n, m)
            ]
            assert float(cells[(n, m)]["median"]) == pytest.approx(statistics.median(values))
    assert "Δ lora − full" in (out / "table.md").read_text()
    assert "n=6 per class" in (out / "summary.md").read_text()
    assert (out / "few_shot.png").stat().st_size > 5000
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["benchmark"] == "few_shot"


@pytest.mark.slow
def test_time_budget_end_to_end_curves(tmp_path, tiny_model, capsys):
    out = tmp_path / "tb"
    time_budget.main([*_common(tmp_path, tiny_model, out), "--budget", "1000", "--eval-every", "2"])
    rows = _rows(out / "runs.csv")
    assert len(rows) == 4
    for r in rows:  # 24 examples / 4 = 6 steps per epoch, 2 epochs, budget never reached
        points = time_budget.curve(r)
        assert [p[0] for p in points] == [2, 4, 6, 8, 10, 12] and r["stopped_by_budget"] == "False"
        assert [p[1] for p in points] == sorted(p[1] for p in points)
        best = [p for p in points if p[0] == int(r["best_step"])]  # the kept state is one of the evaluations
        assert len(best) == 1 and best[0][2] == pytest.approx(float(r["val_roc_auc"]), abs=1e-5)
    assert len(_rows(out / "curves.csv")) == sum(len(time_budget.curve(r)) for r in rows)
    assert (out / "time_budget.png").stat().st_size > 5000
    assert "best val AUROC by 1× budget" in (out / "table.md").read_text()
    capsys.readouterr()


def test_few_shot_and_time_budget_refuse_tagging_tasks_before_training(tmp_path, capsys):
    for main in (few_shot.main, time_budget.main):
        with pytest.raises(SystemExit) as e:
            main(["--tasks", "i2b2-2010", "--out", str(tmp_path / "x")])
        assert e.value.code == 2 and "tagging task" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

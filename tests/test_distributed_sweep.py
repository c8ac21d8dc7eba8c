"""benchmarks.rank_sweep --workers 2: the same rows as one process (runs on 2 spawned processes)."""

import csv

import pytest
from cli_runs import sweep_argv
from synthetic_tasks import write_mimic

from benchmarks import rank_sweep, sweep_workers

SAME = (
    "rank",
    "seed",
    "trial",
    "alpha",
    "scaling",
    "lr",
    "adapter_params",
    "val_auroc",
    "val_f1_macro",
    "test_auroc",
    "test_f1_macro",
    "test_accuracy",
    "best_epoch",
    "threads",
)


def _rows(out):
    with open(out / "runs.csv", newline="") as f:
        return {(r["rank"], r["seed"]): r for r in csv.DictReader(f)}


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_workers_give_the_rows_of_one_process(tmp_path, tiny_model, capsys):
    data = write_mimic(tmp_path / "mimic", "mp")
    common = ["--seeds", "3", "--threads", "1"]  # after sweep_argv's: these win
    rank_sweep.main(sweep_argv(data, tiny_model, tmp_path / "one", *common))
    capsys.readouterr()
    rank_sweep.main(sweep_argv(data, tiny_model, tmp_path / "two", *common, "--workers", "2"))
    assert "spreading 2 runs over 2 processes with 1 thread(s) each" in capsys.readouterr().out
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert one.keys() == two.keys() == {("2", "3"), ("8", "3")}
    for key in one:  # same seed, same thread count: the same arithmetic in another process
        assert {k: one[key][k] for k in SAME} == {k: two[key][k] for k in SAME}


def test_worker_threads_split_the_cores(monkeypatch):
    monkeypatch.setattr(sweep_workers.os, "cpu_count", lambda: 8)
    ns = lambda **kw: type("A", (), kw)()  # noqa: E731
    assert sweep_workers.worker_threads(ns(threads="auto"), 3) == 8 // 3
    assert sweep_workers.worker_threads(ns(threads="auto"), 16) == 1
    assert sweep_workers.worker_threads(ns(threads="2"), 3) == 2

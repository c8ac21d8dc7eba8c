"""benchmarks.grid, the engine under every study: shards partition a plan, runs.csv loses no row
when several processes write at once, resume skips what is done."""

import csv
import multiprocessing
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from benchmarks import grid


@dataclass(frozen=True)
class R:
    i: int

    @property
    def key(self):
        return (self.i,)


def key_of(row):
    return (int(row["i"]),)


def test_parse_shard_accepts_k_of_n_and_refuses_the_rest():
    assert grid.parse_shard("2/5") == (2, 5) and grid.parse_shard(None) is None
    for bad in ("3/2", "0/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="expected K/N with 1 <= K <= N"):
            grid.parse_shard(bad)


@pytest.mark.parametrize("n", range(1, 8))
def test_shards_partition_the_plan_exactly(n):
    for size in range(0, 23):
        plan = [R(i) for i in range(size)]
        slices = [grid.shard_of(plan, (k, n)) for k in range(1, n + 1)]
        assert [r for s in slices for r in s] == plan  # every run once, in plan order
        assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_pending_skips_done_runs_then_takes_the_shard_and_max_runs():
    plan = [R(i) for i in range(10)]
    args = SimpleNamespace(shard="1/2", max_runs=None)
    assert grid.pending_runs(plan, {(1,), (3,)}, args) == [R(0), R(2), R(4)]
    assert grid.pending_runs(plan, {(1,)}, SimpleNamespace(shard=None, max_runs=2)) == [R(0), R(2)]


def _writer(path, start, count):
    store = grid.RunStore(path, ("i", "payload"), key_of, "test")
    for i in range(start, start + count):
        store.add({"i": i, "payload": "x" * (i % 7) + ",quoted\nline"})


def test_concurrent_writers_lose_no_row(tmp_path):
    path = tmp_path / "runs.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 100 * k, 25)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["i"]) for r in rows) == [100 * k + j for k in range(3) for j in range(25)]
    assert all(r["payload"].endswith(",quoted\nline") for r in rows)


def test_a_row_of_the_same_key_replaces_the_old_one_and_foreign_files_are_refused(tmp_path):
    store = grid.RunStore(tmp_path / "runs.csv", ("i", "v"), key_of, "test")
    store.add({"i": 1, "v": "a"})
    rows = store.add({"i": 1, "v": "b"})
    assert [(r["i"], r["v"]) for r in rows] == [("1", "b")]
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match=r"columns \['i', 'v'\] are missing"):
        grid.RunStore(tmp_path / "other.csv", ("i", "v"), key_of, "test").read()


def test_settings_of_another_grid_are_refused(tmp_path):
    store = grid.RunStore(tmp_path / "runs.csv", ("i",), key_of, "test")
    store.check_settings(tmp_path / "grid.json", {"epochs": 1})
    store.check_settings(tmp_path / "grid.json", {"epochs": 1})  # same settings: resume
    with pytest.raises(ValueError, match="other settings"):
        store.check_settings(tmp_path / "grid.json", {"epochs": 2})

"""benchmarks.rank_sweep: statistics against hand formulas, the run plan, and the CLI end to end on a
synthetic MIMIC-layout folder with a tiny random BERT (real tokenizer, loaders, loop and adapters)."""

import csv
import json
import math
import statistics
from types import SimpleNamespace

import pytest
from cli_runs import sweep_argv
from synthetic_tasks import write_mimic

from benchmarks import rank_sweep, sweep_plan, sweep_report, sweep_stats


def test_paired_delta_matches_hand_computation():
    ref = {12: 0.79, 34: 0.80, 56: 0.82}
    rank = {12: 0.80, 34: 0.82, 56: 0.81}
    d = sweep_stats.paired_delta(rank, ref)
    diffs = [0.80 - 0.79, 0.82 - 0.80, 0.81 - 0.82]
    assert d.mean == pytest.approx(statistics.mean(diffs))
    assert d.std == pytest.approx(statistics.stdev(diffs))
    assert d.half_width == pytest.approx(4.303 * statistics.stdev(diffs) / math.sqrt(3))
    assert d.verdict == "within noise"
    clear = sweep_stats.paired_delta({1: 0.85, 2: 0.86, 3: 0.87}, {1: 0.80, 2: 0.81, 3: 0.815})
    assert clear.verdict == "better"
    assert sweep_stats.paired_delta({1: 0.9}, {1: 0.8}).verdict == "one seed: noise unknown"
    # only seeds present at both ranks are paired
    assert sweep_stats.paired_delta({1: 0.9, 2: 0.5}, {1: 0.8}).n == 1


def test_plot_bars_are_the_verdicts_95_percent_t_interval():
    # three seeds: half-width = t(0.975, 2) · std / √3 with t(0.975, 2) = 4.303 (t table); a bar
    # clears 0 exactly when the verdict is not "within noise"
    ref = {12: 0.80, 34: 0.82, 56: 0.81}
    rows = {12: 0.83, 34: 0.82, 56: 0.86}
    diffs = [rows[s] - ref[s] for s in ref]
    d = sweep_stats.paired_delta(rows, ref)
    summary = [
        {"rank": 8, "test_delta": sweep_stats.paired_delta(ref, ref)},
        {"rank": 32, "test_delta": d},
    ]
    means, halves = sweep_report.interval_bars(summary, 8, "test")
    assert means == [0.0, pytest.approx(statistics.mean(diffs))]
    assert halves[0] == 0.0
    assert halves[1] == pytest.approx(4.303 * statistics.stdev(diffs) / math.sqrt(3), rel=1e-6)
    assert (abs(means[1]) > halves[1]) == (d.verdict != "within noise")


def test_best_trial_per_rank_and_seed_by_validation():
    rows = [{"rank": 8, "seed": 1, "trial": t, "val_auroc": v} for t, v in enumerate((0.7, 0.9, 0.8))]
    rows += [{"rank": 16, "seed": 1, "trial": 0, "val_auroc": 0.6}]
    chosen = sweep_stats.select_trials(rows)
    assert [(r["rank"], r["trial"]) for r in chosen] == [(8, 1), (16, 0)]


def _args(**kw):
    base = dict(
        ranks=[16, 8, 64],
        reference_rank=8,
        seeds=[12, 34],
        search=0,
        alpha_policy="rslora",
        alpha=8.0,
        lr=1e-3,
        dropout=0.1,
    )
    return SimpleNamespace(**{**base, **kw})


def test_plan_orders_reference_first_and_applies_alpha_policies():
    runs = sweep_plan.plan_runs(_args())
    assert [(r.seed, r.rank) for r in runs] == [(12, 8), (12, 16), (12, 64), (34, 8), (34, 16), (34, 64)]
    r64 = runs[2]
    assert r64.scaling == pytest.approx(8 / math.sqrt(64)) and r64.lora_config(("query",), ()).use_rslora
    fixed = sweep_plan.plan_runs(_args(alpha_policy="fixed"))[2]
    assert fixed.scaling == pytest.approx(8 / 64)
    prop = sweep_plan.plan_runs(_args(alpha_policy="proportional"))[2]
    assert prop.alpha == 64 and prop.scaling == 1.0


def test_search_draws_are_shared_across_ranks_and_inside_the_paper_space():
    runs = sweep_plan.plan_runs(_args(search=5))
    assert len(runs) == 2 * 3 * 5
    by_key = {(r.seed, r.trial): [] for r in runs}
    for r in runs:
        assert 1e-5 <= r.lr <= 1e-3 and r.dropout in (0.1, 0.3, 0.5)
        mult = [m for m in (0.3, 0.5, 1.0) if r.alpha == max(1, round(r.rank * m))]
        assert mult, (r.rank, r.alpha)
        by_key[(r.seed, r.trial)].append((r.lr, r.dropout))
    for draws in by_key.values():  # same lr and dropout at every rank of a (seed, trial)
        assert len(set(draws)) == 1
    assert len({v[0] for v in by_key.values()}) == len(by_key), "trials must differ"


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_mimic_layout_sweep_end_to_end_and_resume(tmp_path, tiny_model, capsys, monkeypatch):
    data_dir = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "sweep"
    loads = []
    real_load = rank_sweep.load_pretrained
    monkeypatch.setattr(rank_sweep, "load_pretrained", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    rank_sweep.main(sweep_argv(data_dir, tiny_model, out, "--max-runs", "3"))
    assert len(loads) == 1, "the base model is loaded once per invocation, not per run"
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["seed"]), int(r["rank"])) for r in rows] == [(1, 2), (1, 8), (2, 8)]
    for r in rows:  # rslora scaling; LoRA on query,value of 2 layers: 2 * 2 * r * (32 + 32)
        assert float(r["scaling"]) == pytest.approx(8 / math.sqrt(int(r["rank"])))  # default policy: rslora
        assert int(r["adapter_params"]) == 2 * 2 * int(r["rank"]) * 64
        assert 0.0 <= float(r["test_auroc"]) <= 1.0
    capsys.readouterr()

    rank_sweep.main(sweep_argv(data_dir, tiny_model, out))
    text = capsys.readouterr().out
    assert "3 already in" in text and "1 to do now" in text
    doc = json.loads(text.strip().splitlines()[-1])
    assert doc["runs"] == 4 and [e["rank"] for e in doc["results"]] == [2, 8]
    with open(out / "runs.csv") as f:
        rows = {(int(r["rank"]), int(r["seed"])): r for r in csv.DictReader(f)}
    delta = [float(rows[(2, s)]["test_auroc"]) - float(rows[(8, s)]["test_auroc"]) for s in (1, 2)]
    assert doc["results"][0]["test_delta_mean"] == pytest.approx(statistics.mean(delta), abs=1e-5)
    assert (out / "rank_sweep.png").stat().st_size > 1000
    assert (out / "rank_sweep.svg").read_text().lstrip().startswith("<?xml")
    assert "Δ test AUROC vs r=8" in (out / "summary.md").read_text()

    with pytest.raises(SystemExit) as e:  # other settings in the same --out are refused
        rank_sweep.main(sweep_argv(data_dir, tiny_model, out, "--epochs", "2"))
    assert e.value.code == 2 and "other settings" in capsys.readouterr().err


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_same_seed_same_run_is_reproducible(tmp_path, tiny_model):
    data_dir = write_mimic(tmp_path / "mimic", "mp")
    outs = []
    for name in ("a", "b"):
        rank_sweep.main(sweep_argv(data_dir, tiny_model, tmp_path / name, "--ranks", "8", "--seeds", "5"))
        with open(tmp_path / name / "runs.csv") as f:
            outs.append(next(csv.DictReader(f)))
    assert outs[0]["test_auroc"] == outs[1]["test_auroc"] and outs[0]["val_auroc"] == outs[1]["val_auroc"]


def test_reference_rank_must_be_in_the_grid(capsys):
    with pytest.raises(SystemExit):
        rank_sweep.main(["--ranks", "4,16", "--out", "/nonexistent/never"])
    assert "--reference-rank 8 is not in --ranks" in capsys.readouterr().err


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_search_keeps_the_best_validation_trial(tmp_path, tiny_model, capsys):
    data_dir = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "search"
    rank_sweep.main(sweep_argv(data_dir, tiny_model, out, "--ranks", "8", "--seeds", "3", "--search", "2"))
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [0, 1]
    for r in rows:
        lr, mult, dropout = sweep_plan.search_draw(3, int(r["trial"]))
        assert float(r["lr"]) == pytest.approx(lr) and float(r["dropout"]) == dropout
        assert float(r["alpha"]) == max(1, round(8 * mult)) and r["alpha_policy"] == "search"
    best = max(rows, key=lambda r: float(r["val_auroc"]))
    assert doc["results"][0]["test_auroc_mean"] == pytest.approx(float(best["test_auroc"]), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dora", "vera"])
def test_sweep_over_dora_and_vera_ranks(tmp_path, tiny_model, capsys, method):
    """--method dora|vera: each row counts that method's trainable tensors on query,value of 2 layers
    (hidden 32): DoRA r(32 + 32) + 32 per layer, VeRA 32 + r per layer (its projections are frozen)."""
    data_dir = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "sweep"
    rank_sweep.main(sweep_argv(data_dir, tiny_model, out, "--method", method, "--seeds", "1"))
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    per_layer = {"dora": lambda r: r * 64 + 32, "vera": lambda r: 32 + r}[method]
    assert sorted(int(r["rank"]) for r in rows) == [2, 8]
    for r in rows:
        assert int(r["adapter_params"]) == 2 * 2 * per_layer(int(r["rank"]))
    assert json.loads((out / "sweep.json").read_text())["method"] == method

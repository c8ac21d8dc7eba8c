"""TrainConfig.max_seconds (wall-clock budget) and eval_every_steps (step-wise evaluation), on the
toy classifier of test_train. A fake clock makes every training step last exactly one second."""

import itertools

import pytest
import torch
from test_train import CFG, TRAIN, VAL, Toy, eval_fn, loss_fn, same_tensors

from minipeft.training import TrainConfig, loop, seed_everything, train

STEPS_PER_EPOCH = len(TRAIN) // CFG.batch_size  # 48 examples / 4 = 12


def run(**overrides):
    seed_everything(0)
    model = Toy(dropout=0.1)
    callback = overrides.pop("callback", None)
    out_dir = overrides.pop("out_dir", None)
    cfg = TrainConfig(**{**CFG.__dict__, **overrides})
    return model, train(model, TRAIN, VAL, loss_fn, eval_fn, cfg, out_dir=out_dir, callback=callback)


@pytest.fixture
def one_second_steps(monkeypatch):
    """perf_counter advances by 1.0 per call: a step (two calls) lasts 1 s, and so does an evaluation
    (which must not count towards the training time)."""
    clock = itertools.count()
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))


def test_eval_every_k_steps_adds_mid_epoch_evaluations_without_repeating_epoch_ends():
    _, r = run(eval_every_steps=5)
    total = STEPS_PER_EPOCH * CFG.epochs  # 36
    expected = sorted(set(range(5, total + 1, 5)) | {STEPS_PER_EPOCH * (e + 1) for e in range(CFG.epochs)})
    assert [h["step"] for h in r.history] == expected
    assert len(r.history_seconds) == len(r.history)
    assert r.history_seconds == sorted(r.history_seconds)
    best = max(r.history, key=lambda h: h["metrics"]["neg_loss"])
    assert r.best_step == best["step"] and r.best_metric == best["metrics"]["neg_loss"]


def test_without_the_options_history_is_one_entry_per_epoch():
    _, r = run()
    assert [h["step"] for h in r.history] == [STEPS_PER_EPOCH * (e + 1) for e in range(CFG.epochs)]
    assert not r.stopped_by_budget and r.best_step == r.history[r.best_epoch - 1]["step"]  # epochs from 1


def test_budget_stops_after_the_step_that_spends_it_and_evaluates_once_more(one_second_steps):
    _, r = run(max_seconds=15.5, eval_every_steps=4)
    # 1 s per step: 15 s < 15.5 after step 15, 16 s >= 15.5 after step 16
    assert r.steps == 16 and r.stopped_by_budget and r.train_seconds == 16.0
    assert [h["step"] for h in r.history] == [4, 8, 12, 16]  # 12: epoch end; 16: the budget's last look
    # evaluation (1 s each on the fake clock) is excluded: training seconds at each eval = its step
    assert r.history_seconds == [float(h["step"]) for h in r.history]


def test_budget_larger_than_the_run_changes_nothing(one_second_steps):
    plain_model, plain = run()
    model, r = run(max_seconds=10_000.0)
    assert not r.stopped_by_budget and r.steps == plain.steps == STEPS_PER_EPOCH * CFG.epochs
    assert same_tensors(plain_model, model)


def test_the_best_mid_epoch_state_is_restored():
    model, r = run(eval_every_steps=3, epochs=1)
    seed_everything(0)
    again = Toy(dropout=0.1)
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 1, "eval_every_steps": 3})
    stop_at = r.best_step

    def stop(info):  # the same run, interrupted right after the best evaluation's step
        if info["step"] == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(again, TRAIN, VAL, loss_fn, eval_fn, cfg, callback=stop)
    assert same_tensors(model, again), "the model ends with the tensors of the best evaluation"


def test_resume_after_kill_with_step_evaluations_matches_uninterrupted(tmp_path):
    ref_model, ref = run(eval_every_steps=5, out_dir=tmp_path / "ref")

    def killer(info):
        if info["step"] == 17:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run(eval_every_steps=5, out_dir=tmp_path / "run", callback=killer)
    torch.manual_seed(99)
    model, r = run(eval_every_steps=5, out_dir=tmp_path / "run")
    assert r.resumed_from_step is not None
    assert same_tensors(ref_model, model)
    assert r.history == ref.history and r.best_step == ref.best_step
    assert not list((tmp_path / "run").glob("*.safetensors"))


@pytest.mark.parametrize(
    "field,value", [("max_seconds", 0.0), ("max_seconds", -1.0), ("eval_every_steps", 0)]
)
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value}).validate()

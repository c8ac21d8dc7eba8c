"""What a training run tells a person and resumes from: epochs numbered from 1, plain progress lines
without cursor codes when stderr is not a terminal, validation metrics and the run's ETA per epoch,
warnings when the first epoch stays the best or the score is 0, and version-1 checkpoints resumed."""

import io
import json

import pytest
from test_train import CFG, TRAIN, VAL, Toy, eval_fn, loss_fn, same_tensors

from minipeft.training import TrainConfig, seed_everything, train
from minipeft.training.report import Screen, duration, metrics_text

SMALL = TRAIN[:16]  # batch 4: 4 steps per epoch, 3 epochs (CFG)


def run(cfg=CFG, **kw):
    seed_everything(0)
    model = Toy(dropout=0.1)
    return model, train(model, SMALL, VAL, loss_fn, eval_fn, cfg, **kw)


def _events(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_epochs_count_from_one_in_history_log_result_and_files(tmp_path):
    seen = []
    _, r = run(
        TrainConfig(**{**CFG.__dict__, "keep_checkpoints": True}), out_dir=tmp_path, callback=seen.append
    )
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert 1 <= r.best_epoch <= 3 and r.history[r.best_epoch - 1]["metrics"] == r.best_metrics
    evals = [e for e in _events(tmp_path) if e["event"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2, 3]
    assert {e["epoch"] for e in _events(tmp_path) if e["event"] == "step"} == {1, 2, 3}
    assert {s["epoch"] for s in seen} == {1, 2, 3}  # the callback's epoch too
    assert (tmp_path / f"best-epoch{r.best_epoch:03d}.safetensors").exists()
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["epoch"] == 3 and doc["version"] == 2  # epochs completed


def test_not_a_terminal_gets_plain_lines_metrics_and_eta(capsys):
    run(TrainConfig(**{**CFG.__dict__, "progress": True}), desc="toy")
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "\x1b" not in err, "cursor codes in a log file"
    lines = err.splitlines()
    epochs = [x for x in lines if x.startswith("[toy] epoch") and "validation" in x]
    assert len(epochs) == CFG.epochs and epochs[0].startswith("[toy] epoch 1/3: train loss")
    assert "neg_loss" in epochs[0] and "ETA" in epochs[0] and "ETA" not in epochs[-1]  # nothing left
    # 4 steps per epoch: a plain line every max(1, 4 // 10) = 1 step, none on the epoch's last step
    assert sum(x.startswith("[toy] epoch 1/3 step") for x in lines) == 3


def test_eta_is_steps_left_times_step_time_plus_evaluations_left(tmp_path):
    """log.jsonl's eta_seconds after epoch e = (total steps - steps done) × train seconds per step
    + (epochs - e) × mean evaluation seconds so far (report.py's formula), and 0 after the last."""
    _, r = run(out_dir=tmp_path)
    events = _events(tmp_path)
    total = next(e for e in events if e["event"] == "start")["total_steps"]
    evals, last_step = [], {}
    for e in events:
        if e["event"] == "step":
            last_step = e
        if e["event"] == "eval":
            evals.append(e["eval_seconds"])
            per_step = last_step["seconds"] / e["step"]
            want = (total - e["step"]) * per_step + (CFG.epochs - e["epoch"]) * sum(evals) / len(evals)
            assert e["eta_seconds"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert len(evals) == CFG.epochs and [e for e in events if e["event"] == "eval"][-1]["eta_seconds"] == 0


def test_screen_formats():
    assert [duration(s) for s in (0, 42.4, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]
    text = metrics_text({"accuracy": 0.5, "f1_macro": 0.25}, "f1_macro", best=True)
    assert text == "f1_macro 0.2500* accuracy 0.5000"  # the selected metric first, starred
    quiet = io.StringIO()
    screen = Screen("x", 2, on=False, stream=quiet)
    screen.start_epoch(1, 10, 0)
    screen.step(1, 0.5, 1e-3, 10.0)
    screen.end_epoch(0.5, {"m": 1.0}, "m", True, 5.0)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    "scores,expected",
    [
        ([0.5, 0.4, 0.3], ["is the first of 3"]),
        ([0.0, 0.0, 0.0], ["is the first of 3", "is 0 at the best epoch 1"]),
    ],
)
def test_first_best_epoch_or_zero_score_is_a_loud_warning(tmp_path, capsys, scores, expected):
    """The rare-entity case of issue 22: patience ends the run and the untrained first epoch wins
    with F1 0; the run must say so, even with progress off (CFG.progress is False)."""
    it = iter(scores)
    seed_everything(0)
    r = train(
        Toy(),
        SMALL,
        VAL,
        loss_fn,
        lambda m, b: {"f1": next(it)},
        TrainConfig(**{**CFG.__dict__, "select_metric": "f1"}),
        out_dir=tmp_path,
        desc="ner",
    )
    assert r.best_epoch == 1 and len(r.warnings) == len(expected)
    assert all(want in got for want, got in zip(expected, r.warnings))
    err = capsys.readouterr().err
    assert err.count("[ner] WARNING:") == len(expected)
    assert [e["message"] for e in _events(tmp_path) if e["event"] == "warning"] == r.warnings


def test_a_later_best_epoch_gives_no_warning(capsys):
    it = iter([0.1, 0.5, 0.3])
    seed_everything(0)
    cfg = TrainConfig(**{**CFG.__dict__, "select_metric": "f1"})
    r = train(Toy(), SMALL, VAL, loss_fn, lambda m, b: {"f1": next(it)}, cfg)
    assert r.best_epoch == 2 and r.warnings == [] and "WARNING" not in capsys.readouterr().err


def test_version_1_checkpoint_resumes_with_epochs_from_one(tmp_path):
    """A run killed under the old numbering (checkpoint version 1: best_epoch and history from 0)
    resumes to the tensors and the 1-based history of an uninterrupted run."""
    cfg = TrainConfig(**{**CFG.__dict__, "checkpoint_every": 1})
    ref, ref_r = run(cfg, out_dir=tmp_path / "ref")

    def killer(info):
        if info["step"] == 10:  # in epoch 3: epochs 1 and 2 are in the history
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=tmp_path / "run", callback=killer)
    path = tmp_path / "run" / "checkpoint.json"
    doc = json.loads(path.read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    doc.update(version=1, best_epoch=doc["best_epoch"] - 1)  # what the old minipeft wrote
    for h in doc["history"]:
        h["epoch"] -= 1
    path.write_text(json.dumps(doc))
    resumed, r = run(cfg, out_dir=tmp_path / "run")
    assert r.resumed_from_step == 10 and same_tensors(ref, resumed)
    assert r.history == ref_r.history and r.best_epoch == ref_r.best_epoch


def test_newer_checkpoint_version_is_refused(tmp_path):
    cfg = TrainConfig(**{**CFG.__dict__, "checkpoint_every": 1})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=tmp_path, callback=lambda info: (_ for _ in ()).throw(KeyboardInterrupt()))
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(ValueError, match="version 99 is newer"):
        run(cfg, out_dir=tmp_path)

"""`tasks.finetune` and `tasks.predict` end to end on synthetic files in the paper's layouts.

A tiny random BERT (conftest.tiny_model: 2 layers, hidden 32) saved next to the real tokenizer
files keeps every run to a few seconds; the loaders, encoders, loop, adapters and writers are real.
Invariants checked: the saved adapter / model reproduces the test metrics of metrics.json, the
provenance carries the data files' SHA-256, a frozen run changes nothing but the head, and bad
input stops the run before training starts.
"""

import csv
import json
from pathlib import Path

import pytest
import torch
from cli_runs import finetune_argv, run_finetune, run_predict
from safetensors.torch import load_file
from synthetic_tasks import write_conll, write_csv, write_i2b2_re, write_icd9, write_mimic

from minipeft import files, load_adapter
from models import load_pretrained, load_tokenizer
from models.assets import sha256_file
from tasks import finetune, predict
from tasks.encode import align_labels, word_predictions
from tasks.metrics import classification_metrics
from tasks.registry import get_task

CASES = [  # task, writer, method
    ("mimic-mp", lambda d: write_mimic(d, "mp"), "lora"),
    ("mimic-los", lambda d: write_mimic(d, "los", original_names=True), "ia3"),
    ("icd9-triage", write_icd9, "full"),
    ("i2b2-re", lambda d: write_i2b2_re(d, jsonl=True), "frozen"),
    ("i2b2-re", lambda d: write_i2b2_re(d, arrow=True), "lora"),  # save_to_disk folder
    ("i2b2-2010", write_conll, "lora"),
]


@pytest.mark.parametrize("task,writer,method", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_end_to_end(tmp_path, tiny_model, task, writer, method):
    data_dir = writer(tmp_path / "data")
    out = tmp_path / "run"
    doc = run_finetune(task, data_dir, tiny_model, out, "--method", method)
    t = get_task(task)
    for split in ("validation", "test"):
        assert set(t.metrics) <= set(doc[split])
        assert all(v is None or 0.0 <= v <= 1.0 for k, v in doc[split].items() if k != "loss")
    assert json.loads((out / "metrics.json").read_text())["test"] == doc["test"]
    assert [json.loads(l)["event"] for l in (out / "log.jsonl").read_text().splitlines()][-1] == "end"
    saved = out / ("adapter" if method in ("lora", "ia3") else "model")
    info = json.loads((saved / "task.json").read_text())
    assert info["task"] == task and info["type"] == t.type
    if method in ("lora", "ia3"):
        manifest = json.loads((saved / "adapter_manifest.json").read_text())
        files = manifest["provenance"]["data_files"]
        assert files and all(sha256_file(Path(f)) == h for f, h in files.items())
        assert manifest["provenance"]["metrics"]["test"] == doc["test"]


def test_saved_adapter_reproduces_test_metrics_through_predict(tmp_path, tiny_model):
    data_dir = write_mimic(tmp_path / "data", "mp")
    out = tmp_path / "run"
    doc = run_finetune("mimic-mp", data_dir, tiny_model, out, "--method", "lora", "--lr", "3e-3")
    pred_file = tmp_path / "pred.csv"
    run_predict(out / "adapter", tiny_model, data_dir / "test.csv", pred_file)
    with open(data_dir / "test.csv", newline="") as f:
        gold = {r["id"]: r["hospital_expire_flag"] for r in csv.DictReader(f)}
    with open(pred_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == list(gold)  # input order, every note
    assert sum(r["label"] == gold[r["id"]] for r in rows) / len(rows) == pytest.approx(
        doc["test"]["accuracy"]
    )
    assert all(abs(float(r["prob_0"]) + float(r["prob_1"]) - 1) < 1e-5 for r in rows)
    # unrounded probabilities from the loaded adapter give the same AUROC as the run reported
    net = load_pretrained(tiny_model, head="sequence-classification", num_labels=2)
    load_adapter(net, out / "adapter")
    tok = load_tokenizer(tiny_model)
    with open(data_dir / "test.csv", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    ids, _ = tok.encode_lists(texts, max_length=48)
    probs = predict.predict_probs(net.eval(), ids, tok.pad_id, 4, "cpu", progress=False)
    m = classification_metrics([int(gold[k]) for k in gold], probs.numpy())
    assert m["roc_auc"] == pytest.approx(doc["test"]["roc_auc"], abs=1e-9)


def test_frozen_changes_only_the_head_and_full_model_predicts(tmp_path, tiny_model):
    data_dir = write_icd9(tmp_path / "data")
    run_finetune("icd9-triage", data_dir, tiny_model, tmp_path / "run", "--method", "frozen", "--lr", "1e-2")
    before, after = (
        load_file(str(tiny_model / "model.safetensors")),
        load_file(str(tmp_path / "run" / "model" / "model.safetensors")),
    )
    changed = sorted(
        k
        for k in after
        if k.removeprefix("bert.") not in before or not torch.equal(after[k], before[k.removeprefix("bert.")])
    )
    assert changed == ["classifier.bias", "classifier.weight"]
    predict.main(
        [
            "--model",
            str(tmp_path / "run" / "model"),
            "--input",
            str(data_dir / "test.csv"),
            "--output",
            str(tmp_path / "p.csv"),
            "--no-progress",
        ]
    )
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [str(i) for i in range(8)]  # no id column: row numbers
    assert list(rows[0])[2:] == [f"prob_{i}" for i in range(7)]


def test_bad_input_stops_before_training(tmp_path, tiny_model, capsys):
    data_dir = write_mimic(tmp_path / "data", "mp")
    write_csv(data_dir / "valid.csv", ["id", "text", "hospital_expire_flag"], [[1, "a\nb", 0], [2, "c", 2]])
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        finetune.main(finetune_argv("mimic-mp", data_dir, tiny_model, out))
    assert e.value.code == 2
    assert "valid.csv: line 4: hospital_expire_flag='2'" in capsys.readouterr().err
    assert not (out / "log.jsonl").exists()  # training never started


def test_finished_run_is_not_overwritten(tmp_path, tiny_model):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a folder this program did not write: refused, untouched
    with pytest.raises(ValueError, match="not empty .*metrics.json.* no run.json"):
        run_finetune("mimic-mp", write_mimic(tmp_path / "d", "mp"), tiny_model, out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "{}"
    marker = {"format": files.MARKER_FORMAT, "program": "tasks.finetune", "settings": {}, "finished": True}
    files.write_json(out / "run.json", marker)  # a finished run of ours: refused as finished
    with pytest.raises(FileExistsError, match="that run is finished .*choose another --out"):
        run_finetune("mimic-mp", write_mimic(tmp_path / "d", "mp"), tiny_model, out)


def test_align_labels_first_and_all_by_hand():
    word_ids = [-1, 0, 0, 1, 2, 2, 2, -1]  # [CLS] w0 w0 w1 w2 w2 w2 [SEP]
    tags = (3, 0, 5)
    assert align_labels(word_ids, tags, "first") == [-100, 3, -100, 0, 5, -100, -100, -100]
    assert align_labels(word_ids, tags, "all") == [-100, 3, 3, 0, 5, 5, 5, -100]


def test_word_predictions_first_subtoken_and_truncation():
    # 4 words, truncation kept only words 0-1; word 0's second sub-token disagrees and is ignored
    assert word_predictions([9, 2, 7, 4, 9], [-1, 0, 0, 1, -1], n_words=4, outside=0) == [2, 4, 0, 0]


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
def test_killed_run_resumes_to_the_same_adapter(tmp_path, tiny_model, monkeypatch):
    data_dir = write_mimic(tmp_path / "data", "mp")
    extra = ("--method", "lora", "--epochs", "2", "--checkpoint-every", "1", "--lr", "3e-3")
    run_finetune("mimic-mp", data_dir, tiny_model, tmp_path / "whole", *extra)

    real_train = finetune.train

    def killed_at_step_4(*a, **kw):  # 3 steps per epoch: step 4 is in epoch 2
        def callback(info):
            if info["step"] == 4:
                raise KeyboardInterrupt("killed")

        return real_train(*a, **kw, callback=callback)

    monkeypatch.setattr(finetune, "train", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_finetune("mimic-mp", data_dir, tiny_model, tmp_path / "resumed", *extra)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(finetune, "train", real_train)
    run_finetune("mimic-mp", data_dir, tiny_model, tmp_path / "resumed", *extra)
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    result = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert result["result"]["resumed_from_step"] == 4


def test_target_presets_follow_the_paper_rule(tmp_path):
    from tasks.methods import MethodSpec, resolve_preset

    for name, lora, ia3_ff in (
        ("bio-bert", ("query", "value"), ("output.dense",)),
        ("tiny-biobert", ("query", "key", "value"), ("output.dense",)),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
        preset, explicit = resolve_preset(("preset",), folder)
        assert explicit == () and MethodSpec("lora", preset).adapter_config().targets == lora
        assert MethodSpec("ia3", preset).adapter_config().feedforward == ia3_ff
    preset, explicit = resolve_preset(("preset:distilbert",), tmp_path / "bio-bert")
    assert preset.name == "distilbert" and MethodSpec("frozen", preset).head == (
        "pre_classifier",
        "classifier",
    )
    preset, explicit = resolve_preset(("query", "key"), tmp_path / "bio-bert")
    assert MethodSpec("lora", preset, targets=explicit).adapter_config().targets == ("query", "key")


def test_predict_input_errors(tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    write_csv(notes, ["id", "note"], [[1, "x"]])
    with pytest.raises(SystemExit):
        predict.main(["--adapter", str(tmp_path), "--input", str(notes), "--output", str(tmp_path / "o.csv")])
    assert "missing column(s) text; expected text; found columns id, note" in capsys.readouterr().err
    (tmp_path / "task.json").write_text(
        json.dumps({"task": "i2b2-2010", "type": "token-cls", "labels": ["O"]})
    )
    conll = tmp_path / "in.conll"
    conll.write_text("Patient O\nhas O\n\nfever\n")  # tags on some lines only
    with pytest.raises(SystemExit):
        predict.main(
            ["--adapter", str(tmp_path), "--input", str(conll), "--output", str(tmp_path / "o.conll")]
        )
    assert "sentence at line 4: some lines carry a gold tag and some do not" in capsys.readouterr().err
    (tmp_path / "task.json").write_text(json.dumps({"task": "x", "type": "regression"}))
    with pytest.raises(SystemExit):
        predict.main(["--adapter", str(tmp_path), "--input", str(notes), "--output", str(tmp_path / "o.csv")])
    assert "type 'regression'; expected one of seq-cls, token-cls" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.conll").exists()


def test_ner_adapter_tags_conll_and_scores_as_training_did(tmp_path, tiny_model, capsys):
    data_dir = write_conll(tmp_path / "data")
    out = tmp_path / "run"
    doc = run_finetune("i2b2-2010", data_dir, tiny_model, out, "--method", "lora", "--lr", "3e-3")
    capsys.readouterr()
    run_predict(out / "adapter", tiny_model, data_dir / "test.txt.conll", tmp_path / "tagged.conll")
    err = capsys.readouterr().err
    scores = json.loads(err.split("entity scores: ")[1].splitlines()[0])
    assert scores["entity_f1"] == pytest.approx(doc["test"]["entity_f1"], abs=1e-4)
    gold_lines = [l.split() for l in (data_dir / "test.txt.conll").read_text().splitlines()]
    got_lines = [l.split() for l in (tmp_path / "tagged.conll").read_text().splitlines()]
    assert [g[:2] for g in gold_lines] == [l[:2] for l in got_lines]  # token and gold, in input order
    labels = json.loads((out / "adapter" / "task.json").read_text())["labels"]
    assert all(len(l) == 3 and l[2] in labels for l in got_lines if l)
    # the same tokens without tags: the same predictions, two columns
    (tmp_path / "plain.conll").write_text("\n".join(l[0] if l else "" for l in gold_lines) + "\n")
    run_predict(out / "adapter", tiny_model, tmp_path / "plain.conll", tmp_path / "plain_out.conll")
    plain = [l.split() for l in (tmp_path / "plain_out.conll").read_text().splitlines()]
    assert plain == [[l[0], l[2]] if l else [] for l in got_lines]
    # a sentence longer than --max-length: its tail is tagged O and counted
    (tmp_path / "long.conll").write_text("\n".join(["fever"] * 60) + "\n")
    run_predict(
        out / "adapter",
        tiny_model,
        tmp_path / "long.conll",
        tmp_path / "long_out.conll",
        "--max-length",
        "12",
    )
    assert "warning: 50 word(s) beyond --max-length 12 tokens were tagged O" in capsys.readouterr().err
    tags = [l.split()[1] for l in (tmp_path / "long_out.conll").read_text().splitlines()]
    assert len(tags) == 60 and tags[10:] == ["O"] * 50


def test_max_length_beyond_the_position_table_is_refused(tmp_path, tiny_model):
    with pytest.raises(ValueError, match=r"--max-length 480: expected 3\.\.128"):
        run_finetune(
            "mimic-mp", write_mimic(tmp_path / "d", "mp"), tiny_model, tmp_path / "run", "--max-length", "480"
        )

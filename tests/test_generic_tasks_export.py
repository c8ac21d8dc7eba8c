"""The generic `csv` and `conll` tasks, `tasks.export`, and what tasks.finetune tells a person.

A tiny random BERT (conftest.tiny_model) keeps each run to about a second. Invariants: the label
set of a generic CSV is the sorted distinct values of train.csv and lands in task.json and in the
exported model's id2label; the merged model gives the adapter model's logits (merge is exact up to
float rounding); bad input is one `error:` line and exit status 2.
"""

import json
import random

import pytest
import torch
from cli_runs import run_finetune
from synthetic_tasks import note, write_conll, write_csv

from models import load_pretrained, load_tokenizer
from tasks import export, finetune
from tasks.adapters import attach, load_base_for_adapter
from tasks.data_csv import label_set
from tasks.registry import get_task, load_data

NAMES = ("no", "yes")


def write_outcomes(folder, test_labels=None):
    """train/valid/test CSVs with the columns note,outcome,key (labels 'yes'/'no')."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 16), ("valid", 6), ("test", 6)):
        labels = test_labels if split == "test" and test_labels else [NAMES[k % 2] for k in range(n)]
        rows = [[note(rng, k % 2), y, f"{split}{k}"] for k, y in enumerate(labels)]
        write_csv(folder / f"{split}.csv", ["note", "outcome", "key"], rows)
    return folder


def test_label_set_sorts_numbers_as_numbers_and_text_as_text():
    assert label_set(["10", "2", " 2", "1"]) == ("1", "2", "10")
    assert label_set(["yes", "no", "maybe", "no"]) == ("maybe", "no", "yes")


def test_generic_csv_reads_named_columns_and_labels_from_train(tmp_path):
    folder = write_outcomes(tmp_path / "d")
    opts = dict(text_column="note", label_column="outcome", id_column="key")
    data = load_data(get_task("csv"), folder, seed=0, **opts)
    assert data.labels == NAMES
    assert [e.id for e in data.test][:2] == ["test0", "test1"]
    assert [data.labels[e.label] for e in data.train][:4] == ["no", "yes", "no", "yes"]
    with pytest.raises(KeyError, match=r"train\.csv: missing column\(s\) text"):  # the default column
        load_data(get_task("csv"), folder, seed=0, label_column="outcome")


def test_generic_csv_refuses_a_test_label_unseen_in_train(tmp_path):
    folder = write_outcomes(tmp_path / "d", test_labels=["no", "yes", "maybe"])
    with pytest.raises(
        ValueError,
        match=r"test\.csv: line \d+: outcome='maybe' is not among the labels of train\.csv \{no, yes\}",
    ):
        load_data(get_task("csv"), folder, seed=0, text_column="note", label_column="outcome")


def test_generic_conll_accepts_the_short_file_names(tmp_path):
    folder = write_conll(tmp_path / "d")
    for split in ("train", "dev", "test"):
        (folder / f"{split}.txt.conll").rename(folder / f"{split}.conll")
    data = load_data(get_task("conll"), folder, seed=0)
    assert data.labels[0] == "O" and {"B-problem", "I-problem", "B-test"} <= set(data.labels)
    with pytest.raises(FileNotFoundError, match=r"expected one of train\.txt\.conll"):
        load_data(get_task("i2b2-2010"), folder, seed=0)  # the paper's tasks keep their names


def test_describe_adapted_counts_layers_apart_from_the_head():
    paths = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(6) for m in ("query", "value")]
    assert (
        finetune.describe_adapted("lora", paths + ["classifier"], ("classifier",)) == "12 LoRA layers + head"
    )
    assert finetune.describe_adapted("ia3", paths[:1], ("classifier",)) == "1 IA³ layer"
    assert finetune.describe_adapted("frozen", [], ("classifier",)) == "the base frozen, the head trains"


def test_ner_selection_warnings_name_a_zero_score_and_a_first_epoch_win():
    history = [{"epoch": e, "metrics": {}} for e in (1, 2, 3)]
    zero = finetune.ner_selection_warnings(history, 1, 0.0, "entity_f1")
    assert len(zero) == 2 and "is 0" in zero[0] and "first epoch" in zero[1]
    assert finetune.ner_selection_warnings(history, 3, 0.4, "entity_f1") == []
    assert finetune.ner_selection_warnings(history[:1], 1, 0.4, "entity_f1") == []  # one epoch: no choice


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("export")
    folder = write_outcomes(tmp / "d")
    out = tmp / "run"
    cols = ["--text-column", "note", "--label-column", "outcome", "--id-column", "key"]
    run_finetune("csv", folder, tiny_model, out, "--method", "lora", "--lr", "1e-2", *cols)
    return out


def test_finetune_on_generic_csv_writes_the_label_names(csv_run):
    assert json.loads((csv_run / "task.json").read_text())["labels"] == list(NAMES)


def test_export_merges_with_the_task_labels_and_the_same_logits(csv_run, tmp_path, tiny_model, capsys):
    out = tmp_path / "merged"
    export.main(["--run", str(csv_run), "--out", str(out)])
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "no", "1": "yes"} and cfg["label2id"] == {"no": 0, "yes": 1}
    assert json.loads((out / "task.json").read_text())["labels"] == list(NAMES)
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()

    tok = load_tokenizer(out)
    batch = tok(["CHIEF COMPLAINT: chest pain", "no complaints today"], max_length=48)
    merged = load_pretrained(out, head="sequence-classification").eval()
    adapted, _ = attach(load_base_for_adapter(tiny_model, "sequence-classification", 2), csv_run / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch), adapted.eval()(**batch), rtol=0, atol=1e-5)
    assert merged.config.id2label == {0: "no", 1: "yes"}


def test_export_refuses_an_existing_out_and_a_full_run(csv_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export.main(["--run", str(csv_run), "--out", str(tmp_path)])  # exists
    assert e.value.code == 2 and "already exists" in capsys.readouterr().err
    full = tmp_path / "full"  # what a --method frozen run records (its model is in full/model)
    full.mkdir()
    (full / "task.json").write_text(json.dumps({"method": "frozen", "labels": ["0", "1"], "type": "seq-cls"}))
    with pytest.raises(SystemExit) as e:
        export.main(["--run", str(full), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "already holds the whole model" in err

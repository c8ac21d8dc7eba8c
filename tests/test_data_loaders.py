"""The task loaders on synthetic files in the paper's layouts, and their errors on bad input."""

import csv
import json

import pytest
from synthetic_tasks import SPLIT_SIZES, write_conll, write_csv, write_i2b2_re, write_icd9, write_mimic

from tasks.data_conll import read_conll
from tasks.registry import get_task, load_data, task_names


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("original", [False, True])
def test_mimic_mp_reads_quoted_multiline_and_long_fields(tmp_path, original):
    folder = write_mimic(tmp_path / "mp", "mp", original_names=original)
    data = load_data(get_task("mimic-mp"), folder, seed=0)
    assert [len(data.train), len(data.validation), len(data.test)] == list(SPLIT_SIZES.values())
    name = "MP_IN_adm_train.csv" if original else "train.csv"
    written = _rows(folder / name)
    assert [e.text for e in data.train] == [r["text"] for r in written]  # \r\n, quotes, commas intact
    assert [e.id for e in data.train] == [r["id"] for r in written]
    assert [e.label for e in data.train] == [int(r["hospital_expire_flag"]) for r in written]
    assert max(len(e.text) for e in data.train) > 131072  # csv's default field limit
    assert any("\r\n" in e.text and '"' in e.text for e in data.train)


def test_mimic_los_original_names(tmp_path):
    folder = write_mimic(tmp_path / "los", "los", original_names=True)
    data = load_data(get_task("mimic-los"), folder, seed=0)
    assert data.labels == ("0", "1", "2", "3")
    assert {e.label for e in data.train} == {0, 1, 2, 3}
    assert [f.name for f in data.files] == [f"LOS_WEEKS_adm_{s}.csv" for s in ("train", "val", "test")]


def test_icd9_triage_ids_and_labels(tmp_path):
    folder = write_icd9(tmp_path / "icd9")
    data = load_data(get_task("icd9-triage"), folder, seed=0)
    assert data.train[3].id == "train-3" and data.test[0].id == "test-0"
    assert [e.label for e in data.validation] == [int(r["label"]) for r in _rows(folder / "valid.csv")]


@pytest.mark.parametrize("jsonl", [False, True])
def test_i2b2_re_validation_split_half_by_seed(tmp_path, jsonl):
    folder = write_i2b2_re(tmp_path / "re", jsonl=jsonl)
    task = get_task("i2b2-re")
    a, b, c = (load_data(task, folder, seed=s) for s in (12, 12, 34))
    texts = lambda d, s: [e.text for e in d.split(s)]
    assert (len(a.validation), len(a.test)) == (9, 9)
    assert not set(texts(a, "validation")) & set(texts(a, "test"))
    if jsonl:
        written = [json.loads(l)["sentence"] for l in (folder / "valid.jsonl").read_text().splitlines()]
    else:
        written = [r["sentence"] for r in _rows(folder / "valid.csv")]
    assert sorted(texts(a, "validation") + texts(a, "test")) == sorted(written)
    assert texts(a, "test") == texts(b, "test")  # same seed, same split
    assert texts(a, "test") != texts(c, "test")  # another seed, another split
    assert len(a.train) == 27 and {e.label for e in a.train} == set(range(9))


def test_conll_sentences_and_tag_list(tmp_path):
    folder = write_conll(tmp_path / "ner")
    data = load_data(get_task("i2b2-2010"), folder, seed=0)
    raw = read_conll(folder / "train.txt.conll")
    assert len(data.train) == 20 and len(raw) == 20
    assert data.labels[0] == "O" and set(data.labels) <= {"O"} | {
        f"{p}-{k}" for p in "BI" for k in ("problem", "test", "treatment")
    }
    assert [data.labels[i] for i in data.train[0].tags] == raw[0][2]
    assert list(data.train[0].words) == raw[0][1]


# ---- bad input: each a clear error naming the file, what was expected and what was found ----


def test_missing_file_names_candidates_and_contents(tmp_path):
    folder = write_mimic(tmp_path / "mp")
    (folder / "test.csv").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"no test file.*test\.csv.*MP_IN_adm_test\.csv.*found.*train\.csv"
    ):
        load_data(get_task("mimic-mp"), folder, seed=0)


def test_missing_column_names_the_columns_found(tmp_path):
    folder = write_mimic(tmp_path / "mp")
    write_csv(folder / "valid.csv", ["id", "note", "label"], [[1, "x", 0]])
    with pytest.raises(
        KeyError,
        match=r"valid\.csv.*missing column\(s\) text, hospital_expire_flag.*found columns id, note, label",
    ):
        load_data(get_task("mimic-mp"), folder, seed=0)


def test_label_outside_the_set_names_file_and_line(tmp_path):
    folder = write_mimic(tmp_path / "mp")
    rows = [[1, "first\nnote\nthree lines", 0], [2, "second", 7]]
    write_csv(folder / "test.csv", ["id", "text", "hospital_expire_flag"], rows)
    raw = (folder / "test.csv").read_text()
    line = raw[: raw.index('"2"')].count("\n") + 1  # the record's first line, counted here
    assert line == 5
    with pytest.raises(
        ValueError, match=rf"test\.csv: line {line}: hospital_expire_flag='7' is not in .*0, 1"
    ):
        load_data(get_task("mimic-mp"), folder, seed=0)


def test_float_written_integer_labels_are_accepted(tmp_path):
    folder = write_mimic(tmp_path / "mp")
    write_csv(folder / "test.csv", ["id", "text", "hospital_expire_flag"], [[1, "a", "1.0"], [2, "b", "0.0"]])
    assert [e.label for e in load_data(get_task("mimic-mp"), folder, seed=0).test] == [1, 0]


def test_empty_split_is_refused(tmp_path):
    folder = write_mimic(tmp_path / "mp")
    write_csv(folder / "valid.csv", ["id", "text", "hospital_expire_flag"], [])
    with pytest.raises(ValueError, match="validation split is empty"):
        load_data(get_task("mimic-mp"), folder, seed=0)


def test_undecodable_bytes_name_file_and_line(tmp_path):
    folder = write_icd9(tmp_path / "icd9")
    data = (folder / "train.csv").read_bytes()
    cut = data.index(b"\n", data.index(b"\n") + 1) + 1  # start of line 3
    (folder / "train.csv").write_bytes(data[:cut] + b"caf\xe9 " + data[cut:])
    with pytest.raises(ValueError, match=r"train\.csv: line 3: byte 0xe9 .* not valid UTF-8"):
        load_data(get_task("icd9-triage"), folder, seed=0)


def test_unbalanced_quote_is_a_csv_error_with_line(tmp_path):
    folder = write_icd9(tmp_path / "icd9")
    (folder / "test.csv").write_text(
        'text,triage-category,label\n"ok",Cardiology,0\n"unterminated,Oncology,6\n'
    )
    with pytest.raises(ValueError, match=r"test\.csv: line 3: malformed CSV"):
        load_data(get_task("icd9-triage"), folder, seed=0)


def test_missing_data_dir_for_a_clinical_task():
    with pytest.raises(ValueError, match="--data-dir"):
        load_data(get_task("mimic-mp"), None, seed=0)


def test_unknown_task_lists_known_ones():
    with pytest.raises(KeyError, match="mimic-mp"):
        get_task("mimic-xx")
    assert {
        "mimic-mp",
        "mimic-los",
        "icd9-triage",
        "i2b2-re",
        "i2b2-2010",
        "i2b2-2012",
        "i2b2-2014",
        "rotten-tomatoes",
        "drug-reviews",
    } <= set(task_names())


def test_jsonl_missing_key(tmp_path):
    folder = write_i2b2_re(tmp_path / "re", jsonl=True)
    (folder / "valid.jsonl").write_text(json.dumps({"sentence": "a", "label": 1}) + "\n")
    with pytest.raises(
        KeyError, match=r"valid\.jsonl: line 1: missing key\(s\) labels; found sentence, label"
    ):
        load_data(get_task("i2b2-re"), folder, seed=0)


def test_conll_wrong_entity_type_and_non_bio(tmp_path):
    folder = write_conll(tmp_path / "ner")
    (folder / "dev.txt.conll").write_text("the O\nheart B-organ\n")
    with pytest.raises(ValueError, match=r"dev\.txt\.conll: sentence at line 1: entity type 'organ'"):
        load_data(get_task("i2b2-2010"), folder, seed=0)
    (folder / "dev.txt.conll").write_text("the O\nheart X-problem\n")
    with pytest.raises(ValueError, match="not BIO"):
        load_data(get_task("i2b2-2014"), folder, seed=0)
    (folder / "dev.txt.conll").write_text("the O\nlonely\n")
    with pytest.raises(ValueError, match=r"line 2: expected 'token label'"):
        load_data(get_task("i2b2-2014"), folder, seed=0)

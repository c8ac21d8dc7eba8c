"""Hostile inputs to tasks.finetune (issue 21): broken arguments, model folders, tokenizers, data
files and --out folders. Each case must end in one `error:` line naming the file, key or flag with
exit status 2, or in an acceptance docs/data-safety.md documents; never a traceback, a hang, or a
changed file outside --out (fuzz_harness.check_cli snapshots the sandbox)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fuzz_fixtures import copy, corpus, rewrite_json, safetensors_parts, write_safetensors  # noqa: F401
from fuzz_harness import check_cli

from minipeft import files
from tasks import finetune

FAST = ("--epochs", "1", "--batch-size", "8", "--max-length", "16", "--max-train-examples", "8")
FAST += ("--max-eval-examples", "4", "--no-progress", "--rank", "2", "--targets", "query,value")


def _model(sb, c, edit=None, name="m"):
    m = copy(c["model"], sb / name)
    if edit:
        edit(m)
    return m


def _data(sb, c, edit=None):
    d = copy(c["data"], sb / "d")
    if edit:
        edit(d)
    return d


def _csv_edit(fn):
    """Edit train.csv's text: fn(text) -> text."""

    def edit(d):
        p = d / "train.csv"
        p.write_text(fn(p.read_text(encoding="utf-8")), encoding="utf-8", newline="")

    return edit


def _first_label(value):
    """train.csv with its first row's label written as `value` (rows end in `,"<label>"`)."""

    def fn(text):
        head, _, rest = text.partition("\n")
        cut = rest.index('"\n' if '"\n' in rest else '"\r\n', rest.index('"0"'))
        i = rest.rindex('"0"', 0, cut + 1)
        return head + "\n" + rest[:i] + f'"{value}"' + rest[i + 3 :]

    return fn


def _weights(edit):
    def fn(m):
        header, data = safetensors_parts(m / "model.safetensors")
        write_safetensors(m / "model.safetensors", *edit(header, data))

    return fn


def _poison(key, value):
    """One float32 of tensor `key` set to `value` (NaN, inf)."""

    def edit(header, data):
        start = header[key]["data_offsets"][0]
        raw = torch.tensor([value], dtype=torch.float32).numpy().tobytes()
        return header, data[:start] + raw + data[start + 4 :]

    return edit


def _as_int(key):
    def edit(header, data):
        h = dict(header)
        h[key] = {**h[key], "dtype": "I32"}
        return h, data

    return edit


KEY = "encoder.layer.0.attention.self.query.weight"


def _cfg(edit):
    return lambda m: rewrite_json(m / "config.json", edit)


def _write(name, text):
    return lambda m: (m / name).write_text(text)


def _blank_first_note(path: Path) -> None:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    rows[1][1] = "   "
    buf = io.StringIO(newline="")
    csv.writer(buf, quoting=csv.QUOTE_ALL).writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")


# (id, model edit, data edit, extra argv, names the error must contain | None = documented acceptance)
FINETUNE = [
    ("patience-0", None, None, ["--patience", "0"], ["--patience"]),
    ("epochs-0", None, None, ["--epochs", "0"], ["--epochs"]),
    ("lr-nan", None, None, ["--lr", "nan"], ["--lr"]),
    ("lr-negative", None, None, ["--lr", "-1"], ["--lr"]),
    ("batch-0", None, None, ["--batch-size", "0"], ["--batch-size"]),
    ("grad-accum-0", None, None, ["--grad-accum", "0"], ["--grad-accum"]),
    ("max-length-2", None, None, ["--max-length", "2"], ["--max-length"]),
    ("max-length-huge", None, None, ["--max-length", "100000"], ["--max-length"]),
    ("max-train-0", None, None, ["--max-train-examples", "0"], ["--max-train-examples"]),
    ("rank-0", None, None, ["--rank", "0"], ["--rank"]),
    ("dropout-1.5", None, None, ["--dropout", "1.5"], ["dropout"]),
    ("warmup-2", None, None, ["--warmup-ratio", "2"], ["--warmup-ratio"]),
    ("unknown-target", None, None, ["--targets", "nonexistent"], ["nonexistent"]),
    ("select-by-bogus", None, None, ["--select-by", "bogus"], ["bogus"]),
    ("unknown-task", None, None, ["--task", "nope"], ["nope"]),
    ("unknown-method", None, None, ["--method", "bogus"], ["--method"]),
    ("epochs-text", None, None, ["--epochs", "five"], ["--epochs"]),
    (
        "prompt-0-tokens",
        None,
        None,
        ["--method", "prompt", "--num-virtual-tokens", "0"],
        ["--num-virtual-tokens"],
    ),
    ("config-list", _write("config.json", "[1, 2]"), None, [], ["config.json"]),
    ("config-not-json", _write("config.json", "{bad"), None, [], ["config.json"]),
    ("config-str-number", _cfg(lambda d: d.update(hidden_size="8")), None, [], ["config.json"]),
    ("config-heads-0", _cfg(lambda d: d.update(num_attention_heads=0)), None, [], ["config.json"]),
    ("config-model-type", _cfg(lambda d: d.update(model_type="gpt2")), None, [], ["config.json"]),
    ("config-model-type-list", _cfg(lambda d: d.update(model_type=["bert"])), None, [], ["config.json"]),
    (
        "config-positions-str",
        _cfg(lambda d: d.update(max_position_embeddings="32")),
        None,
        [],
        ["config.json"],
    ),
    ("config-id2label-bad", _cfg(lambda d: d.update(id2label={"x": "a"})), None, [], ["config.json"]),
    ("config-num-labels-str", _cfg(lambda d: d.update(num_labels="two")), None, [], ["config.json"]),
    ("weights-missing", lambda m: (m / "model.safetensors").unlink(), None, [], ["model.safetensors"]),
    (
        "weights-truncated",
        lambda m: (m / "model.safetensors").write_bytes(b"\x10\x00"),
        None,
        [],
        ["model.safetensors"],
    ),
    ("weights-nan", _weights(_poison(KEY, float("nan"))), None, [], ["model.safetensors"]),
    ("weights-inf", _weights(_poison(KEY, float("inf"))), None, [], ["model.safetensors"]),
    ("weights-int", _weights(_as_int(KEY)), None, [], ["model.safetensors"]),
    (
        "weights-renamed",
        _weights(lambda h, d: ({("x." + k if k == KEY else k): v for k, v in h.items()}, d)),
        None,
        [],
        ["model.safetensors"],
    ),
    (
        "weights-folder",
        lambda m: ((m / "model.safetensors").unlink(), (m / "model.safetensors").mkdir()),
        None,
        [],
        ["model.safetensors"],
    ),
    (
        "vocab-too-large",
        lambda m: (m / "vocab.txt").write_text((m / "vocab.txt").read_text() + "extra1\nextra2\n"),
        None,
        [],
        ["vocab.txt"],
    ),
    ("tokenizer-config-list", _write("tokenizer_config.json", "[]"), None, [], ["tokenizer_config.json"]),
    (
        "tokenizer-config-lower-str",
        _write("tokenizer_config.json", '{"do_lower_case": "yes"}'),
        None,
        [],
        ["tokenizer_config.json"],
    ),
    ("tokenizer-json-garbage", _write("tokenizer.json", "garbage"), None, [], ["tokenizer.json"]),
    (
        "no-tokenizer",
        lambda m: [(m / n).unlink() for n in ("vocab.txt", "tokenizer_config.json")],
        None,
        [],
        ["tokenizer"],
    ),
    (
        "csv-duplicate-column",
        None,
        _csv_edit(lambda t: t.replace('"id","text"', '"id","text","text"', 1).replace("\n", "\n", 1)),
        [],
        ["train.csv"],
    ),
    ("csv-empty-text", None, lambda d: _blank_first_note(d / "train.csv"), [], ["train.csv"]),
    ("csv-nul", None, _csv_edit(lambda t: t.replace("fever", "fe\x00ver", 1)), [], ["train.csv"]),
    (
        "csv-not-utf8",
        None,
        lambda d: (d / "train.csv").write_bytes(
            (d / "train.csv").read_bytes().replace(b"fever", b"f\xffver", 1)
        ),
        [],
        ["train.csv"],
    ),
    ("csv-label-2", None, _csv_edit(_first_label("2")), [], ["train.csv"]),
    ("csv-label-x", None, _csv_edit(_first_label("x")), [], ["train.csv"]),
    ("csv-label-1.5", None, _csv_edit(_first_label("1.5")), [], ["train.csv"]),
    ("csv-label-0.0", None, _csv_edit(_first_label("0.0")), [], None),
    ("csv-label-0e0", None, _csv_edit(_first_label("0e0")), [], None),
    (
        "csv-missing-column",
        None,
        _csv_edit(lambda t: t.replace('"hospital_expire_flag"', '"flag"', 1)),
        [],
        ["train.csv"],
    ),
    ("csv-header-only", None, _csv_edit(lambda t: t.partition("\n")[0] + "\n"), [], ["train"]),
    ("csv-empty-file", None, _csv_edit(lambda t: ""), [], ["train.csv"]),
    ("csv-unbalanced-quote", None, _csv_edit(lambda t: t.replace('"fever', '"fe"ver', 1)), [], ["train.csv"]),
    ("csv-a-folder", None, lambda d: ((d / "train.csv").unlink(), (d / "train.csv").mkdir()), [], ["train"]),
    ("data-dir-missing", None, lambda d: __import__("shutil").rmtree(d), [], ["--data-dir"]),
]


def _rows_edit(edit):
    """train/test rows edited as lists (csv round trip): edit(rows_by_split) in place."""

    def fn(d):
        import csv
        import io

        split = {}
        for name in ("train", "valid", "test"):
            split[name] = list(
                csv.reader(io.StringIO((d / f"{name}.csv").read_text(encoding="utf-8"), newline=""))
            )
        edit(split)
        for name, rows in split.items():
            buf = io.StringIO(newline="")
            csv.writer(buf, quoting=csv.QUOTE_ALL).writerows(rows)
            (d / f"{name}.csv").write_text(buf.getvalue(), encoding="utf-8", newline="")

    return fn


def _conflict(split):
    row = list(split["train"][1])
    row[2] = "1" if row[2] == "0" else "0"
    split["train"].append(row)


def _leak(split):
    split["test"][1][0] = split["train"][2][0]
    split["test"][1][2] = split["train"][2][2]


FINETUNE += [
    ("ids-conflicting-labels", None, _rows_edit(_conflict), [], ["mimic-mp"]),
    ("ids-leak-test-in-train", None, _rows_edit(_leak), [], None),
    (
        "tokenizer-added-token-dict",
        _write("tokenizer_config.json", '{"unk_token": {"content": "[UNK]"}}'),
        None,
        [],
        None,
    ),
]


@pytest.mark.parametrize("case", FINETUNE, ids=[c[0] for c in FINETUNE])
def test_finetune_hostile_input(tmp_path, corpus, case):  # noqa: F811
    _, medit, dedit, extra, names = case
    model, data = _model(tmp_path, corpus, medit), _data(tmp_path, corpus, dedit)
    out = tmp_path / "run"
    argv = ["--task", "mimic-mp", "--data-dir", data, "--model", model, "--out", out, *FAST, *extra]
    got = check_cli(finetune.main, argv, tmp_path, names or [], may_accept=names is None, writes=(out,))
    assert got == ("accepted" if names is None else "clear")
    if got == "accepted":
        assert json.loads((out / "run.json").read_text())["finished"] and (out / "metrics.json").is_file()


def _out_cases():
    def user_folder(sb):
        out = sb / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("my notes")
        (out / "checkpoint-00000001.safetensors").write_text("mine too")
        return out

    def a_file(sb):
        (sb / "f").write_text("my file")
        return sb / "f"

    def a_link(sb):
        (sb / "elsewhere").mkdir()
        os.symlink(sb / "elsewhere", sb / "link")
        return sb / "link"

    def other_settings(sb):
        out = sb / "other"
        files.claim_dir(out, program="tasks.finetune", settings={"seed": 99})
        return out

    def log_link(sb):
        out = sb / "run"
        files.claim_dir(out, program="tasks.finetune", settings={})  # settings differ: refused first
        (sb / "target.txt").write_text("outside")
        os.symlink(sb / "target.txt", out / "log.jsonl")
        return out

    return [
        ("out-user-folder", user_folder),
        ("out-is-file", a_file),
        ("out-is-link", a_link),
        ("out-other-settings", other_settings),
        ("out-log-link", log_link),
    ]


@pytest.mark.parametrize("case", _out_cases(), ids=[c[0] for c in _out_cases()])
def test_finetune_refuses_an_out_that_is_not_its_own(tmp_path, corpus, case):  # noqa: F811
    out = case[1](tmp_path)
    argv = [
        "--task",
        "mimic-mp",
        "--data-dir",
        corpus["data"],
        "--model",
        corpus["model"],
        "--out",
        out,
        *FAST,
    ]
    assert check_cli(finetune.main, argv, tmp_path, [str(out)]) == "clear"

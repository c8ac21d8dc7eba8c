"""Hostile inputs to the command lines (issue 21): tasks.finetune, tasks.predict, tasks.audit and
benchmarks.rank_sweep. Each case must end in one `error:` line naming the file, key or flag with
exit status 2, or in an acceptance docs/data-safety.md documents; never a traceback, a hang, or a
changed file outside the command's output (fuzz_harness.check_cli snapshots the sandbox)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fuzz_fixtures import copy, corpus, rewrite_json, safetensors_parts, write_safetensors  # noqa: F401
from fuzz_harness import check_cli

from benchmarks import rank_sweep
from minipeft import files
from tasks import audit, finetune, predict

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


# ---- adapters broken in every way the issue lists, for predict and audit -----------------------------

WEIGHTS = "adapter_model.safetensors"
LORA_KEY = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"


def _adapter_edit(name, fn):
    return lambda a: fn(a / name)


def _flip_data(p):
    header, data = safetensors_parts(p)
    start = header[LORA_KEY]["data_offsets"][0]
    write_safetensors(p, header, data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1 :])


def _rename(p):
    header, data = safetensors_parts(p)
    write_safetensors(p, {(k + "_x" if k == LORA_KEY else k): v for k, v in header.items()}, data)


ADAPTER = [
    ("weights-truncated-7", _adapter_edit(WEIGHTS, lambda p: p.write_bytes(p.read_bytes()[:7])), [WEIGHTS]),
    (
        "weights-truncated-header",
        _adapter_edit(WEIGHTS, lambda p: p.write_bytes(p.read_bytes()[:60])),
        [WEIGHTS],
    ),
    (
        "weights-truncated-data",
        _adapter_edit(WEIGHTS, lambda p: p.write_bytes(p.read_bytes()[:-5])),
        [WEIGHTS],
    ),
    (
        "weights-header-2-60",
        _adapter_edit(WEIGHTS, lambda p: p.write_bytes((2**60).to_bytes(8, "little") + p.read_bytes()[8:])),
        [WEIGHTS],
    ),
    ("weights-flipped-byte", _adapter_edit(WEIGHTS, _flip_data), ["adapter_manifest.json"]),
    ("weights-renamed-tensor", _adapter_edit(WEIGHTS, _rename), [WEIGHTS]),
    ("weights-missing", _adapter_edit(WEIGHTS, lambda p: p.unlink()), [WEIGHTS]),
    (
        "config-alpha-800",
        _adapter_edit("adapter_config.json", lambda p: rewrite_json(p, lambda d: d.update(lora_alpha=800))),
        ["adapter_manifest.json"],
    ),
    (
        "config-unknown-target",
        _adapter_edit(
            "adapter_config.json",
            lambda p: rewrite_json(p, lambda d: d.update(target_modules=["nonexistent"])),
        ),
        ["nonexistent"],
    ),
    (
        "config-list",
        _adapter_edit("adapter_config.json", lambda p: p.write_text("[]")),
        ["adapter_config.json"],
    ),
    (
        "config-not-json",
        _adapter_edit("adapter_config.json", lambda p: p.write_text("{")),
        ["adapter_config.json"],
    ),
    (
        "config-r-string",
        _adapter_edit("adapter_config.json", lambda p: rewrite_json(p, lambda d: d.update(r="2"))),
        ["adapter_config.json", "LoraConfig.r"],
    ),
    (
        "config-peft-type",
        _adapter_edit("adapter_config.json", lambda p: rewrite_json(p, lambda d: d.update(peft_type="LOHA"))),
        ["adapter_config.json"],
    ),
    (
        "manifest-edited",
        _adapter_edit(
            "adapter_manifest.json", lambda p: rewrite_json(p, lambda d: d.update(provenance={"seed": 1}))
        ),
        ["adapter_manifest.json"],
    ),
    (
        "manifest-list",
        _adapter_edit("adapter_manifest.json", lambda p: p.write_text("[1]")),
        ["adapter_manifest.json"],
    ),
    (
        "manifest-not-json",
        _adapter_edit("adapter_manifest.json", lambda p: p.write_text("{")),
        ["adapter_manifest.json"],
    ),
    (
        "manifest-no-tensors",
        _adapter_edit("adapter_manifest.json", lambda p: rewrite_json(p, lambda d: d.pop("tensors"))),
        ["adapter_manifest.json"],
    ),
    (
        "manifest-tensors-list",
        _adapter_edit("adapter_manifest.json", lambda p: rewrite_json(p, lambda d: d.update(tensors=[]))),
        ["adapter_manifest.json"],
    ),
]


def _adapter(sb, c, edit):
    a = copy(c["adapter"], sb / "a")
    edit(a)
    return a


@pytest.mark.parametrize("case", ADAPTER, ids=[c[0] for c in ADAPTER])
def test_predict_hostile_adapter(tmp_path, corpus, case):  # noqa: F811
    a = _adapter(tmp_path, corpus, case[1])
    out = tmp_path / "pred.csv"
    argv = [
        "--adapter",
        a,
        "--model",
        corpus["model"],
        "--input",
        corpus["notes"],
        "--output",
        out,
        "--no-progress",
    ]
    assert check_cli(predict.main, argv, tmp_path, case[2], writes=(out,)) == "clear"


@pytest.mark.parametrize("case", ADAPTER, ids=[c[0] for c in ADAPTER])
def test_audit_hostile_adapter(tmp_path, corpus, case):  # noqa: F811
    a = _adapter(tmp_path, corpus, case[1])
    argv = ["--adapter", a, "--model", corpus["model"], "--format", "json", "--out", tmp_path / "r.json"]
    assert check_cli(audit.main, argv, tmp_path, case[2], writes=(tmp_path / "r.json",)) == "clear"


def test_foreign_base_is_one_line_in_predict_and_audit(tmp_path, corpus):  # noqa: F811
    a = copy(corpus["adapter"], tmp_path / "a")
    base = ["--model", corpus["other_model"]]
    argv = [
        "--adapter",
        a,
        *base,
        "--input",
        corpus["notes"],
        "--output",
        tmp_path / "p.csv",
        "--no-progress",
    ]
    assert (
        check_cli(predict.main, argv, tmp_path, ["adapter_manifest.json"], writes=(tmp_path / "p.csv",))
        == "clear"
    )
    assert check_cli(audit.main, ["--adapter", a, *base], tmp_path, ["adapter_manifest.json"]) == "clear"


def _predict_cases():
    notes = lambda sb, text: ((sb / "in.csv").write_text(text, encoding="utf-8"), sb / "in.csv")[1]  # noqa: E731
    return [
        ("input-missing", lambda sb: (sb / "nope.csv", sb / "o.csv", []), ["nope.csv"]),
        ("input-folder", lambda sb: ((sb / "dir").mkdir() or sb / "dir", sb / "o.csv", []), ["dir"]),
        ("wrong-column", lambda sb: (notes(sb, "id,note\n1,fever\n"), sb / "o.csv", []), ["--text-column"]),
        ("nul-in-text", lambda sb: (notes(sb, "id,text\n1,fe\x00ver\n"), sb / "o.csv", []), ["in.csv"]),
        ("dup-column", lambda sb: (notes(sb, "id,text,text\n1,a,b\n"), sb / "o.csv", []), ["in.csv"]),
        ("header-only", lambda sb: (notes(sb, "id,text\n"), sb / "o.csv", []), ["in.csv"]),
        (
            "output-folder",
            lambda sb: (notes(sb, "id,text\n1,a\n"), (sb / "od").mkdir() or sb / "od", []),
            ["od"],
        ),
        ("output-user-file", lambda sb: (notes(sb, "id,text\n1,a\n"), _user_file(sb), []), ["mine.csv"]),
        ("output-is-input", lambda sb: (notes(sb, "id,text\n1,a\n"), sb / "in.csv", []), ["--output"]),
        (
            "batch-0",
            lambda sb: (notes(sb, "id,text\n1,a\n"), sb / "o.csv", ["--batch-size", "0"]),
            ["--batch-size"],
        ),
        (
            "max-length-1",
            lambda sb: (notes(sb, "id,text\n1,a\n"), sb / "o.csv", ["--max-length", "1"]),
            ["--max-length"],
        ),
        ("empty-note", lambda sb: (notes(sb, "id,text\n1,\n2,fever\n"), sb / "o.csv", []), None),
        ("earlier-output", lambda sb: (notes(sb, "id,text\n1,a\n"), _our_output(sb), []), None),
    ]


def _user_file(sb):
    (sb / "mine.csv").write_text("precious,data\n1,2\n")
    return sb / "mine.csv"


def _our_output(sb):
    (sb / "o.csv").write_text("id,label,prob_0,prob_1\n1,0,0.6,0.4\n")
    return sb / "o.csv"


@pytest.mark.parametrize("case", _predict_cases(), ids=[c[0] for c in _predict_cases()])
def test_predict_hostile_input(tmp_path, corpus, case):  # noqa: F811
    src, out, extra = case[1](tmp_path)
    names = case[2]
    argv = ["--adapter", corpus["adapter"], "--input", src, "--output", out, "--no-progress", *extra]
    writes = (out,) if names is None else ()
    got = check_cli(predict.main, argv, tmp_path, names or [], may_accept=names is None, writes=writes)
    if got == "accepted":
        text = out.read_bytes()
        assert b"\r\n" not in text and text.startswith(b"id,label,prob_0,prob_1\n")


def test_audit_argument_mistakes(tmp_path, corpus):  # noqa: F811
    a = corpus["adapter"]
    (tmp_path / "mine.md").write_text("my notes")
    no_base = copy(a, tmp_path / "nb")
    rewrite_json(no_base / "task.json", lambda d: d.pop("base_model"))
    cases = [
        (["--adapter", a, "--head", "token-classification"], ["--head"]),
        (["--adapter", a, "--out", tmp_path / "mine.md"], ["mine.md"]),
        (["--adapter", a, "--num-labels", "0"], ["--num-labels"]),
        (["--adapter", tmp_path / "nope"], ["nope"]),
        (["--model", tmp_path / "nope"], ["nope"]),
        ([], ["--model"]),
        (["--adapter", a, "--format", "xml"], ["--format"]),
    ]
    for argv, names in cases:
        assert check_cli(audit.main, argv, tmp_path, names) == "clear"
    # documented: --model from the manifest; provenance one field a line
    out = tmp_path / "r.md"
    assert check_cli(audit.main, ["--adapter", a, "--out", out], tmp_path, [], may_accept=True, writes=(out,))
    assert "  - seed: `0`" in out.read_text()


def test_rank_sweep_refuses_what_is_not_its_own(tmp_path, corpus):  # noqa: F811
    data = ["--task", "mimic-mp", "--data-dir", corpus["data"], "--max-train-examples", "8"]
    base = [*data, "--model", corpus["model"], "--ranks", "1,2", "--reference-rank", "1", "--epochs", "1"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "runs.csv").write_text("my,own\n")
    (tmp_path / "f").write_text("x")
    bad_model = copy(corpus["model"], tmp_path / "bm")
    (bad_model / "config.json").write_text("[]")
    cases = [
        ([*base, "--out", mine], [str(mine)]),
        ([*base, "--out", tmp_path / "f"], [str(tmp_path / "f")]),
        ([*base, "--reference-rank", "3", "--out", tmp_path / "o"], ["--reference-rank"]),
        ([*base, "--model", bad_model, "--out", tmp_path / "o2"], ["config.json"]),
        ([*base, "--out", tmp_path / "o3", "--threads", "zero"], ["--threads"]),
    ]
    for argv, names in cases:
        assert (
            check_cli(rank_sweep.main, argv, tmp_path, names, writes=(tmp_path / "o", tmp_path / "o2"))
            == "clear"
        )

"""Hostile inputs to tasks.predict, tasks.audit and benchmarks.rank_sweep (issue 21): broken
adapters, manifests, inputs, arguments and output paths. Each case must end in one `error:` line
naming the file, key or flag with exit status 2, or in an acceptance docs/data-safety.md documents;
never a traceback, a hang, or a changed file outside the command's output."""

from __future__ import annotations

import pytest
from fuzz_fixtures import copy, corpus, rewrite_json, safetensors_parts, write_safetensors  # noqa: F401
from fuzz_harness import check_cli

from benchmarks import rank_sweep
from tasks import audit, predict

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

"""Generated hostile files for the library's readers (issue 21): load_pretrained, load_tokenizer,
load_adapter, and the CSV, CoNLL and Arrow readers. Properties checked on every input: the call
returns (a documented acceptance: the edited file is still a valid one) or raises a ValueError /
KeyError / FileNotFoundError naming the file; never another exception, never a hang.

Generation is seeded and exhaustive where the space is small: a safetensors file truncated at every
offset (the adapter file whole; the model file's header whole and its data at a stride), random
edits of the safetensors header (dtype, shape, offsets, keys, length), random byte flips of CSV and
CoNLL files and of an Arrow shard. The fast tier takes a sample; `slow` takes the larger corpus."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from fuzz_fixtures import copy, corpus, safetensors_parts, write_safetensors  # noqa: F401
from fuzz_harness import check_lib, count, deadline
from synthetic_tasks import write_conll, write_i2b2_re

import models
from minipeft import load_adapter, remove
from minipeft.inject import adapters
from tasks.data_conll import load_conll_task
from tasks.data_csv import ICD9_TRIAGE, load_csv_task, load_i2b2_re
from tasks.registry import get_task, load_data
from tasks.verify_manifest import verify

WEIGHTS = "adapter_model.safetensors"


def _verify_reports(adapter_dir: Path, intact: bool) -> None:
    """tasks.verify_manifest agrees with load_adapter on the tensors file, and never raises."""
    with deadline(60):
        problems = verify(adapter_dir)  # an exception fails the test
    assert isinstance(problems, list) and (problems == []) == intact, problems
    count("clear" if problems else "accepted")  # a problem list is verify's clear answer


def _truncations(size: int, header_end: int, head_stride: int, stride: int) -> list[int]:
    """Every `head_stride`-th offset up to the end of the header (the first 16 all), then every
    `stride`-th, and the last two."""
    head = set(range(0, min(size, header_end + 16), head_stride)) | set(range(16))
    return sorted(head | set(range(0, size, stride)) | {size - 1, size - 2})


def _adapter_truncations(tmp_path, corpus, stride):  # noqa: F811
    a = copy(corpus["adapter"], tmp_path / "a")
    raw = (a / WEIGHTS).read_bytes()
    model = models.load_pretrained(corpus["model"], head="sequence-classification", num_labels=2)
    n = int.from_bytes(raw[:8], "little")
    for cut in _truncations(len(raw), 8 + n, stride, stride):
        (a / WEIGHTS).write_bytes(raw[:cut])
        check_lib(load_adapter, model, a, names=[str(a / WEIGHTS)])
        assert not adapters(model)  # a refused adapter leaves the model as it was
        _verify_reports(a, intact=False)


def test_adapter_truncated_at_every_third_offset(tmp_path, corpus):  # noqa: F811
    _adapter_truncations(tmp_path, corpus, stride=3)


@pytest.mark.slow
def test_adapter_truncated_at_every_offset(tmp_path, corpus):  # noqa: F811
    _adapter_truncations(tmp_path, corpus, stride=1)


def _model_truncations(tmp_path, corpus, head_stride, stride):  # noqa: F811
    m = copy(corpus["model"], tmp_path / "m")
    raw = (m / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    for cut in _truncations(len(raw), 8 + n, head_stride, stride):
        (m / "model.safetensors").write_bytes(raw[:cut])
        check_lib(models.load_pretrained, m, names=[str(m / "model.safetensors")])


def test_model_truncated_header_and_data_sample(tmp_path, corpus):  # noqa: F811
    _model_truncations(tmp_path, corpus, head_stride=17, stride=997)


@pytest.mark.slow
def test_model_truncated_dense(tmp_path, corpus):  # noqa: F811
    _model_truncations(tmp_path, corpus, head_stride=1, stride=31)


def _mutate_header(header: dict, rng: random.Random) -> tuple[dict, int | None]:
    """One random edit; returns (header, header length override or None)."""
    h = json.loads(json.dumps(header))
    key = rng.choice(sorted(k for k in h if k != "__metadata__"))
    choice = rng.randrange(10)
    if choice == 0:
        h[key]["dtype"] = rng.choice(["I64", "BOOL", "U8", "F16", "XX", 7, None])
    elif choice == 1:
        h[key]["shape"] = rng.choice([[], [0], [-1, 2], [10**6, 10**6], "3", [2.5], [1] * 9])
    elif choice == 2:
        a, b = h[key]["data_offsets"]
        h[key]["data_offsets"] = rng.choice([[b, a], [a, b + 4], [a - 1, b], [a, 2**63], [-1, b], [a], "x"])
    elif choice == 3:
        h[key + rng.choice(["", "_x", ".bak"])] = h.pop(key)
    elif choice == 4:
        h[key] = rng.choice([None, [], "tensor", {"dtype": "F32"}])
    elif choice == 5:
        del h[key]
    elif choice == 6:
        h["__metadata__"] = rng.choice([[], {"format": 3}, "x", {"a": {"b": 1}}])
    elif choice == 7:
        h = rng.choice([[], "header", 3, None])
    elif choice == 8:
        return h, rng.choice([0, 1, 2**60, 2**64 - 1, 7])
    else:
        h[key]["data_offsets"] = [0, 0]
    return h, None


def _write_mutated(path: Path, header: dict, data: bytes, rng: random.Random) -> None:
    h, length = _mutate_header(header, rng)
    text = json.dumps(h).encode()
    path.write_bytes((len(text) if length is None else length).to_bytes(8, "little") + text + data)


def _header_edits(tmp_path, corpus, n, seed=0):  # noqa: F811
    rng = random.Random(seed)
    a = copy(corpus["adapter"], tmp_path / "a")
    m = copy(corpus["model"], tmp_path / "m")
    a_header, a_data = safetensors_parts(corpus["adapter"] / WEIGHTS)
    m_header, m_data = safetensors_parts(corpus["model"] / "model.safetensors")
    model = models.load_pretrained(corpus["model"], head="sequence-classification", num_labels=2)
    for _ in range(n):
        _write_mutated(a / WEIGHTS, a_header, a_data, rng)
        # an edit that keeps the file valid and equal (e.g. metadata) is accepted: the manifest verifies
        status, _ = check_lib(load_adapter, model, a, names=[str(a)], may_accept=True)
        _verify_reports(a, intact=status == "accepted")
        if adapters(model):  # accepted: take it off for the next input
            remove(model)
        _write_mutated(m / "model.safetensors", m_header, m_data, rng)
        check_lib(models.load_pretrained, m, names=[str(m / "model.safetensors")], may_accept=True)


def test_random_safetensors_header_edits(tmp_path, corpus):  # noqa: F811
    _header_edits(tmp_path, corpus, n=60)


@pytest.mark.slow
def test_random_safetensors_header_edits_large(tmp_path, corpus):  # noqa: F811
    _header_edits(tmp_path, corpus, n=600, seed=1)


def _flip(raw: bytes, rng: random.Random, k: int) -> bytes:
    b = bytearray(raw)
    for _ in range(k):
        i = rng.randrange(len(b))
        b[i] = rng.choice([0x00, 0x22, 0x2C, 0x0A, 0x0D, 0xFF, 0xC3, rng.randrange(256)])
    return bytes(b)


def _csv_flips(tmp_path, corpus, n, seed=0):  # noqa: F811
    """MIMIC CSV (through the registry's checks) and ICD9 CSV byte flips: valid -> accepted."""
    rng = random.Random(seed)
    d = copy(corpus["data"], tmp_path / "d")
    originals = {p.name: p.read_bytes() for p in d.iterdir()}
    task = get_task("mimic-mp")
    for _ in range(n):
        name = rng.choice(sorted(originals))
        (d / name).write_bytes(
            _flip(originals[name][:4000] + originals[name][-2000:], rng, rng.randint(1, 4))
        )
        check_lib(load_data, task, d, 0, names=[str(d / name), "mimic-mp"], may_accept=True)
        (d / name).write_bytes(originals[name])


def test_csv_random_byte_flips(tmp_path, corpus):  # noqa: F811
    _csv_flips(tmp_path, corpus, n=80)


@pytest.mark.slow
def test_csv_random_byte_flips_large(tmp_path, corpus):  # noqa: F811
    _csv_flips(tmp_path, corpus, n=1500, seed=1)


def _conll_flips(tmp_path, n, seed=0):
    rng = random.Random(seed)
    d = write_conll(tmp_path / "c")
    originals = {p.name: p.read_bytes() for p in d.iterdir()}
    for _ in range(n):
        name = rng.choice(sorted(originals))
        (d / name).write_bytes(_flip(originals[name], rng, rng.randint(1, 3)))
        check_lib(load_conll_task, d, (), names=[str(d / name), "entity types"], may_accept=True)
        (d / name).write_bytes(originals[name])


def test_conll_random_byte_flips(tmp_path):
    _conll_flips(tmp_path, n=80)


@pytest.mark.slow
def test_conll_random_byte_flips_large(tmp_path):
    _conll_flips(tmp_path, n=1500, seed=1)


def test_conll_entity_types_differing_in_case_are_refused(tmp_path):
    d = write_conll(tmp_path / "c")
    text = (d / "dev.txt.conll").read_text()
    tag = next(ln.split()[-1] for ln in text.splitlines() if ln.strip() and ln.split()[-1] != "O")
    kind = tag.partition("-")[2]
    (d / "dev.txt.conll").write_text(text.replace(tag, f"{tag[0]}-{kind.swapcase()}", 1))
    status, e = check_lib(load_conll_task, d, (), names=["dev.txt.conll", "train.txt.conll"])
    assert status == "clear" and "differ only in case" in str(e)


def _arrow_edits(tmp_path, n, seed=0):
    pytest.importorskip("datasets")
    rng = random.Random(seed)
    d = write_i2b2_re(tmp_path / "r", arrow=True)
    shard = sorted(d.rglob("*.arrow"))[0]
    raw = shard.read_bytes()
    labels = tuple(str(i) for i in range(9))
    for i in range(n):
        edited = raw[: rng.randrange(len(raw))] if i % 2 else _flip(raw, rng, rng.randint(1, 3))
        shard.write_bytes(edited)
        check_lib(load_i2b2_re, d, labels, 0, names=[str(shard), str(shard.parent), str(d)], may_accept=True)
    shard.write_bytes(raw)


def test_arrow_truncations_and_flips(tmp_path):
    _arrow_edits(tmp_path, n=60)


@pytest.mark.slow
def test_arrow_truncations_and_flips_large(tmp_path):
    _arrow_edits(tmp_path, n=1000, seed=1)


TOKENIZER_CONFIGS = [
    ("[]", False),
    ('"text"', False),
    ("{", False),
    ('{"do_lower_case": "no"}', False),
    ('{"unk_token": 5}', False),
    ('{"strip_accents": 1}', False),
    ('{"model_max_length": "512"}', True),  # documented: a non-integer length falls back to 512
    ('{"unk_token": {"content": "[UNK]", "lstrip": false}}', True),  # HF's added-token form
    ('{"cls_token": "[NOPE]"}', False),
]


@pytest.mark.parametrize("text,ok", TOKENIZER_CONFIGS)
def test_tokenizer_config_hostile(tmp_path, corpus, text, ok):  # noqa: F811
    m = copy(corpus["model"], tmp_path / "m")
    (m / "tokenizer_config.json").write_text(text)
    status, value = check_lib(models.load_tokenizer, m, names=[str(m)], may_accept=ok)
    assert (status == "accepted") == ok
    if ok:
        assert value(["fever"])["input_ids"].tolist() == [[2, VOCAB_FEVER, 3]]


VOCAB_FEVER = 5  # fuzz_fixtures.VOCAB: five specials, then WORDS[0] == "fever"


def test_icd9_reader_duplicate_header_is_refused(tmp_path):
    d = tmp_path / "icd"
    d.mkdir()
    for name in ("train.csv", "valid.csv", "test.csv"):
        (d / name).write_text("text,label,label\nfever,1,2\n")
    status, e = check_lib(load_csv_task, d, ICD9_TRIAGE, tuple("0123456"), names=[str(d / "train.csv")])
    assert "more than once" in str(e)


def test_nan_adapter_is_refused(tmp_path, corpus):  # noqa: F811
    a = copy(corpus["adapter"], tmp_path / "a")
    header, data = safetensors_parts(a / WEIGHTS)
    key = sorted(k for k in header if k.endswith("lora_A.weight"))[0]
    start = header[key]["data_offsets"][0]
    nan = torch.tensor([float("nan")]).numpy().tobytes()
    write_safetensors(a / WEIGHTS, header, data[:start] + nan + data[start + 4 :])
    model = models.load_pretrained(corpus["model"], head="sequence-classification", num_labels=2)
    status, e = check_lib(load_adapter, model, a, names=[str(a / WEIGHTS)])
    assert "NaN" in str(e)
    shutil.rmtree(a)

"""Smoke test of `python -m benchmarks.memory` on a tiny random BERT (2 layers, hidden 64, 32 tokens)."""

import json

import pytest
import torch

from benchmarks import memory


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_tiny_run_prints_json_and_checkpointing_saves_less(capsys):
    memory.main(
        [
            "--method",
            "lora",
            "--layers",
            "2",
            "--hidden",
            "64",
            "--seq",
            "32",
            "--micro",
            "2",
            "--accum",
            "2",
            "--checkpointing",
            "both",
            "--threads",
            "1",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(lines[-1])
    assert doc["torch"] == torch.__version__
    assert doc["config"]["seq"] == 32 and doc["config"]["methods"] == ["lora"]
    by_ck = {r["checkpointing"]: r for r in doc["results"]}
    assert set(by_ck) == {False, True}
    for r in by_ck.values():
        assert r["steps"] == 1  # 2 x 2 examples = one optimiser step
        assert r["peak_rss_bytes"] > 4 * r["params"]  # the fp32 weights live in the process
        assert r["fits_budget"] == (r["peak_rss_bytes"] <= 24 * 1024**3)
    # invariant: recomputing each layer in backward keeps only layer inputs, so fewer saved bytes
    assert 0 < by_ck[True]["saved_bytes_max"] < by_ck[False]["saved_bytes_max"]
    assert any(line.startswith("verdict: lora micro 2 x accum 2") for line in lines)


@pytest.mark.parametrize(
    "argv",
    [
        ["--method", "ia3"],
        ["--micro", "0"],
        ["--one", "--method", "lora,full", "--checkpointing", "on"],
        ["--hidden", "100"],
    ],
)
def test_bad_arguments_exit(argv):
    with pytest.raises(SystemExit):
        memory.parse_args(argv)

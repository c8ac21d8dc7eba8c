"""The op and training-step benchmarks run end to end at tiny sizes and report what they claim."""

import json

import pytest

from benchmarks import ops as bench_ops


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_ops_benchmark_counts_x_once_for_fused_qkv(capsys):
    n = 16
    bench_ops.main(
        ["--shapes", "minilm", "--tokens", str(n), "--warmup", "0", "--repeats", "1", "--inner", "1"]
    )
    doc = last_json(capsys)
    assert doc["benchmark"] == "ops" and doc["torch"] and doc["device"] == "cpu"
    by_case = {r["case"]: r for r in doc["results"]}
    assert set(by_case) == {"lora-qkv", "lora-ffn", "ia3-kv", "ia3-ff"}
    h = 384
    # fused q,k,v: x once (fp32) + three 1-byte keep-masks
    assert by_case["lora-qkv"]["fused"]["saved_bytes"] == n * h * 4 + 3 * n * h
    assert by_case["lora-qkv"]["bytes_ratio_fused_plain"] <= 0.5
    for r in doc["results"]:
        assert r["fused"]["min_ms"] <= r["fused"]["median_ms"] <= r["fused"]["max_ms"]
    # the masks section (its run already checked that the bool and uint8 compares give the same bytes)
    assert [(m["label"], m["shape"]) for m in doc["masks"]] == [
        ("x minilm", [n, h]),
        ("attention", [1, 12, 128, 128]),
    ]
    for m in doc["masks"]:
        for way in ("bernoulli", "lanes-bool", "lanes-uint8"):
            assert 0 < m[way]["min_ms"] <= m[way]["median_ms"] <= m[way]["max_ms"]


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_train_step_benchmark_on_the_real_checkpoint(minilm_dir, capsys):
    from benchmarks import train_step

    train_step.main(
        [
            "--variants",
            "full,frozen,lora-plain,lora-fused,ia3",
            "--batch",
            "2",
            "--seq",
            "16",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--profile",
            "1",
            "--model-dir",
            str(minilm_dir),
        ]
    )
    res = last_json(capsys)["results"]
    for r in res.values():  # the kinds partition the step
        p = r["profile_ms_per_step"]
        assert p["matrix products"] > 0 and p["random numbers"] > 0  # dropout 0.1 draws numbers
        assert p["matrix products"] + p["random numbers"] + p["other"] == pytest.approx(p["total"])
    assert set(res) == {"full", "frozen", "lora-plain", "lora-fused", "ia3"}
    assert res["frozen"]["trainable"] == 3 * 384 + 384 * 2 + 2  # layer 0's q,k,v biases + classifier
    assert 0 < res["frozen"]["activation_bytes"] < res["lora-fused"]["activation_bytes"]
    assert res["full"]["time_ratio_full"] == pytest.approx(1.0)
    assert res["frozen"]["over_frozen_paired_full"] == 0.0  # (t − t_frozen) / t_full, frozen itself
    for r in res.values():  # a count per step (None without `resource`)
        assert r["minor_faults_per_step"] is None or r["minor_faults_per_step"] >= 0
    # one round: what LoRA adds to the frozen base, over full's step, is p/full minus frozen's p/full
    lora, frozen = res["lora-fused"], res["frozen"]
    assert lora["over_frozen_paired_full"] == pytest.approx(
        lora["time_ratio_paired_full"] - frozen["time_ratio_paired_full"]
    )
    assert res["lora-fused"]["activation_bytes"] < res["lora-plain"]["activation_bytes"]
    assert res["lora-fused"]["trainable"] == res["lora-plain"]["trainable"] < res["full"]["trainable"]

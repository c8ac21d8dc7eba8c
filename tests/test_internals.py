"""python -m benchmarks.internals on a tiny random BERT (real tokenizer): analysing saved adapters and a
full fine-tune, its errors, and the training path end to end with resume (slow)."""

import json

import pytest
import torch
from synthetic_tasks import write_mimic

from benchmarks import internals, rank_sweep
from minipeft import IA3Config, LoraConfig, analysis, inject, load_adapter, save_adapter
from models import load_pretrained, save_pretrained

SEQ = "sequence-classification"


def _lora(base_dir, out, r, seed):
    """A saved LoRA adapter on query,value with seeded random A and B (as if trained)."""
    model = load_pretrained(base_dir, head=SEQ, num_labels=2)
    inject(model, LoraConfig(r=r, alpha=8, targets=("query", "value"), modules_to_save=("classifier",)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return save_adapter(model, out, task_type="SEQ_CLS", provenance={"seed": seed})


def _ia3(base_dir, out):
    model = load_pretrained(base_dir, head=SEQ, num_labels=2)
    inject(model, IA3Config(targets=("key", "value"), feedforward=(), modules_to_save=("classifier",)))
    with torch.no_grad():
        for _, m in analysis.adapters(model):
            m.ia3_l.add_(torch.linspace(-0.1, 0.1, m.ia3_l.numel()))
    return save_adapter(model, out, task_type="SEQ_CLS")


def _full(base_dir, out, scale=0.01):
    model = load_pretrained(base_dir, head=SEQ, num_labels=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return save_pretrained(model, out)


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_analyses_saved_adapters_and_a_full_model(tmp_path, tiny_model, capsys):
    a = [
        _lora(tiny_model, tmp_path / n, r, s)
        for n, r, s in (("r2-s1", 2, 1), ("r4-s1", 4, 1), ("r4-s2", 4, 2))
    ]
    full = _full(tiny_model, tmp_path / "full")
    out = tmp_path / "out"
    internals.main(
        ["--model", str(tiny_model), "--adapters", *map(str, a), "--full-model", str(full), "--out", str(out)]
    )
    doc = _last_json(capsys.readouterr().out)
    assert doc["updates"] == ["r2-s1", "r4-s1", "r4-s2", "full"]
    saved = json.loads((out / "internals.json").read_text())
    assert {"similarity.png", "spectra.png", "update_sizes.png", "intruders.png", "amplification.png"} <= {
        p.name for p in out.iterdir()
    }
    report = (out / "report.md").read_text()
    for section in (
        "Subspace similarity",
        "Amplification",
        "90%-variance rank",
        "Intruder",
        "Where the change is",
    ):
        assert section in report
    # φ(1,1) of the rank pair, recomputed from the adapters' A matrices with the library
    models = []
    for d in a[:2]:
        m = load_pretrained(tiny_model, head=SEQ, num_labels=2)
        load_adapter(m, d)
        models.append(m)
    path = "bert.encoder.layer.1.attention.self.query"
    want = analysis.subspace_similarity(*(m.get_submodule(path).lora_A for m in models), 1, 1)
    row = next(
        r for r in saved["similarity"] if r["pair"] == "rank" and r["module"] == "attention.self.query"
    )
    assert (row["a"], row["b"]) == ("r2-s1", "r4-s1")
    assert row["phi11_by_layer"]["1"] == pytest.approx(want, abs=1e-4)
    assert set(doc["headline"]["phi11"]) >= {"rank:query", "rank:value", "seed r=4:query"}
    # full fine-tune: one update row per encoder-layer linear (2 layers x 6), LoRA only query/value
    assert len([r for r in saved["sizes"] if r["name"] == "full"]) == 12
    assert len([r for r in saved["sizes"] if r["name"] == "r2-s1"]) == 4
    lora_rank90 = [r["rank90"] for r in saved["sizes"] if r["name"] == "r2-s1"]
    assert max(lora_rank90) <= 2  # a rank-2 update cannot need more than 2 directions
    assert doc["headline"]["rank90_median"]["full"] > 4  # random perturbation: spread over many directions


def test_ia3_adapters_get_their_statistics_and_refuse_lora_only_analyses(tmp_path, tiny_model, capsys):
    ia3 = _ia3(tiny_model, tmp_path / "ia3")
    lora = [_lora(tiny_model, tmp_path / f"l{s}", 2, s) for s in (1, 2)]
    out = tmp_path / "out"
    internals.main(
        [
            "--model",
            str(tiny_model),
            "--adapters",
            str(ia3),
            *map(str, lora),
            "--no-figures",
            "--out",
            str(out),
        ]
    )
    assert not list(out.glob("*.png"))
    saved = json.loads((out / "internals.json").read_text())
    assert len(saved["ia3"]) == 4 and {r["module"] for r in saved["ia3"]} == {
        "attention.self.key",
        "attention.self.value",
    }
    assert all(r["max_abs_dev"] == pytest.approx(0.1, abs=1e-6) for r in saved["ia3"])
    assert {(r["a"], r["b"]) for r in saved["similarity"]} == {("l1", "l2")}  # IA3 left out of φ
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        internals.main(
            ["--model", str(tiny_model), "--adapters", str(ia3), "--require-lora", "--out", str(out)]
        )
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert f"{ia3}/adapter_config.json: peft_type IA3" in err


def test_an_adapter_that_does_not_fit_the_base_is_named(tmp_path, tiny_model, make_tiny_model, capsys):
    adapter = _lora(make_tiny_model(hidden_size=16, intermediate_size=32), tmp_path / "small", 2, 1)
    with pytest.raises(SystemExit) as e:
        internals.main(["--model", str(tiny_model), "--adapters", str(adapter), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and str(adapter) in err
    assert "another size" in err or "another base model" in err


def test_a_full_model_of_another_architecture_is_named(tmp_path, tiny_model, make_tiny_model, capsys):
    other = _full(make_tiny_model(num_hidden_layers=3), tmp_path / "deeper")
    with pytest.raises(SystemExit) as e:
        internals.main(["--model", str(tiny_model), "--full-model", str(other), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert f"{other}/config.json: another architecture" in err and "num_hidden_layers" in err


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        internals.main(["--help"])
    text = capsys.readouterr().out
    for action in internals.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings


@pytest.mark.slow
def test_trains_analyses_and_resumes(tmp_path, tiny_model, capsys):
    data = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "run"
    argv = ["--task", "mimic-mp", "--data-dir", str(data), "--model", str(tiny_model), "--ranks", "2,4",
            "--seeds", "1,2", "--batch-size", "8", "--max-length", "48", "--lr", "3e-3", "--full-lr", "1e-3",
            "--threads", "1", "--no-progress", "--out", str(out)]  # fmt: skip
    internals.main(argv)
    text = capsys.readouterr().out
    assert "5 to train now" in text and text.index("estimated time") < text.index("LoRA r=2 seed=1")
    first = _last_json(text)
    assert sorted(p.name for p in (out / "adapters").iterdir()) == ["r2-s1", "r2-s2", "r4-s1", "r4-s2"]
    assert (out / "full" / "result.json").is_file() and (out / "full" / "model" / "config.json").is_file()
    internals.main(argv)  # everything reused: nothing trains, the same numbers come out
    text = capsys.readouterr().out
    assert "0 to train now" in text and "estimated time" not in text
    assert _last_json(text)["headline"] == first["headline"]
    saved = json.loads((out / "internals.json").read_text())
    assert all(u["metrics"].get("test_auroc") is not None for u in saved["updates"])
    with pytest.raises(SystemExit):  # other settings in the same --out are refused
        internals.main([*argv[:-2], "--epochs", "2", "--out", str(out)])
    assert "other settings" in capsys.readouterr().err


def test_rank_sweep_keep_adapters_saves_each_run(tmp_path, tiny_model):
    data = write_mimic(tmp_path / "mimic", "mp")
    out = tmp_path / "sweep"
    argv = ["--task", "mimic-mp", "--data-dir", str(data), "--model", str(tiny_model), "--ranks", "2,8",
            "--seeds", "1", "--batch-size", "8", "--max-length", "48", "--no-progress", "--threads", "1",
            "--keep-adapters", "--out", str(out)]  # fmt: skip
    rank_sweep.main(argv)
    for r in (2, 8):
        folder = out / "adapters" / f"r{r}-s1"
        model = load_pretrained(tiny_model, head=SEQ, num_labels=2)
        config = load_adapter(model, folder)  # verifies the manifest against this base
        assert config.r == r and config.use_rslora
        m = model.get_submodule("bert.encoder.layer.0.attention.self.query")
        assert float(m.lora_B.detach().abs().sum()) > 0  # trained: B moved off its zero init
        manifest = json.loads((folder / "adapter_manifest.json").read_text())
        assert manifest["provenance"]["rank"] == r and manifest["provenance"]["seed"] == 1

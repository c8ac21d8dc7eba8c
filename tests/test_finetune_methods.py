"""`tasks.finetune --method dora|vera`, `--init pissa|olora`, `--loraplus-ratio`: each run's saved
adapter, loaded on a fresh base, reproduces the test AUROC the run reported; bad values stop the run
with one line and status 2 before any data is read."""

import json

import pytest
from cli_runs import finetune_argv, run_finetune
from synthetic_tasks import write_mimic

from minipeft import adapters, load_adapter, summary
from models import load_pretrained, load_tokenizer
from tasks import audit, finetune, predict
from tasks.metrics import classification_metrics

RUNS = {
    "dora": ["--method", "dora", "--lr", "3e-3"],
    "vera": ["--method", "vera", "--rank", "16", "--lr", "1e-2"],
    "pissa-loraplus": ["--method", "lora", "--init", "pissa", "--loraplus-ratio", "16", "--lr", "1e-3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_method_runs_and_its_saved_adapter_reproduces_the_test_auroc(tmp_path, tiny_model, name):
    data_dir = write_mimic(tmp_path / "data", "mp")
    out = tmp_path / "run"
    doc = run_finetune("mimic-mp", data_dir, tiny_model, out, *RUNS[name])
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["config"]["loraplus_ratio"] == (16 if "loraplus" in name else None)
    net = load_pretrained(tiny_model, head="sequence-classification", num_labels=2)
    load_adapter(net, out / "adapter")  # the untouched base: the manifest's fingerprint holds
    kinds = {type(m).__name__ for _, m in adapters(net)}
    assert kinds == {"dora": {"DoRALinear"}, "vera": {"VeRALinear"}, "pissa-loraplus": {"LoRALinear"}}[name]
    if name == "vera":  # λ_b (out) + λ_d (r) per layer; the "tiny" preset: 2 layers x query,key,value
        assert summary(net).adapter == 2 * 3 * (32 + 16)
    manifest = json.loads((out / "adapter/adapter_manifest.json").read_text())
    assert manifest["adapter"].get("init") == ("pissa" if "pissa" in name else None)
    report = audit.main(
        ["--model", str(tiny_model), "--adapter", str(out / "adapter"), "--out", str(tmp_path / "a.md")]
    )
    assert report["adapter_check"]["verified"] and not report["adapter_check"]["base_mismatch"]
    said = "adapter init: pissa at rank 8, saved as plain LoRA of rank 16" in (tmp_path / "a.md").read_text()
    assert said == ("pissa" in name)
    tok = load_tokenizer(tiny_model)
    import csv

    with open(data_dir / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids, _ = tok.encode_lists([r["text"] for r in rows], max_length=48)
    probs = predict.predict_probs(net.eval(), ids, tok.pad_id, 4, "cpu", progress=False)
    m = classification_metrics([int(r["hospital_expire_flag"]) for r in rows], probs.numpy())
    assert m["roc_auc"] == pytest.approx(doc["test"]["roc_auc"], abs=1e-9)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--loraplus-ratio", "0"], "--loraplus-ratio must be > 0"),
        (["--loraplus-ratio", "-4"], "--loraplus-ratio must be > 0"),
        (["--method", "ia3", "--loraplus-ratio", "16"], "--loraplus-ratio applies to lora, dora, vera"),
        (["--method", "vera", "--init", "pissa"], "--init pissa applies to --method lora"),
        (["--method", "dora", "--init", "olora"], "DoraConfig.init must be one of"),
    ],
)
def test_bad_method_options_stop_with_one_line(tmp_path, tiny_model, capsys, extra, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        finetune.main(finetune_argv("mimic-mp", tmp_path / "no-data-read", tiny_model, out, *extra))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()

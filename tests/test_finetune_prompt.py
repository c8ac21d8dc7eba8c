"""`tasks.finetune --method prefix|prompt` and `tasks.predict` end to end on synthetic MIMIC-layout files.

The tiny random BERT of test_finetune (2 layers, hidden 32, 2 heads) keeps each run to seconds.
Invariants: the trainable count is the formula (prefix P·L·2·H, prompt P·H, plus the head), the
saved adapter is PEFT's layout with a manifest whose provenance and base fingerprint match the run,
the base is unchanged by training (fingerprint before == after == the fresh base's), the adapter
reproduces the test metrics through tasks.predict and verifies in tasks.audit, and a length the
position table cannot hold with the virtual tokens is refused before training.
"""

import csv
import json
from pathlib import Path

import pytest
from cli_runs import run_finetune, run_predict
from safetensors.torch import load_file, save_file
from synthetic_tasks import write_conll, write_mimic

from minipeft import fingerprint
from minipeft.prompt_io import load_prompt
from models import load_pretrained, load_tokenizer
from models.assets import sha256_file
from tasks import audit, finetune, predict
from tasks.metrics import classification_metrics
from tasks.verify_manifest import verify

P, LAYERS, HIDDEN = 4, 2, 32
PEFT_TYPE = {"prefix": "PREFIX_TUNING", "prompt": "PROMPT_TUNING"}


@pytest.fixture(scope="module")
def tiny_model(make_tiny_model):
    """conftest's tiny BERT with a 64-position table (the virtual-token length check needs a short one)."""
    return make_tiny_model(hidden_size=HIDDEN, num_hidden_layers=LAYERS, max_position_embeddings=64)


@pytest.mark.slow  # several training runs or a subprocess: 2-5 s on an idle CPU
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_mimic_run_saves_a_verified_adapter_that_predict_reproduces(tmp_path, tiny_model, method, capsys):
    data_dir = write_mimic(tmp_path / "data", "mp")
    out = tmp_path / "run"
    doc = run_finetune(
        "mimic-mp",
        data_dir,
        tiny_model,
        out,
        "--method",
        method,
        "--num-virtual-tokens",
        str(P),
        "--lr",
        "3e-3",
    )
    table = P * (LAYERS * 2 * HIDDEN if method == "prefix" else HIDDEN)
    assert doc["trainable_params"] == table + HIDDEN * 2 + 2  # virtual tokens + classifier
    assert doc["hyperparameters"]["num_virtual_tokens"] == P and doc["hyperparameters"]["lr"] == 3e-3

    adapter = out / "adapter"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["peft_type"] == PEFT_TYPE[method] and cfg["num_virtual_tokens"] == P
    assert cfg["base_model_name_or_path"] == str(tiny_model)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    assert tensors["prompt_embeddings"].numel() == table
    manifest = json.loads((adapter / "adapter_manifest.json").read_text())
    files = manifest["provenance"]["data_files"]
    assert files and all(sha256_file(Path(f)) == h for f, h in files.items())
    assert manifest["provenance"]["metrics"]["test"] == doc["test"]
    assert verify(adapter) == []  # the stdlib-only checker agrees

    # the base is bit-identical: the loop's before/after, and a fresh base under the saved adapter
    result = json.loads((out / "result.json").read_text())["result"]
    assert result["fingerprint_before"] == result["fingerprint_after"] == manifest["base_fingerprint"]
    net = load_prompt(load_pretrained(tiny_model, head="sequence-classification", num_labels=2), adapter)
    assert fingerprint(net) == manifest["base_fingerprint"]

    pred_file = tmp_path / "pred.csv"
    run_predict(adapter, None, data_dir / "test.csv", pred_file)  # base model: the one task.json records
    with open(data_dir / "test.csv", newline="") as f:
        test = list(csv.DictReader(f))
    gold = {r["id"]: r["hospital_expire_flag"] for r in test}
    with open(pred_file, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == list(gold)
    assert sum(r["label"] == gold[r["id"]] for r in rows) / len(rows) == pytest.approx(
        doc["test"]["accuracy"]
    )
    tok = load_tokenizer(tiny_model)
    ids, _ = tok.encode_lists([r["text"] for r in test], max_length=48)
    probs = predict.predict_probs(net.eval(), ids, tok.pad_id, 4, "cpu", progress=False)
    m = classification_metrics([int(gold[k]) for k in gold], probs.numpy())
    assert m["roc_auc"] == pytest.approx(doc["test"]["roc_auc"], abs=1e-9)

    rep = audit.build_report(tiny_model, adapter)  # tasks.audit --adapter on it
    assert rep["adapter_check"]["verified"] and not rep["adapter_check"]["base_mismatch"]
    assert rep["summary"]["adapter"] == table and rep["totals"]["parameter:prompt"]["numel"] == table
    assert rep["base_fingerprint"] == manifest["base_fingerprint"]

    tensors["prompt_embeddings"][0, 0] += 1.0  # tampered table: predict refuses it
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    assert verify(adapter) != []
    with pytest.raises(SystemExit) as e:
        run_predict(adapter, None, data_dir / "test.csv", tmp_path / "p2.csv")
    assert e.value.code == 2 and "prompt_embeddings does not match its SHA-256" in capsys.readouterr().err


def test_prompt_tuning_token_classification_runs_on_conll(tmp_path, tiny_model):
    out = tmp_path / "run"
    doc = run_finetune(
        "i2b2-2010",
        write_conll(tmp_path / "data"),
        tiny_model,
        out,
        "--method",
        "prompt",
        "--num-virtual-tokens",
        str(P),
    )
    assert 0.0 <= doc["test"]["entity_f1"] <= 1.0
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["task_type"] == "TOKEN_CLS"


def test_virtual_tokens_beyond_the_position_table_are_refused(tmp_path, tiny_model):
    with pytest.raises(
        ValueError, match=r"--max-length 62 \+ --num-virtual-tokens 4 = 66 .*use --max-length 60"
    ):
        run_finetune(
            "mimic-mp",
            write_mimic(tmp_path / "d", "mp"),
            tiny_model,
            tmp_path / "run",
            "--method",
            "prefix",
            "--num-virtual-tokens",
            "4",
            "--max-length",
            "62",
        )
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # the same length is fine without virtual tokens (the limit is theirs, not the text's)
    finetune.check_max_length(tiny_model, 62, 0)

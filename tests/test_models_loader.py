"""Loader quirks on small random checkpoints written here as safetensors files."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from small_models import SMALL_BERT

from models import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    load_pretrained,
    save_pretrained,
)

SMALL = {**SMALL_BERT, "model_type": "bert"}


def write(folder, tensors, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or SMALL))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def base():
    """A random BertModel and its state dict keyed as BertModel saves it (no prefix)."""
    model = BertModel(BertConfig.from_dict(SMALL)).eval()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_plain_bertmodel_file(tmp_path, base):
    model, sd = base
    loaded = load_pretrained(write(tmp_path / "m", sd))
    same_weights(loaded, model)
    assert loaded.name_or_path == str(tmp_path / "m")


def test_prefix_gamma_beta_position_ids_and_cls_heads(tmp_path, base):
    """`bert.` prefix, LayerNorm.gamma/beta, position_ids and cls.* all map onto the same model."""
    model, sd = base
    quirky = {}
    for k, v in sd.items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        quirky["bert." + k] = v
    quirky["bert.embeddings.position_ids"] = torch.arange(64)[None]
    quirky["cls.predictions.bias"] = torch.zeros(99)
    quirky["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    same_weights(load_pretrained(write(tmp_path / "m", quirky)), model)


def test_fresh_head_is_seeded_normal_and_logged(tmp_path, base, caplog):
    _, sd = base
    folder = write(tmp_path / "m", sd, {**SMALL, "initializer_range": 0.5})
    with caplog.at_level(logging.INFO, logger="models.loader"):
        m = load_pretrained(folder, head="sequence-classification", num_labels=3, seed=7)
    assert "initialised fresh" in caplog.text and not m.head_loaded
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing wrong yet
    want = torch.empty(3, 32).normal_(0.0, 0.5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(m.classifier.weight, want, rtol=0, atol=0)
    assert torch.equal(m.classifier.bias, torch.zeros(3))


def _warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_fresh_head_warns_only_when_used_untrained(tmp_path, base, caplog):
    _, sd = base
    folder = write(tmp_path / "m", sd)
    ids = {"input_ids": torch.tensor([[2, 5, 7, 3]])}
    with caplog.at_level(logging.WARNING, logger="models.loader"):
        used = load_pretrained(folder, head="sequence-classification", num_labels=2)
        used.train()(**ids)  # training it: no warning
        assert _warnings_of(caplog) == []
        used.eval()(**ids), used(**ids)  # predicting with the untrained head: one warning
        assert len(_warnings_of(caplog)) == 1 and "used untrained" in _warnings_of(caplog)[0]

        caplog.clear()
        loaded = load_pretrained(folder, head="sequence-classification", num_labels=2)
        trained = {k: torch.randn_like(v) for k, v in loaded.classifier.state_dict().items()}
        loaded.classifier.load_state_dict(trained)  # what load_adapter does to a saved head
        loaded.eval()(**ids)
        stepped = load_pretrained(folder, head="sequence-classification", num_labels=2)
        stepped.train()(**ids).sum().backward()
        torch.optim.SGD(stepped.classifier.parameters(), lr=0.1).step()  # one training step
        stepped.eval()(**ids)
        redrawn = load_pretrained(folder, head="sequence-classification", warn_untrained_head=False)
        redrawn.eval()(**ids)  # a sweep that draws its own head per run says so
    assert _warnings_of(caplog) == []


def test_saved_head_loaded_and_num_labels_from_config(tmp_path, base):
    _, sd = base
    head = {"classifier.weight": torch.randn(4, 32), "classifier.bias": torch.randn(4)}
    cfg = {**SMALL, "id2label": {str(i): f"L{i}" for i in range(4)}}
    folder = write(tmp_path / "m", {**{"bert." + k: v for k, v in sd.items()}, **head}, cfg)
    m = load_pretrained(folder, head="sequence-classification")  # num_labels from id2label: 4
    assert m.head_loaded and m.num_labels == 4 and m.config.id2label[3] == "L3"
    torch.testing.assert_close(m.classifier.weight, head["classifier.weight"])
    m2 = load_pretrained(folder, head="sequence-classification", num_labels=2)  # argument wins
    assert m2.num_labels == 2 and not m2.head_loaded


def test_num_labels_defaults_to_two(tmp_path, base):
    assert load_pretrained(write(tmp_path / "m", base[1]), head="sequence-classification").num_labels == 2


def test_token_classification_ignores_pooler(tmp_path, base):
    model, sd = base
    m = load_pretrained(write(tmp_path / "m", sd), head="token-classification", num_labels=5)
    assert isinstance(m, BertForTokenClassification)
    want = {k: v for k, v in sd.items() if not k.startswith("pooler.")}
    for k, v in want.items():
        torch.testing.assert_close(m.bert.state_dict()[k], v, rtol=0, atol=0)


def test_missing_key_named(tmp_path, base):
    sd = dict(base[1])
    del sd["encoder.layer.1.output.dense.bias"]
    with pytest.raises(
        KeyError, match=r"model\.safetensors.*encoder\.layer\.1\.output\.dense\.bias.*\(32,\)"
    ):
        load_pretrained(write(tmp_path / "m", sd))


def test_unexpected_key_named(tmp_path, base):
    sd = {**base[1], "encoder.layer.0.attention.self.rotary.weight": torch.zeros(3)}
    with pytest.raises(KeyError, match="rotary"):
        load_pretrained(write(tmp_path / "m", sd))


def test_shape_mismatch_named(tmp_path, base):
    sd = {**base[1], "embeddings.word_embeddings.weight": torch.zeros(100, 32)}
    with pytest.raises(ValueError, match=r"word_embeddings\.weight.*\(100, 32\).*\(99, 32\)"):
        load_pretrained(write(tmp_path / "m", sd))


def test_truncated_safetensors_named(tmp_path, base):
    folder = write(tmp_path / "m", base[1])
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated"):
        load_pretrained(folder)
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_pretrained(folder)


def test_missing_files_named(tmp_path, base):
    folder = write(tmp_path / "m", base[1])
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(folder)
    folder = write(tmp_path / "n", base[1])
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_pretrained(tmp_path / "absent")


def test_unknown_head_refused(tmp_path, base):
    with pytest.raises(ValueError, match="masked-lm"):
        load_pretrained(write(tmp_path / "m", base[1]), head="masked-lm")


@pytest.mark.parametrize(
    "cls, keys_prefix",
    [(BertModel, ""), (BertForSequenceClassification, "bert."), (BertForTokenClassification, "bert.")],
)
def test_save_roundtrip_and_layout(tmp_path, cls, keys_prefix):
    cfg = BertConfig.from_dict(SMALL)
    model = (cls(cfg) if cls is BertModel else cls(cfg, num_labels=3)).eval()
    out = save_pretrained(model, tmp_path / "out")
    conf = json.loads((out / "config.json").read_text())
    assert conf["architectures"] == [cls.__name__] and conf["model_type"] == "bert"
    keys = load_file(str(out / "model.safetensors")).keys()
    assert all(k.startswith(keys_prefix) or k.startswith("classifier.") for k in keys)
    head = {
        BertModel: None,
        BertForSequenceClassification: "sequence-classification",
        BertForTokenClassification: "token-classification",
    }[cls]
    if head:
        assert len(conf["id2label"]) == 3
    same_weights(load_pretrained(out, head=head), model)
    assert not list(out.glob(".*tmp*"))  # no temporary files left


def test_save_refuses_injected_keys_and_copies_tokenizer(tmp_path):
    model = BertModel(BertConfig.from_dict(SMALL))
    tokdir = tmp_path / "tok"
    tokdir.mkdir()
    (tokdir / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\n")
    out = save_pretrained(model, tmp_path / "out", tokenizer_dir=tokdir)
    assert (out / "vocab.txt").read_text() == "[PAD]\n[CLS]\n[SEP]\n"
    model.encoder.layer[0].attention.self.query.register_parameter(
        "lora_A", torch.nn.Parameter(torch.zeros(2, 32))
    )
    with pytest.raises(ValueError, match="lora_A"):
        save_pretrained(model, tmp_path / "out2")


def test_save_writes_the_weights_dtype_not_a_stale_one(tmp_path):
    cfg = BertConfig.from_dict({**SMALL, "torch_dtype": "float16"})  # as an old checkpoint says
    model = BertModel(cfg).to(torch.bfloat16)
    conf = json.loads((save_pretrained(model, tmp_path / "out") / "config.json").read_text())
    assert conf["dtype"] == "bfloat16" and "torch_dtype" not in conf
    back = load_pretrained(tmp_path / "out", dtype=torch.bfloat16)
    assert {p.dtype for p in back.parameters()} == {torch.bfloat16}
    assert (
        json.loads((save_pretrained(BertModel(cfg), tmp_path / "o2") / "config.json").read_text())["dtype"]
        == "float32"
    )


def test_dtype_argument(tmp_path, base):
    m = load_pretrained(write(tmp_path / "m", base[1]), dtype=torch.bfloat16)
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}


def test_bare_encoder_from_head_checkpoint_ignores_classifier(tmp_path, base):
    model, sd = base
    head = {"classifier.weight": torch.randn(2, 32), "classifier.bias": torch.randn(2)}
    folder = write(tmp_path / "m", {**{"bert." + k: v for k, v in sd.items()}, **head})
    same_weights(load_pretrained(folder), model)


def test_checkpoint_without_pooler_gets_a_seeded_fresh_pooler(tmp_path, base, caplog):
    """As HF does for a file saved by its token classifier: the encoder's tensors load unchanged, the
    pooler is N(0, initializer_range) from the seed with zero bias, and the user is warned."""
    model, sd = base
    no_pooler = {k: v for k, v in sd.items() if not k.startswith("pooler.")}
    folder = write(tmp_path / "m", no_pooler)
    with caplog.at_level(logging.WARNING, logger="models.loader"):
        bare = load_pretrained(folder, seed=7)
    assert "pooler initialised fresh" in caplog.text
    for k, v in no_pooler.items():
        torch.testing.assert_close(bare.state_dict()[k], v, rtol=0, atol=0)
    gen = torch.Generator().manual_seed(7)
    want_w = torch.empty(32, 32).normal_(0.0, BertConfig.from_dict(SMALL).initializer_range, generator=gen)
    torch.testing.assert_close(bare.pooler.dense.weight, want_w, rtol=0, atol=0)
    assert torch.count_nonzero(bare.pooler.dense.bias) == 0
    ids = torch.randint(1, 99, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            bare.eval()(ids).last_hidden_state, model(ids).last_hidden_state, rtol=0, atol=0
        )
    clf = load_pretrained(folder, head="sequence-classification", seed=7)
    torch.testing.assert_close(clf.bert.pooler.dense.weight, want_w, rtol=0, atol=0)


def test_partial_pooler_is_still_refused(tmp_path, base):
    sd = dict(base[1])
    del sd["pooler.dense.bias"]
    with pytest.raises(KeyError, match=r"pooler\.dense\.bias"):
        load_pretrained(write(tmp_path / "m", sd))

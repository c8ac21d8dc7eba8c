"""The training loop (minipeft.training.train) on a toy embedding-bag classifier, CPU, seconds."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minipeft.training import TrainConfig, evaluate, seed_everything, train
from minipeft.training.memory import SavedTensorsMeter
from minipeft.training.optim import build_adamw, linear_warmup_factor, warmup_steps


class Toy(nn.Module):
    """Masked mean of embeddings -> LayerNorm -> dropout -> linear; `frozen` never trains."""

    def __init__(self, vocab=40, dim=8, dropout=0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, 2)
        self.frozen = nn.Linear(dim, dim)
        self.frozen.requires_grad_(False)

    def forward(self, input_ids, attention_mask):
        e = self.emb(input_ids) * attention_mask[..., None]  # (batch, seq, dim)
        h = e.sum(1) / attention_mask.sum(1, keepdim=True)  # (batch, dim)
        return self.head(self.drop(self.norm(h + self.frozen(h))))  # (batch, 2)


def make_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 40, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist()
        out.append({"input_ids": ids, "label": int(sum(i < 20 for i in ids) * 2 > len(ids))})
    return out


TRAIN, VAL = make_data(48, 1), make_data(16, 2)


def loss_fn(model, batch):
    return F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["label"])


def eval_fn(model, batches):
    losses, n = 0.0, 0
    for b in batches:
        losses += F.cross_entropy(
            model(b["input_ids"], b["attention_mask"]), b["label"], reduction="sum"
        ).item()
        n += len(b["label"])
    return {"neg_loss": -losses / n}


CFG = TrainConfig(
    epochs=3, lr=5e-2, batch_size=4, seed=3, select_metric="neg_loss", progress=False, patience=None
)


def run(cfg=CFG, dropout=0.1, **kw):
    seed_everything(0)
    model = Toy(dropout=dropout)
    result = train(model, TRAIN, VAL, loss_fn, eval_fn, cfg, **kw)
    return model, result


def same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_tensors_and_training_moves_them():
    m1, r1 = run()
    m2, r2 = run()
    assert same_tensors(m1, m2)
    seed_everything(0)
    assert not torch.equal(Toy(dropout=0.1).head.weight, m1.head.weight)
    m3, _ = run(TrainConfig(**{**CFG.__dict__, "seed": 4}))
    assert not same_tensors(m1, m3), "another seed must change data order and dropout"


def test_frozen_params_untouched_and_not_in_optimizer():
    seed_everything(0)
    model = Toy()
    before = model.frozen.weight.clone()
    opt = build_adamw(model, 1e-3, 0.01)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.frozen.weight) not in in_opt and id(model.head.weight) in in_opt
    train(model, TRAIN, VAL, loss_fn, eval_fn, CFG)
    assert torch.equal(model.frozen.weight, before)


def test_no_weight_decay_on_biases_vectors_and_norm_layers():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm((2, 2)), nn.Embedding(3, 4))
    model[1].bias.requires_grad_(False)
    decay, plain = build_adamw(model, 1e-3, 0.01).param_groups
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    # the LayerNorm weight here is 2-D: it is excluded by module type, not by shape
    assert {id(p) for p in plain["params"]} == {id(model[0].bias), id(model[1].weight)}
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}


def test_adamw_is_fused_on_cpu_and_follows_the_adamw_formula():
    """Three steps of the optimiser the loop builds (fused kernel on a CPU) against AdamW written out:
    m = β1 m + (1-β1) g, v = β2 v + (1-β2) g², p -= lr·(m/(1-β1^t)) / (√(v/(1-β2^t)) + eps) + lr·wd·p."""
    model = nn.Sequential(nn.Linear(5, 3), nn.LayerNorm(3))
    opt = build_adamw(model, 1e-2, 0.1)
    assert all(g["fused"] for g in opt.param_groups)
    ref = [
        (p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p), g["weight_decay"])
        for g in opt.param_groups
        for p in g["params"]
    ]
    params = [p for g in opt.param_groups for p in g["params"]]
    gen = torch.Generator().manual_seed(1)
    for t in range(1, 4):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for (w, m, v, wd), g in zip(ref, grads):
            w.mul_(1 - 1e-2 * wd)
            m.mul_(0.9).add_(0.1 * g)
            v.mul_(0.999).add_(0.001 * g * g)
            w.sub_(1e-2 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8))
    for p, (w, *_) in zip(params, ref):
        torch.testing.assert_close(p.detach(), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("total,ratio", [(100, 0.06), (7, 0.06), (10, 0.0)])
def test_warmup_schedule_matches_formula(total, ratio):
    w = math.ceil(ratio * total)
    for s in range(total + 1):
        want = s / w if s < w else (total - s) / (total - w)
        assert linear_warmup_factor(s, total, warmup_steps(total, ratio)) == pytest.approx(max(0.0, want))


def test_learning_rates_used_by_the_loop_follow_hf_linear_schedule():
    transformers = pytest.importorskip("transformers")
    lrs = []
    run(callback=lambda info: lrs.append(info["lr"]))
    total = len(lrs)
    assert total == CFG.epochs * math.ceil(len(TRAIN) / CFG.batch_size)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=CFG.lr)
    sched = transformers.get_linear_schedule_with_warmup(opt, math.ceil(0.06 * total), total)
    ref = []
    for _ in range(total):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_grad_accumulation_equals_bigger_batch():
    """batch 2 x accum 2 and batch 4 x accum 1 see the same examples per step (the sampler draws
    batch_size*grad_accum) and the loop weights each micro-batch mean by its share, so without
    dropout only float summation order differs: tolerance 1e-6."""
    m_big, _ = run(CFG, dropout=0.0)
    m_acc, _ = run(TrainConfig(**{**CFG.__dict__, "batch_size": 2, "grad_accum": 2}), dropout=0.0)
    for (k, a), b in zip(m_big.state_dict().items(), m_acc.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k


def test_best_epoch_is_restored_and_patience_stops():
    scores = iter([0.1, 0.9, 0.3, 0.2, 0.5])
    snapshots = []

    def scripted_eval(model, batches):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"auroc": next(scores)}

    seed_everything(0)
    model = Toy()
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 5, "select_metric": "auroc", "patience": 2})
    r = train(model, TRAIN, VAL, loss_fn, scripted_eval, cfg)
    # epochs count from 1: the second evaluation (0.9) is epoch 2; epochs 3 and 4 did not improve
    assert r.best_epoch == 2 and r.best_metric == 0.9
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4] and r.history[1]["metrics"] == {"auroc": 0.9}
    assert r.stopped_early and r.warnings == []
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    assert not torch.equal(snapshots[1]["head.weight"], snapshots[3]["head.weight"])


@pytest.mark.parametrize("checkpoint_every", [0, 5])
def test_resume_after_kill_gives_uninterrupted_tensors(tmp_path, checkpoint_every):
    cfg = TrainConfig(**{**CFG.__dict__, "checkpoint_every": checkpoint_every})
    ref, ref_r = run(cfg, out_dir=tmp_path / "ref")

    def killer(info):
        if info["step"] == 19:  # mid-epoch 2 (12 steps per epoch)
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run(cfg, out_dir=tmp_path / "run", callback=killer)
    assert (tmp_path / "run" / "checkpoint.json").exists()
    torch.manual_seed(123)  # a restarted process has other RNG states; the checkpoint restores them
    resumed, r = run(cfg, out_dir=tmp_path / "run")
    assert r.resumed_from_step == (15 if checkpoint_every else 12)
    assert same_tensors(ref, resumed)
    assert r.history == ref_r.history and r.steps == ref_r.steps
    assert not list((tmp_path / "run").glob("*.safetensors")), "finished runs drop their checkpoints"


def test_resume_with_other_config_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(
            TrainConfig(**{**CFG.__dict__, "checkpoint_every": 1}),
            out_dir=tmp_path,
            callback=lambda info: (_ for _ in ()).throw(KeyboardInterrupt()),
        )
    with pytest.raises(ValueError, match="another config"):
        run(TrainConfig(**{**CFG.__dict__, "lr": 1e-3}), out_dir=tmp_path)


def test_log_lines_are_json_and_result_keeps_provenance(tmp_path):
    prov = {"task": "toy", "data_sha256": "ab" * 32}
    _, r = run(out_dir=tmp_path, provenance=prov)
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("eval") == CFG.epochs
    steps = [e for e in events if e["event"] == "step"]
    assert all(
        {"loss", "lr", "seconds", "samples_per_s", "saved_bytes_max", "peak_rss_bytes"} <= e.keys()
        for e in steps
    )
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["provenance"] == prov and doc["result"]["steps"] == r.steps


def test_saved_tensor_meter_counts_unique_storages_and_skips_params():
    lin = nn.Linear(6, 6, bias=False)
    x = torch.randn(5, 6, requires_grad=True)
    meter = SavedTensorsMeter(lin)
    with meter.measure():
        y = lin(x)  # saves x (the weight is a parameter: skipped)
        z = y * y[:, :3].sum(1, keepdim=True)  # saves y (and the sum), y's view shares y's storage
    assert meter.bytes == (5 * 6 + 5 * 6 + 5 * 1) * 4
    z.sum().backward()


def test_evaluate_restores_mode_and_grad_checkpointing_flag():
    seed_everything(0)
    model = Toy()
    model.train()
    out = evaluate(model, VAL, eval_fn, batch_size=5)
    assert model.training and set(out) == {"neg_loss"}
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        train(
            model, TRAIN, VAL, loss_fn, eval_fn, TrainConfig(**{**CFG.__dict__, "grad_checkpointing": True})
        )
    seen = []
    model.gradient_checkpointing = False
    train(
        model,
        TRAIN,
        VAL,
        loss_fn,
        lambda m, b: seen.append(m.gradient_checkpointing) or eval_fn(m, b),
        TrainConfig(**{**CFG.__dict__, "epochs": 1, "grad_checkpointing": True}),
    )
    assert seen == [True] and model.gradient_checkpointing is False


def test_adapter_run_keeps_base_fingerprint_and_fails_loudly_if_base_changes():
    from minipeft import LoraConfig, fingerprint, inject

    seed_everything(0)
    model = Toy()
    inject(model, LoraConfig(r=2, alpha=2, targets=("frozen",), modules_to_save=("head",)))
    before = fingerprint(model)
    r = train(model, TRAIN, VAL, loss_fn, eval_fn, CFG)
    assert r.fingerprint_before == r.fingerprint_after == before
    assert r.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)

    def tamper(info):  # a bug that writes into a frozen base weight
        with torch.no_grad():
            model.emb.weight[0, 0] += 1.0

    with pytest.raises(RuntimeError, match="base model changed"):
        train(model, TRAIN, VAL, loss_fn, eval_fn, CFG, callback=tamper)


def test_full_fine_tuning_records_both_fingerprints():
    _, r = run()
    assert r.fingerprint_before is not None and r.fingerprint_before != r.fingerprint_after

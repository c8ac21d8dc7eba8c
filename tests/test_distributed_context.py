"""The distributed hooks in one process: DistContext with one rank is the identity, shards and their
weights cover every example once with DDP's mean in mind, sharded evaluation gathers every rank's
outputs and scores them once on rank 0 (two ranks simulated by patching the collectives), and the
timeout comes from MINIPEFT_DIST_TIMEOUT. The real 2-process runs are in test_distributed.py."""

import pytest
import torch

from minipeft.training import distributed
from minipeft.training.distributed import DistContext


def test_single_process_context_is_the_identity():
    ctx = DistContext()
    model = torch.nn.Linear(2, 2)
    assert not ctx.enabled and ctx.is_main and ctx.wrap(model) is model
    assert ctx.mean(1.5) == 1.5 and torch.equal(ctx.gather_rows(torch.ones(3, 2)), torch.ones(3, 2))
    # one process: the loop's old weights |micro| / N
    assert list(ctx.micro_batches(list(range(7)), 3, model)) == [
        ([0, 1, 2], 3 / 7),
        ([3, 4, 5], 3 / 7),
        ([6], 1 / 7),
    ]


@pytest.mark.parametrize("n,micro", [(10, 2), (7, 3), (1, 4), (3, 1)])
def test_shards_weights_sum_to_world_times_one(n, micro):
    """Every index lands on exactly one rank; each rank's weights sum to W·|shard|/N, so DDP's mean
    over ranks of Σ weight·∇mean(micro) is the gradient of the mean over all N examples."""
    world, model = 2, torch.nn.Linear(2, 2)
    seen, total = [], 0.0
    for rank in range(world):
        ctx = DistContext(rank=rank, world_size=world, backend="gloo")
        out = list(ctx.micro_batches(list(range(100, 100 + n)), micro, model))
        assert out, "every rank must join the step's gradient reduction"
        real = [(m, w) for m, w in out if w > 0]
        seen += [i for m, _ in real for i in m]
        total += sum(w for _, w in real)
        assert all(len(m) <= micro for m, _ in out)
    assert sorted(seen) == list(range(100, 100 + n))
    assert total == pytest.approx(world)  # Σ_r Σ W|micro|/N = W


def _toy_eval_setup():
    """A toy classifier, 13 examples and 5 length-sorted batches of them."""
    from minipeft.training import PadCollate

    g = torch.Generator().manual_seed(0)
    emb = torch.nn.Embedding(30, 2)

    def model(input_ids, attention_mask, token_type_ids=None):
        return (emb(input_ids) * attention_mask[..., None]).sum(1)  # (batch, 2)

    examples = [
        {"input_ids": torch.randint(1, 30, (int(n),), generator=g).tolist(), "label": i % 2}
        for i, n in enumerate(torch.randint(2, 9, (13,), generator=g))
    ]
    collate = PadCollate()
    batches = [[12, 11, 10], [9, 8, 7], [6, 5, 4], [3, 2, 1], [0]]
    return model, batches, lambda idx: collate([examples[i] for i in idx])


def _two_ranks(monkeypatch, run):
    """Call run() as rank 1 then rank 0 of a simulated 2-process job (collectives patched):
    gather_object hands rank 0 both shares, broadcast_object_list keeps rank 0's object."""
    shares, results = {}, {}

    def gather_object(obj, object_gather_list=None, dst=0):
        shares[rank] = obj
        if object_gather_list is not None:
            object_gather_list[:] = [shares[0], shares[1]]

    monkeypatch.setattr(distributed.dist, "gather_object", gather_object)
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", lambda box, src, device=None: None)
    for rank in (1, 0):
        ctx = DistContext(rank=rank, world_size=2, backend="gloo")
        monkeypatch.setattr(distributed, "_CONTEXT", ctx)  # what context() returns
        results[rank] = run()
    return shares, results


def test_sharded_evaluation_scores_the_gathered_outputs_once(monkeypatch):
    """Each rank predicts its share of 5 length-sorted batches (B[r::2]); rank 0 gathers the outputs,
    restores the batch order and scores them once: tasks.objective.seq_cls_eval (AUROC, F1, loss) then
    equals the same Evaluator over the whole set in one process, to the last bit."""
    from minipeft.training import Evaluator
    from minipeft.training.evaluation import run_eval
    from tasks.objective import seq_cls_eval

    model, batches, make = _toy_eval_setup()
    predicted, scored = [], []

    def predict(m, batch):
        predicted.append((distributed.context().rank, len(batch["label"])))
        return seq_cls_eval.predict(m, batch)

    def score(outputs):
        scored.append((distributed.context().rank, len(outputs)))
        return seq_cls_eval.score(outputs)

    counting = Evaluator(predict, score)
    with torch.no_grad():
        whole = seq_cls_eval(model, (make(b) for b in batches))
        shares, got = _two_ranks(monkeypatch, lambda: run_eval(counting, model, batches, make))
    assert [g for g, _ in shares[0]] == [0, 2, 4] and [g for g, _ in shares[1]] == [1, 3]
    assert predicted == [(1, 3), (1, 3), (0, 3), (0, 3), (0, 1)]  # rank 1: batches 1,3; rank 0: 0,2,4
    assert scored == [(0, 5)]  # once, on rank 0, over all 5 batches
    assert got[0] == whole and 0 < whole["roc_auc"] < 1


def test_plain_eval_fn_runs_whole_set_on_every_rank(monkeypatch):
    """A plain callable cannot be split: every rank evaluates all batches, rank 0's metrics win."""
    from minipeft.training.evaluation import run_eval

    model, batches, make = _toy_eval_setup()
    seen = []

    def eval_fn(m, stream):
        n = sum(len(b["label"]) for b in stream)
        seen.append(n)
        return {"n": n}

    with torch.no_grad():
        _, got = _two_ranks(monkeypatch, lambda: run_eval(eval_fn, model, batches, make))
    assert seen == [13, 13] and got[0] == {"n": 13}


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINIPEFT_DIST_TIMEOUT", "12.5")
    assert distributed.timeout_seconds() == 12.5
    monkeypatch.setenv("MINIPEFT_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MINIPEFT_DIST_TIMEOUT"):
        distributed.timeout_seconds()

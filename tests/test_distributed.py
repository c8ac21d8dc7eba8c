"""`torchrun` with 2 CPU processes (gloo on 127.0.0.1) against one process, through tasks.finetune.

The same file is the worker that torchrun starts (`python tests/test_distributed.py REPORT FAIL_RANK
FAIL_STEP -- <finetune args>`): it records, with a Python audit hook, every file its process creates,
opens for writing, renames or deletes under the run directory, runs tasks.finetune.main, optionally
raises on one rank at one optimiser step, and then checks distributed evaluation and gather_rows
against the full validation set. Invariants: the 2-process adapter equals the 1-process one with
the same global batch and seed (dropout 0; float32 sums in another order, so within 1e-6, see
TOL), rank 1 wrote nothing, the metrics are computed once on rank 0 from every rank's predictions,
a failing rank brings the job down, and a killed job resumes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # worker: torchrun starts this file as a script
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pytest  # noqa: E402  (after the sys.path set-up above)
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from minipeft.training import distributed  # noqa: E402
from minipeft.training.distributed import DistContext  # noqa: E402

# 21 training examples, global batch 10 = micro 2 × accum 5: shards 5/5 (micro-batches 2,2,1 with
# no_sync before the last) and a last batch of 1 that leaves rank 1 empty (weight-0 stand-in).
ARGS = [
    "--task",
    "mimic-mp",
    "--method",
    "lora",
    "--dropout",
    "0",
    "--epochs",
    "2",
    "--batch-size",
    "2",
    "--grad-accum",
    "5",
    "--max-train-examples",
    "21",
    "--max-length",
    "48",
    "--lr",
    "3e-3",
    "--seed",
    "5",
    "--checkpoint-every",
    "1",
    "--no-progress",
]
# float32 gradients summed per rank then across ranks instead of in one pass: ~1e-7 relative per
# step; 6 AdamW steps of lr 3e-3 on O(0.01) LoRA weights stay far below 1e-6 (measured 3e-8)
TOL = 1e-6


# ------------------------------------------------------------------ torchrun end to end
@pytest.fixture(scope="module")
def tiny_model(make_tiny_model):
    """conftest's tiny BERT without dropout."""
    return make_tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def single(tiny_model, tmp_path_factory):
    """The reference: the same run in this process, no torchrun."""
    from synthetic_tasks import write_mimic

    from tasks import finetune

    root = tmp_path_factory.mktemp("dist")
    data = write_mimic(root / "data", "mp")
    out = root / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1); restored below
    try:
        t0 = time.perf_counter()
        finetune.main([*ARGS, "--data-dir", str(data), "--model", str(tiny_model), "--out", str(out)])
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "data": data, "out": out, "seconds": seconds}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(
    report: Path,
    finetune_args: list[str],
    fail_rank=-1,
    fail_step=-1,
    fail="raise",
    timeout=240,
    dist_timeout=120,
):
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), GLOO_SOCKET_IFNAME="lo", MINIPEFT_DIST_TIMEOUT=str(dist_timeout)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        __file__,
        str(report),
        str(fail_rank),
        str(fail_step),
        fail,
        "--",
        *finetune_args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return proc, time.perf_counter() - t0


def _writes(report: Path, rank: int) -> list:
    return [w for f in sorted(report.glob(f"rank{rank}-*.json")) for w in json.loads(f.read_text())["writes"]]


def _adapter(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _assert_close_adapters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a}
    print(f"max |2 processes - 1 process| over the adapter: {max(diffs.values()):.2e}")
    assert all(d <= TOL for d in diffs.values()), {k: d for k, d in diffs.items() if d > TOL}


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_two_processes_match_one_and_only_rank0_writes(single, tiny_model):
    out, report = single["root"] / "ddp", single["root"] / "report-ddp"
    proc, seconds = _torchrun(
        report, [*ARGS, "--data-dir", str(single["data"]), "--model", str(tiny_model), "--out", str(out)]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\n1 process: {single['seconds']:.1f} s in-process; torchrun 2 processes: {seconds:.1f} s wall")
    ref, got = _adapter(single["out"]), _adapter(out)
    _assert_close_adapters(ref, got)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in got.items()), (
        "lora_B starts at zero: the adapter did not train"
    )
    m1 = json.loads((single["out"] / "metrics.json").read_text())
    m2 = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):  # AUROC/F1 on the whole gathered set, not per shard
        for k, v in m1[split].items():
            assert m2[split][k] == pytest.approx(v, abs=1e-4), (split, k)
    assert m2["steps"] == m1["steps"] == 2 * 3  # global batch 10 over 21 examples: 3 steps per epoch
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    ref_log = [json.loads(x) for x in (single["out"] / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if e["event"] == "step"]
    assert losses == pytest.approx([e["loss"] for e in ref_log if e["event"] == "step"], abs=1e-5)
    # files: the same set as one process, all written by rank 0
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    assert files(out) == files(single["out"])
    assert _writes(report, 1) == [] and _writes(report, 0)
    assert {Path(w[1]).name for w in _writes(report, 0)} >= {
        "metrics.json",
        "log.jsonl",
        "adapter_model.safetensors",
    }
    # the worker's own checks of sharded evaluate() and gather_rows, per rank
    for rank in (0, 1):
        doc = json.loads(next(report.glob(f"rank{rank}-*.json")).read_text())
        assert doc["gather_rows"] == [[0.0] * 3, [1.0] * 3, [1.0] * 3]
        assert doc["eval_batches_local"] == (2 if rank == 0 else 1)  # 8 examples: batches 3,3,2
        assert doc["eval_score_calls"] == ([8] if rank == 0 else [])  # scored once, on rank 0
        assert doc["eval"]["n"] == 8 and doc["eval"]["loss"] == pytest.approx(
            doc["eval_local_full"]["loss"], abs=1e-6
        )
        assert doc["reduced_numel"] == doc["trainable_numel"] > 0
        assert doc["reduced_numel"] < doc["total_numel"] / 10


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_failing_rank_stops_the_job_and_the_job_resumes(single, tiny_model):
    out, report = single["root"] / "killed", single["root"] / "report-killed"
    args = [*ARGS, "--data-dir", str(single["data"]), "--model", str(tiny_model), "--out", str(out)]
    proc, seconds = _torchrun(report, args, fail_rank=1, fail_step=4, timeout=180)
    print(f"\nfailing job ended after {seconds:.1f} s with exit code {proc.returncode}")
    assert proc.returncode != 0 and "injected failure on rank 1 at step 4" in proc.stderr
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 4
    proc, _ = _torchrun(report, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_close_adapters(_adapter(single["out"]), _adapter(out))
    assert json.loads((out / "result.json").read_text())["result"]["resumed_from_step"] == 4
    assert _writes(report, 1) == [] and _writes(report, 0)


@pytest.mark.slow  # subprocesses or a real checkpoint: 10-40 s
def test_hanging_rank_times_out_instead_of_hanging_the_job(single, tiny_model):
    """Rank 1 sleeps inside step 4; rank 0 waits in the step-5 reduction until MINIPEFT_DIST_TIMEOUT
    and fails, and torchrun then stops rank 1: the job ends with an error instead of hanging."""
    out, report = single["root"] / "hung", single["root"] / "report-hung"
    args = [*ARGS, "--data-dir", str(single["data"]), "--model", str(tiny_model), "--out", str(out)]
    limit = 20
    proc, seconds = _torchrun(
        report, args, fail_rank=1, fail_step=4, fail="hang", timeout=300, dist_timeout=limit
    )
    print(f"\nhung job ended after {seconds:.1f} s with exit code {proc.returncode}")
    assert proc.returncode != 0
    assert "timed out" in proc.stderr.lower() or "timeout" in proc.stderr.lower(), proc.stderr[-3000:]
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 4


# ------------------------------------------------------------------ the worker
def _is_write(event: str, args: tuple) -> str | None:
    """The path an audited event writes to, or None."""
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2] or 0
        if (mode and any(c in mode for c in "wax+")) or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            return os.fsdecode(args[0])
    if event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "shutil.rmtree"):
        return os.fsdecode(args[1] if event == "os.rename" else args[0])
    return None


def _worker(argv: list[str]) -> None:
    report, fail_rank, fail_step, fail = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    ft_args = argv[argv.index("--") + 1 :]
    run_dir = os.path.abspath(ft_args[ft_args.index("--out") + 1])
    writes = []

    def audit(event, args):
        path = _is_write(event, args)
        if path is not None and os.path.abspath(path).startswith(run_dir):
            writes.append((event, os.path.abspath(path)))

    sys.addaudithook(audit)
    from tasks import finetune

    ctx = distributed.context()
    doc = {"rank": ctx.rank, "world": ctx.world_size}
    real_train = finetune.train

    def train(*a, **kw):
        def callback(info):
            if ctx.rank == fail_rank and info["step"] == fail_step and fail == "hang":
                time.sleep(3600)  # stuck, not dead: only the timeout can end the job
            if ctx.rank == fail_rank and info["step"] == fail_step:
                raise RuntimeError(f"injected failure on rank {ctx.rank} at step {fail_step}")

        return real_train(*a, **kw, callback=callback)

    finetune.train = train
    try:
        finetune.main(ft_args)
        if fail_rank < 0:
            doc.update(_worker_checks(ctx, ft_args))
    finally:
        report.mkdir(parents=True, exist_ok=True)
        doc["writes"] = [w for w in writes if not w[1].startswith(str(report))]
        (report / f"rank{ctx.rank}-{os.getpid()}.json").write_text(json.dumps(doc))


def _worker_checks(ctx: DistContext, ft_args: list[str]) -> dict:
    """Sharded evaluate() == the same eval on the whole set; gather_rows; what DDP reduces."""
    import torch.nn.functional as F

    from minipeft import LoraConfig, inject
    from minipeft.training import Evaluator, PadCollate, evaluate
    from models import load_pretrained, load_tokenizer

    model_dir = Path(ft_args[ft_args.index("--model") + 1])
    data_dir = Path(ft_args[ft_args.index("--data-dir") + 1])
    tok = load_tokenizer(model_dir)
    import csv

    with open(data_dir / "valid.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    enc = tok([r["text"] for r in rows], max_length=48)
    examples = [
        {"input_ids": ids[: int(m.sum())].tolist(), "label": int(r["hospital_expire_flag"])}
        for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], rows)
    ]
    torch.manual_seed(0)
    model = load_pretrained(model_dir, head="sequence-classification", num_labels=2, seed=0)
    inject(
        model,
        LoraConfig(r=2, alpha=2, dropout=0.0, targets=("query", "value"), modules_to_save=("classifier",)),
    )
    predicted, scored = [], []

    def predict(m, b):
        logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"])  # (batch, 2)
        predicted.append(len(b["label"]))
        return F.cross_entropy(logits, b["label"], reduction="sum").item(), len(b["label"])

    def score(outputs):
        n = sum(k for _, k in outputs)
        scored.append(n)
        return {"loss": sum(loss for loss, _ in outputs) / n, "n": n}

    eval_fn = Evaluator(predict, score)
    collate = PadCollate(pad_id=tok.pad_id)
    gathered = evaluate(model, examples, eval_fn, batch_size=3, collate=collate)
    shares, finished = list(predicted), list(scored)
    full = eval_fn(model.eval(), [collate(examples)])  # the same eval, whole set, no collectives
    rows = ctx.gather_rows(torch.full((ctx.rank + 1, 3), float(ctx.rank)))  # (1, 3) and (2, 3)
    return {
        "eval": gathered,
        "eval_local_full": full,
        "eval_batches_local": len(shares),
        "eval_score_calls": finished,
        "gather_rows": rows.tolist(),
        **_reduced_numel(ctx, model, examples[:4], collate),
    }


def _reduced_numel(ctx: DistContext, model, examples, collate) -> dict:
    """Elements DDP puts on the wire in one backward (comm hook over its gradient buckets)."""
    import torch.distributed as dist
    import torch.nn.functional as F

    model.train()
    ddp = ctx.wrap(model)
    sent = []

    def hook(state, bucket):
        sent.append(bucket.buffer().numel())
        fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    ddp.register_comm_hook(None, hook)
    batch = collate(ctx.shard(examples))
    F.cross_entropy(
        ddp(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]), batch["label"]
    ).backward()
    return {
        "reduced_numel": sum(sent),
        "trainable_numel": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_numel": sum(p.numel() for p in model.parameters()),
    }


if __name__ == "__main__":
    _worker(sys.argv[1:])

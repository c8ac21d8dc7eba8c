"""Device rules (docs/cuda.md), checked on a CPU: a training or evaluation step of every method reads
no tensor value into Python, and the LoRA and IA³ forward traces into one graph.

A read of a value into Python (`.item()`, `bool(t)`, `if t.all()`, `nonzero`) is, on a GPU, a host
synchronisation: the host waits until the device has drained its queue. Every such read reaches
ATen as one of the ops in SYNC_OPS, whatever the device, so counting them under a TorchDispatchMode
on a CPU finds the synchronisations a GPU would make. The CUDA-only tests at the end check the same
with `torch.cuda.set_sync_debug_mode("error")` and skip, saying why, without a CUDA device.
"""

import collections

import pytest
import torch
import torch.nn.functional as F
from small_models import SMALL_MOBILEBERT
from torch.utils._python_dispatch import TorchDispatchMode

from minipeft import IA3Config, LoraConfig, inject, ops
from minipeft.prompt import PrefixConfig, PromptConfig, prefix_tuning, prompt_tuning
from models import attention as att
from models.bert import BertConfig, BertForSequenceClassification, BertForTokenClassification
from models.config import MobileBertConfig
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.mobilebert import MobileBertForSequenceClassification

# ops that read a value into Python, or whose output shape depends on values (the host must wait
# for the count): each is a host-device synchronisation on a GPU
SYNC_OPS = {
    "_local_scalar_dense",  # .item(), float(t), bool(t), int(t), if t: ...
    "is_nonzero",
    "nonzero",
    "nonzero_static",
    "masked_select",
    "unique",
    "_unique2",
    "unique_consecutive",
    "equal",
    "allclose",
}
METHODS = ("lora", "ia3", "prefix", "prompt", "full", "frozen")
P = 0.1  # dropout everywhere: hidden, attention, LoRA


class SyncCounter(TorchDispatchMode):
    """Counts, by name, the ATen ops of SYNC_OPS dispatched inside the `with` block."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.counts[name] += 1
        elif name in ("index", "index_put", "index_put_") and _bool_index(args[1]):
            self.counts[f"{name} with a boolean mask"] += 1  # t[mask]: a nonzero inside, on CUDA
        return func(*args, **(kwargs or {}))


def _bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def tiny_bert(p=P, head=BertForSequenceClassification, layers=2, **runtime):
    cfg = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=p,
        attention_probs_dropout_prob=p,
        **runtime,
    )
    return head(cfg, num_labels=3)


def with_method(model, method, p=P):
    """`model` made ready for `method`: an adapter injected, a wrapper around it, or parameters frozen."""
    if method == "lora":
        inject(model, LoraConfig(r=4, alpha=8, dropout=p, targets=("query", "key", "value")))
    elif method == "ia3":
        inject(model, IA3Config(targets=("key", "value", "output.dense"), feedforward=("output.dense",)))
    elif method == "prefix":
        model = prefix_tuning(model, PrefixConfig(num_virtual_tokens=3))
    elif method == "prompt":
        model = prompt_tuning(model, PromptConfig(num_virtual_tokens=3))
    elif method == "frozen":
        for name, q in model.named_parameters():
            q.requires_grad_(name.startswith("classifier."))
    with torch.no_grad():  # adapters away from their identity start, so every path carries values
        for name, q in model.named_parameters():
            if "lora_B" in name or "ia3_l" in name:
                q.add_(torch.randn_like(q) * 0.1)
    return model


def padded_batch(b=3, t=9):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 99, (b, t), generator=g)  # (batch, seq)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0  # one padded row: the case the old `.all()` test looked at
    return ids, mask


def step_loss(model, ids, mask):
    logits = model(input_ids=ids, attention_mask=mask)  # (batch, labels) or (batch, seq, labels)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.zeros(logits.numel() // 3).long())


@pytest.mark.parametrize("method", METHODS)
def test_a_training_step_reads_no_value(method):
    """Forward, loss and backward in training mode with dropout and padding: 0 synchronising ops."""
    torch.manual_seed(0)
    model = with_method(tiny_bert(), method).train()
    ids, mask = padded_batch()
    with SyncCounter() as sync:
        step_loss(model, ids, mask).backward()
    assert dict(sync.counts) == {}
    assert any(q.grad is not None for q in model.parameters())  # the step did run backward


@pytest.mark.parametrize("method", METHODS)
def test_an_evaluation_step_reads_no_value(method):
    torch.manual_seed(0)
    model = with_method(tiny_bert(), method).eval()
    ids, mask = padded_batch()
    with SyncCounter() as sync, torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert dict(sync.counts) == {}


def _family(name):
    if name == "distilbert":
        cfg = DistilBertConfig(
            vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64
        )
        return DistilBertForSequenceClassification(cfg, num_labels=3)
    if name == "mobilebert":
        cfg = MobileBertConfig(
            **{**SMALL_MOBILEBERT, "vocab_size": 99, "max_position_embeddings": 64}, hidden_dropout_prob=P
        )
        return MobileBertForSequenceClassification(cfg, num_labels=3)
    return tiny_bert(head=BertForTokenClassification, first_position_only=False, recompute_attention=False)


@pytest.mark.parametrize("family", ["distilbert", "mobilebert", "bert-token-sdpa"])
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_other_families_and_settings_read_no_value(family, method):
    """The other encoders, the token head and SDPA's own backward (recompute_attention=False) too."""
    torch.manual_seed(0)
    model = _family(family)
    targets = {"distilbert": ("q_lin", "k_lin", "v_lin"), "mobilebert": ("query", "key", "value")}
    if method == "lora":
        inject(model, LoraConfig(r=4, alpha=8, dropout=P, targets=targets.get(family, ("query", "value"))))
    else:
        kv = targets.get(family, ("query", "key", "value"))[1:]
        inject(model, IA3Config(targets=kv, feedforward=()))
    ids, mask = padded_batch()
    with SyncCounter() as sync:
        step_loss(model.train(), ids, mask).backward()
    assert dict(sync.counts) == {}


def test_the_counter_sees_what_it_should():
    """The instrument itself: each kind of read the device rules forbid is counted."""
    t = torch.tensor([0.0, 1.0, 2.0])
    with SyncCounter() as sync:
        t.sum().item()
        bool(t.all())
        t.nonzero()
        t[t > 0]  # boolean indexing: a nonzero inside the kernel on CUDA
        t[t > 1] = 0.0
    assert sync.counts["_local_scalar_dense"] == 2 and sync.counts["nonzero"] == 1
    assert sync.counts["index with a boolean mask"] == 1
    assert sync.counts["index_put_ with a boolean mask"] == 1


@pytest.mark.parametrize("method", ["lora", "ia3"])
@pytest.mark.parametrize("training", [True, False])
def test_lora_and_ia3_forward_trace_without_a_graph_break(method, training):
    """torch._dynamo.explain traces the whole forward (dropout, padding mask, the fused ops' autograd
    Functions): one graph, no break. One layer: every layer traces the same code."""
    torch.manual_seed(0)
    model = with_method(tiny_bert(layers=1), method).train(training)
    ids, mask = padded_batch()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(input_ids=ids, attention_mask=mask)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def _grads(model):
    return [q.grad.clone() for q in model.parameters() if q.requires_grad]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_compiled_step_equals_eager_without_dropout(method):
    """torch.compile(fullgraph=True) on CPU (Inductor): forward and backward give eager's loss and
    gradients within fp32 tolerance (dropout 0, so both compute the same function)."""
    torch.manual_seed(0)
    model = with_method(tiny_bert(p=0.0, layers=1), method, p=0.0).train()
    ids, mask = padded_batch()
    eager_loss = step_loss(model, ids, mask)
    eager_loss.backward()
    eager = _grads(model)
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    loss = step_loss(torch.compile(model, fullgraph=True), ids, mask)
    loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(_grads(model), eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_step_with_dropout_draws_fresh_masks():
    """With dropout (hidden, attention, LoRA) the compiled training step runs whole-graph: two steps
    draw different masks, their gradients are finite; evaluation mode equals eager."""
    torch.manual_seed(0)
    model = with_method(tiny_bert(p=0.3, layers=1), "lora", p=0.3).train()
    ids, mask = padded_batch()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    losses = [step_loss(compiled, ids, mask) for _ in range(2)]
    losses[0].backward()
    assert not torch.equal(losses[0], losses[1])
    assert all(torch.isfinite(g).all() for g in _grads(model))
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(compiled(input_ids=ids, attention_mask=mask), want, rtol=1e-5, atol=1e-5)


# ---- CUDA only: what the CPU tests above infer, observed on the device --------------------------
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device: the synchronisation debug mode and the CUDA gradchecks need one "
    "(the CPU tests above count the same synchronising ops)",
)


@needs_cuda
@pytest.mark.parametrize("method", METHODS)
def test_cuda_training_step_under_sync_debug_error(method):
    torch.manual_seed(0)
    model = with_method(tiny_bert(), method).cuda().train()
    ids, mask = (t.cuda() for t in padded_batch())
    labels = torch.zeros(ids.shape[0], dtype=torch.long, device="cuda")
    step_loss(model, ids, mask).backward()  # warm-up: lazy CUDA initialisation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        logits = model(input_ids=ids, attention_mask=mask)
        F.cross_entropy(logits, labels).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_cuda_gradchecks_of_the_ops():
    dev, g = "cuda", torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *s, grad=True: torch.randn(*s, device=dev, dtype=torch.float64, generator=g).requires_grad_(
        grad
    )
    x, w, b = rand(2, 3, 6), rand(5, 6), rand(5)
    a, bb = rand(2, 6), rand(5, 2)
    assert torch.autograd.gradcheck(lambda *t: ops.lora_linear(*t, 0.5, 0.0, False), (x, w, b, a, bb))
    for ff, n in ((False, 5), (True, 6)):
        assert torch.autograd.gradcheck(lambda *t, ff=ff: ops.ia3_linear(*t, ff), (x, w, b, rand(n)))
    q, k, v = (rand(1, 2, 4, 3) for _ in range(3))
    mask = att.key_mask(torch.tensor([[1, 1, 1, 0]], device=dev))
    state = torch.Generator(device=dev).manual_seed(3).get_state()
    f = lambda q, k, v: att._RecomputeAttention.apply(q, k, v, mask, 0.3, state)
    assert torch.autograd.gradcheck(f, (q, k, v))


@pytest.mark.slow
def test_finetune_compile_gives_the_eager_run(tmp_path, make_tiny_model, monkeypatch):
    """`tasks.finetune --compile` compiles the model in place, whole-graph, and (no dropout anywhere,
    so both runs compute the same function) gives the eager run's metrics; the adapter is saved.
    Dynamo's "eager" backend stands in for Inductor here: it traces every graph the run needs
    (training, evaluation, new lengths) without generating C++ (Inductor's numbers: the tests above)."""
    from synthetic_tasks import write_mimic

    from tasks import finetune

    calls, compile_module = [], torch.nn.Module.compile

    def traced(module, **kwargs):
        calls.append(kwargs)
        compile_module(module, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", traced)
    model_dir = make_tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    data = write_mimic(tmp_path / "data", "mp")
    common = ["--task", "mimic-mp", "--data-dir", str(data), "--model", str(model_dir), "--method", "lora"]
    common += ["--dropout", "0", "--epochs", "1", "--batch-size", "8", "--max-length", "48", "--no-progress"]
    docs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        torch._dynamo.reset()
        args = finetune.build_parser().parse_args([*common, "--out", str(tmp_path / name), *extra])
        docs[name] = finetune.run(args)
    assert calls == [{"fullgraph": True}]
    for split in ("validation", "test"):
        for key, value in docs["eager"][split].items():
            if isinstance(value, float):
                assert docs["compiled"][split][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (split, key)
    assert (tmp_path / "compiled" / "adapter" / "adapter_model.safetensors").exists()


# ---- what a dispatch mode cannot see on a CPU, and the trainer around the step -----------------
# `.tolist()`, `.numpy()` and `.cpu()` of a CPU tensor read its memory without an ATen op, so the
# counter above would miss them; on a GPU each is a copy to the host, a synchronisation. None may
# appear in the model and adapter code that runs inside forward and backward.
STEP_FILES = {  # path: whole file (step code only), or only its `forward` methods
    "models/attention.py": "file",
    "models/common.py": "file",
    "models/blocks.py": "file",
    "models/heads.py": "forward",
    "models/dropout.py": "file",
    "minipeft/ops.py": "file",
    "models/bert.py": "forward",
    "models/distilbert.py": "forward",
    "models/mobilebert.py": "forward",
    "minipeft/lora.py": "forward",
    "minipeft/ia3.py": "forward",
    "minipeft/prompt.py": "forward",
}
HOST_READS = {"item", "tolist", "numpy", "cpu", "nonzero"}


def _host_reads(tree):
    import ast

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in HOST_READS:
            yield f"line {node.lineno}: {ast.unparse(node)[:60]}"
        # bool() of an expression (bool(t.all()), bool(x > 0)); bool(flag) of a plain name is a flag
        elif (
            isinstance(f, ast.Name)
            and f.id == "bool"
            and node.args
            and not isinstance(node.args[0], ast.Name)
        ):
            yield f"line {node.lineno}: {ast.unparse(node)[:60]}"


@pytest.mark.parametrize("path", list(STEP_FILES))
def test_step_code_has_no_host_read_in_its_source(path):
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parent.parent / path).read_text(encoding="utf-8"))
    scopes = [tree]
    if STEP_FILES[path] == "forward":
        scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "forward"]
        assert scopes, f"{path}: no forward method found"
    assert [hit for scope in scopes for hit in _host_reads(scope)] == []


def test_trainer_stops_on_a_non_finite_loss_before_the_optimiser_moves_a_weight():
    """The trainer reads the loss once per optimiser step (with the gradient norm, on the host after
    all micro-batches); a non-finite loss still stops the run before any weight changes."""
    from test_train import TRAIN, VAL, Toy, eval_fn

    from minipeft.training import TrainConfig, train

    torch.manual_seed(0)
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def nan_loss(model, batch):
        return F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), batch["label"]) * float(
            "nan"
        )

    cfg = TrainConfig(epochs=1, batch_size=4, grad_accum=2, progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan at optimiser step 0"):
        train(model, TRAIN, VAL, nan_loss, eval_fn, cfg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

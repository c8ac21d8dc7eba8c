"""One whole training step on the real checkpoint (all-MiniLM-L6-v2), every variant in one run.

    python -m benchmarks.train_step [--variants ...] [--batch 8] [--seq 128] [--repeats 10] [--compile]
                                    [--profile STEPS]

A step = forward (sequence classification, 2 labels) + cross-entropy + backward + AdamW step +
zero_grad, in train mode (hidden and attention dropout 0.1 from the checkpoint's config). AdamW is
torch's fused kernel for every variant, as minipeft's training loop and HF Trainer (torch >= 2.8)
use it; `--optimizer foreach` runs torch's multi-tensor AdamW instead (much slower on a CPU for
full fine-tuning's 22.7M parameters, cheap for an adapter's). Variants:
  full            full fine-tuning, every parameter trainable
  full-all        the same with the config's first_position_only off: the last layer
                  computes every position, as HF's does (ours computes only the [CLS] row the
                  pooler reads by default)
  full-sdpa       full with the config's recompute_attention off (SDPA keeps probabilities)
  frozen          no adapter: the base frozen but for layer 0's query/key/value biases (and the
                  classifier), so backward runs through every layer as it does for LoRA on
                  query,key,value: the floor any adapter adds its own cost to
  lora-plain      LoRA r=8 on query,key,value, dropout 0.1, composed path (LoraConfig(fused=False))
  lora-fused      the same through minipeft.ops (LoraConfig(fused=True))
  lora-fused-all  lora-fused with first_position_only off, as full-all
  lora-fused-sdpa lora-fused with recompute_attention off
  ia3             IA³ on key,value,output.dense (fused)
  dora-plain      DoRA r=8 on the LoRA targets, composed path (DoraConfig(fused=False))
  dora            the same through minipeft.ops.dora_linear (DoraConfig(fused=True))
  vera            VeRA r=256 (PEFT's default) on the LoRA targets, dropout 0.1 (fused)
  hf-peft         transformers BertForSequenceClassification + peft LoRA with the same settings
                  (skipped with a note when transformers/peft are not installed)
LoRA and IA³ variants also train the classifier (modules_to_save), as HF peft's SEQ_CLS task does.
Variants run round-robin, starting from a variant rotated each round, so ratios are measured side
by side: "/full", "/hf" are ratios of medians, "p/full", "p/hf" medians of per-round ratios, "+frz/f"
the median per round of (variant − frozen) ÷ full, and "faults" the median minor page faults per
step (docs/benchmarks.md).
"Activation bytes" are the unique storages autograd saves for backward during one forward,
parameters excluded (torch.autograd.graph.saved_tensors_hooks), on the eager model.
With --compile, every variant of ours (not hf-peft) also runs as "<variant>+c", a second copy of the
model under torch.compile(fullgraph=True) (Inductor), in the same round-robin, and a second table
gives per variant: the compile time (the first compiled step minus the eager median), eager and
compiled medians, compiled ÷ eager (median of per-round ratios) and the steps it takes to pay the
compile time back ("never" when compiled is not faster). Under compile attention is SDPA and
dropout F.dropout / rand (traceable); activation bytes are those of the eager model.

The default of the config's recompute_attention (True) comes from this benchmark: compare
full vs full-sdpa and lora-fused vs lora-fused-sdpa. The last stdout line is one JSON document.
"""

from __future__ import annotations

import time

from benchmarks import cli_args

try:
    import resource  # page-fault counts (Unix)
except ImportError:
    resource = None

VARIANTS = (
    "full",
    "full-all",
    "full-sdpa",
    "frozen",
    "lora-plain",
    "lora-fused",
    "lora-fused-all",
    "lora-fused-sdpa",
    "ia3",
    "dora-plain",
    "dora",
    "vera",
    "hf-peft",
)


def parse_args(argv=None):
    ap = cli_args.parser("benchmarks.train_step", __doc__)
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of the variants above (default %(default)s)",
    )
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (default %(default)s)")
    ap.add_argument(
        "--seq", type=int, default=128, help="tokens per sequence (no padding) (default %(default)s)"
    )
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (default %(default)s)")
    ap.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default %(default)s)")
    ap.add_argument(
        "--dropout",
        type=float,
        default=0.1,
        help="LoRA dropout (on the adapter branch) (default %(default)s)",
    )
    ap.add_argument(
        "--targets",
        default="query,key,value",
        help="comma-separated LoRA target modules (default %(default)s)",
    )
    cli_args.add_timing(
        ap,
        warmup=(2, "untimed steps per variant first"),
        repeats=(10, "timed steps per variant, round-robin"),
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also run each variant of ours compiled (torch.compile, fullgraph) side by side, and "
        "print the compile time and the steps that pay it back",
    )
    ap.add_argument(
        "--optimizer",
        choices=("fused", "foreach"),
        default="fused",
        help="AdamW kernel of every variant: fused (default: what minipeft's loop and HF Trainer "
        "with torch >= 2.8 use) or foreach (torch's multi-tensor default)",
    )
    ap.add_argument(
        "--model-dir", default=None, help="checkpoint folder (default: the cached all-MiniLM-L6-v2)"
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after timing, profile STEPS more steps per variant with torch.profiler and print "
        "where a step's time goes (ms per step, by kind of op); 0 = off (default %(default)s)",
    )
    return ap.parse_args(argv)


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    parse_args()

import torch
import torch.nn.functional as F

from benchmarks.ops import saved_bytes
from benchmarks.train_step_report import compile_summary, profile_step, report, summarise


def _ours(kind, path, args, first_position_only=True, recompute_attention=True):
    from minipeft import DoraConfig, IA3Config, LoraConfig, VeraConfig, inject
    from models import load_pretrained

    model = load_pretrained(
        path,
        head="sequence-classification",
        num_labels=2,
        first_position_only=first_position_only,
        recompute_attention=recompute_attention,
    )
    if kind.startswith("lora"):
        inject(
            model,
            LoraConfig(
                r=args.r,
                alpha=args.alpha,
                dropout=args.dropout,
                targets=tuple(args.targets.split(",")),
                modules_to_save=("classifier",),
                fused=kind != "lora-plain",
            ),
        )
    elif kind == "ia3":
        inject(model, IA3Config(modules_to_save=("classifier",)))
    elif kind.startswith("dora"):
        targets = tuple(args.targets.split(","))
        fused, head = kind == "dora", ("classifier",)
        inject(model, DoraConfig(args.r, args.alpha, args.dropout, targets, head, fused=fused))
    elif kind == "vera":
        targets = tuple(args.targets.split(","))
        inject(model, VeraConfig(dropout=args.dropout, targets=targets, modules_to_save=("classifier",)))
    elif kind == "frozen":
        first = tuple(f"encoder.layer.0.attention.self.{m}.bias" for m in ("query", "key", "value"))
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("classifier.") or name.endswith(first))
    return model


def _hf_peft(path, args):
    try:
        import peft
        from transformers import BertForSequenceClassification
    except ImportError as e:
        return None, f"skipped: {e}"
    model = BertForSequenceClassification.from_pretrained(str(path), num_labels=2)
    cfg = peft.LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=args.targets.split(","),
        task_type="SEQ_CLS",
    )
    model = peft.get_peft_model(model, cfg)
    impl = getattr(model.config, "_attn_implementation", "?")
    return model, f"transformers+peft {peft.__version__}, attention {impl}"


class Runner:
    """One variant: its model and optimizer; `forward` is the model or its compiled wrapper."""

    def __init__(self, name, model, note="", optimizer="fused"):
        self.name, self.model, self.note = name, model, note
        self.model.train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            self.params, lr=1e-5, fused=optimizer == "fused", foreach=optimizer == "foreach"
        )
        self.forward = model

    def loss(self, batch, labels):
        out = self.forward(**batch)
        logits = out.logits if hasattr(out, "logits") else out  # (batch, 2)
        return F.cross_entropy(logits, labels)

    def step(self, batch, labels):
        self.loss(batch, labels).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def activation_bytes(self, batch, labels):
        """Counted on the eager model (under --compile, what a compiled graph saves is decided by
        its partitioner and not visible to saved_tensors_hooks)."""
        exclude = list(self.model.parameters()) + list(self.model.buffers())
        forward, self.forward = self.forward, self.model
        try:
            nbytes, loss = saved_bytes(lambda: self.loss(batch, labels), exclude)
        finally:
            self.forward = forward
        loss.backward()
        self.opt.zero_grad(set_to_none=True)
        return nbytes


def build(args, path):
    runners, notes = [], {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise ValueError(f"--variants: unknown {name!r}; expected some of {','.join(VARIANTS)}")
        torch.manual_seed(0)
        if name == "hf-peft":
            model, note = _hf_peft(path, args)
            notes[name] = note
            if model is None:
                continue
        else:
            model, note = _our_variant(name, path, args), ""
        runners.append(Runner(name, model, note=note, optimizer=args.optimizer))
        if args.compile and name != "hf-peft":
            torch.manual_seed(0)
            r = Runner(name + "+c", _our_variant(name, path, args), note="compiled", optimizer=args.optimizer)
            r.forward = torch.compile(r.model, fullgraph=True)
            runners.append(r)
    return runners, notes


def _our_variant(name, path, args):
    kind = name.replace("-sdpa", "").replace("-all", "")
    return _ours(kind, path, args, not name.endswith("-all"), not name.endswith("-sdpa"))


def minor_faults():
    """Minor page faults of this process so far (a fresh page touched for the first time), or None
    where `resource` is missing (Windows)."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def batch_of(args, vocab):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (args.batch, args.seq), generator=g)  # (batch, seq)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    return batch, torch.randint(0, 2, (args.batch,), generator=g)


def time_steps(runners, batch, labels, args, res) -> None:
    """Warm-up (the compiled variants compile in the first step), then --repeats rounds in which
    every variant takes one step; appends each step's seconds and minor page faults to res."""
    for i in range(max(args.warmup, 1 if args.compile else 0)):
        for r in runners:
            t0 = time.perf_counter()
            r.step(batch, labels)
            if i == 0:  # the compiled variants compile here
                res[r.name]["first_step_s"] = time.perf_counter() - t0
    for i in range(args.repeats):
        # round-robin (side by side), the starting variant rotated every round, so no variant
        # always runs first or always follows the same other one
        k = i % max(len(runners), 1)
        for r in runners[k:] + runners[:k]:
            f0, t0 = minor_faults(), time.perf_counter()
            r.step(batch, labels)
            res[r.name]["times"].append(time.perf_counter() - t0)
            f1 = minor_faults()
            res[r.name]["faults"].append(None if f0 is None else f1 - f0)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from models.assets import MINILM, asset_dir

    path = args.model_dir or asset_dir(MINILM)
    runners, notes = build(args, path)
    batch, labels = batch_of(args, vocab=30522)
    res = {
        r.name: {
            "activation_bytes": r.activation_bytes(batch, labels),
            "times": [],
            "faults": [],
            "note": r.note,
            "trainable": sum(p.numel() for p in r.params),
        }
        for r in runners
    }
    time_steps(runners, batch, labels, args, res)
    summarise(res)
    if args.profile:
        for r in runners:
            res[r.name]["profile_ms_per_step"] = profile_step(r, batch, labels, args.profile)
    compiled = compile_summary(res)
    report(res, notes, args, compiled)


if __name__ == "__main__":
    main()

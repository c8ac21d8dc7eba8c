"""What paper_grid, few_shot and time_budget share: their runs, inputs checked before training,
the per-(model, task) context, one training run, the runs.csv columns and the time estimate.

A run is (model, task, method, n per class, seed); n per class is 0 outside the few-shot study.
Every run loads the base model afresh (full fine-tuning changes it), seeded by the run's seed,
sets the method up with tasks.methods (the paper's presets), trains with minipeft.train, keeps
the best validation state (the task's select metric) and scores it on test.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import minipeft
from benchmarks import grid
from minipeft.training import LengthBucketSampler, PadCollate, TrainConfig, evaluate, seed_everything, train
from minipeft.training.batching import to_device
from minipeft.training.optim import build_adamw
from models import load_pretrained, load_tokenizer
from models.assets import MINILM, asset_dir, sha256_file
from tasks.cli import comma_list
from tasks.encode import encode_tagged, encode_texts
from tasks.methods import METHODS, MethodSpec, build, resolve_preset
from tasks.objective import PAD_VALUES, make_token_cls_eval, seq_cls_eval, seq_cls_loss, token_cls_loss
from tasks.registry import SEQ_CLS, get_task, load_data, subsample

# learning rates for the short default budgets (the paper's 3e-4 adapters / 3e-5 full are for 5 epochs)
SHORT_LR = {"lora": 2e-3, "ia3": 1e-2, "full": 5e-5, "frozen": 1e-3, "prefix": 3e-3, "prompt": 3e-3}
CLS_SCORES = ("roc_auc", "f1_macro", "f1_micro", "accuracy")
NER_SCORES = ("entity_f1",)
KEY = ("model", "task", "method", "n_per_class", "seed")
COLUMNS = (
    *KEY,
    "lr",
    "epochs",
    "train_examples",
    "labels",
    "trainable_params",
    "model_params",
    "trainable_percent",
    *(f"{split}_{m}" for split in ("val", "test") for m in CLS_SCORES + NER_SCORES),
    "best_epoch",
    "best_step",
    "steps",
    "stopped_by_budget",
    "train_seconds",
    "eval_seconds",
    "run_seconds",
    "threads",
    "curve",
)


@dataclass(frozen=True)
class Run:
    model: str  # checkpoint folder
    task: str
    method: str
    seed: int
    n_per_class: int = 0  # few-shot: examples per class drawn from train; 0 = the whole train split

    @property
    def key(self) -> tuple:
        return Path(self.model).name, self.task, self.method, self.n_per_class, self.seed


def row_key(row: dict) -> tuple:
    return row["model"], row["task"], row["method"], int(row["n_per_class"]), int(row["seed"])


def store(out: Path, kind: str) -> grid.RunStore:
    return grid.RunStore(Path(out) / "runs.csv", COLUMNS, row_key, kind, required=KEY)


def plan(args, inputs: dict, ns: tuple[int, ...] = (0,)) -> list[Run]:
    """Model by model, task by task, n by n, seed by seed: a grid stopped part-way holds complete
    pairs of methods. `ns`: the few-shot study's examples per class (0: the whole train split)."""
    return [
        Run(m, t, method, seed, n)
        for m in inputs["models"]
        for t in inputs["tasks"]
        for n in ns
        for seed in args.seeds
        for method in inputs["methods"]
    ]


# ---------------------------------------------------------------- inputs, checked before training
def model_dirs(args) -> list[str]:
    dirs = [str(Path(d)) for d in comma_list(args.models)] if args.models else [str(asset_dir(MINILM))]
    for d in dirs:
        for need in ("config.json", "model.safetensors"):
            if not (Path(d) / need).is_file():
                raise FileNotFoundError(
                    f"--models {d}: no {need} in it; expected a HuggingFace BERT folder "
                    f"(config.json, model.safetensors, tokenizer files)"
                )
    stems = [Path(d).name for d in dirs]
    if len(set(stems)) != len(stems):
        raise ValueError(f"--models {dirs}: two folders share a name; runs.csv tells models apart by it")
    return dirs


def data_dirs(args, tasks: tuple[str, ...]) -> dict[str, str | None]:
    """--data-dir DIR (one task needs files) or TASK=DIR,TASK=DIR."""
    if not args.data_dir:
        return {t: None for t in tasks}
    if "=" not in args.data_dir:
        needing = [t for t in tasks if get_task(t).needs_data_dir] or list(tasks)
        if len(needing) > 1:
            raise ValueError(
                f"--data-dir {args.data_dir}: {len(needing)} tasks read files ({', '.join(needing)}); "
                f"give one folder per task as TASK=DIR,TASK=DIR"
            )
        return {t: (args.data_dir if t == needing[0] else None) for t in tasks}
    pairs = dict(x.split("=", 1) for x in comma_list(args.data_dir))
    unknown = sorted(set(pairs) - set(tasks))
    if unknown:
        raise ValueError(f"--data-dir names tasks {unknown} that are not in --tasks {list(tasks)}")
    return {t: pairs.get(t) for t in tasks}


def check_inputs(args) -> dict:
    """Every user mistake the grid can meet, raised before anything trains; returns the pieces."""
    grid.parse_shard(args.shard)
    tasks = comma_list(args.tasks)
    methods = comma_list(args.methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(
            f"--methods {','.join(methods)}: unknown {bad}; expected some of {', '.join(METHODS)}"
        )
    if not tasks:
        raise ValueError("--tasks is empty; name at least one registered task")
    for t in tasks:
        get_task(t)  # KeyError naming the known tasks
    dirs = data_dirs(args, tasks)
    files = {}
    for t in tasks:  # every split present and readable, now rather than hours into the grid
        data = load_data(get_task(t), dirs[t], args.data_seed)
        files[t] = {str(f): sha256_file(f) for f in data.files}
    if min(args.seeds) < 0 or args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--seeds must be >= 0, --epochs and --batch-size >= 1")
    return {"models": model_dirs(args), "tasks": tasks, "methods": methods, "data": dirs, "files": files}


def require_classification(tasks: str, why: str) -> None:
    """A study that scores AUROC refuses a tagging task in --tasks, saying `why`."""
    for t in comma_list(tasks):
        if get_task(t).type != SEQ_CLS:
            raise ValueError(f"--tasks {t} is a tagging task; {why}")


def learning_rate(args, method: str) -> float:
    """--lr VALUE (every method) or METHOD=VALUE,... over SHORT_LR."""
    lrs = dict(SHORT_LR)
    if args.lr:
        if "=" not in args.lr:
            return float(args.lr)
        lrs.update({k: float(v) for k, v in (x.split("=", 1) for x in comma_list(args.lr))})
    return lrs[method]


# ---------------------------------------------------------------- context: one (model, task) at a time
def per_class(examples: list, n: int, seed: int) -> list:
    """n examples of every class (all of a smaller class), drawn by `seed`; for one seed the draw at
    a smaller n is a subset of the draw at a larger n."""
    by_class: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.label, []).append(i)
    keep = []
    for label in sorted(by_class):
        idx = by_class[label][:]
        random.Random(f"{seed}-{label}").shuffle(idx)
        keep += idx[:n]
    return [examples[i] for i in sorted(keep)]


@dataclass
class Context:
    model_dir: str
    task: object
    labels: tuple
    train: list  # raw examples (few-shot draws from them)
    encoded: dict  # "val" | "test" -> token-id examples
    tokenizer: object
    collate: object

    def encode(self, examples: list, max_length: int) -> list[dict]:
        if self.task.type == SEQ_CLS:
            return encode_texts(self.tokenizer, examples, max_length)
        encoded, word_ids = encode_tagged(self.tokenizer, examples, max_length, "all")
        for enc, wids, ex in zip(encoded, word_ids, examples):
            enc["word_ids"], enc["word_tags"] = wids, list(ex.tags)
        return encoded


class Contexts:
    """The context of the last (model, task) asked for; loading another one replaces it."""

    def __init__(self, args):
        self.args, self.key, self.ctx = args, None, None
        self.data = data_dirs(args, comma_list(args.tasks))

    def get(self, model_dir: str, task_name: str) -> Context:
        if self.key != (model_dir, task_name):
            a = self.args
            task = get_task(task_name)
            data = load_data(task, self.data[task_name], a.data_seed)
            tok = load_tokenizer(model_dir)
            ctx = Context(model_dir, task, data.labels, data.train, {}, tok, None)
            ctx.collate = PadCollate(pad_id=tok.pad_id, pad_values=PAD_VALUES)
            for split, examples in (("val", data.validation), ("test", data.test)):
                ctx.encoded[split] = ctx.encode(
                    subsample(examples, a.max_eval_examples, a.data_seed), a.max_length
                )
            self.key, self.ctx = (model_dir, task_name), ctx
        return self.ctx


def load_context(args) -> Contexts:
    """The grid engine's hook: what a (worker) process keeps between runs."""
    return Contexts(args)


def train_examples(ctx: Context, run: Run, args) -> list[dict]:
    raw = (
        per_class(ctx.train, run.n_per_class, run.seed)
        if run.n_per_class
        else subsample(ctx.train, args.max_train_examples, args.data_seed)
    )
    return ctx.encode(raw, args.max_length)


# ---------------------------------------------------------------- one run
def set_up(ctx: Context, run: Run, seed: int):
    """The base model loaded afresh (head drawn from `seed`) with the run's method on it (paper presets).
    The fresh head always trains, so its "used untrained" warning (the estimate's timed evaluation
    step would trigger it) is switched off, as in the rank sweep."""
    seed_everything(seed)
    model = load_pretrained(
        run.model, head=ctx.task.head, num_labels=len(ctx.labels), seed=seed, warn_untrained_head=False
    )
    preset, targets = resolve_preset(("preset",), Path(run.model))
    kind = "SEQ_CLS" if ctx.task.type == SEQ_CLS else "TOKEN_CLS"
    return build(model, MethodSpec(run.method, preset, targets=targets, task_type=kind))[0]


def run_one(ctx: Context, run: Run, args, **config) -> dict:
    """Fresh base model -> method -> train (best by validation) -> test; the runs.csv row.
    `config`: extra TrainConfig fields (the time budget's max_seconds, eval_every_steps)."""
    wall0 = time.perf_counter()
    is_seq = ctx.task.type == SEQ_CLS
    model = set_up(ctx, run, run.seed)
    eval_fn = seq_cls_eval if is_seq else make_token_cls_eval(ctx.labels)
    cfg = TrainConfig(
        epochs=args.epochs,
        lr=learning_rate(args, run.method),
        batch_size=args.batch_size,
        seed=run.seed,
        select_metric=ctx.task.select_by,
        patience=None,
        progress=not args.no_progress,
        eval_batch_size=max(64, args.batch_size),
        **config,
    )
    data = train_examples(ctx, run, args)
    loss_fn = seq_cls_loss if is_seq else token_cls_loss
    desc = f"{Path(run.model).name} {run.task} {run.method} seed={run.seed}"
    result = train(model, data, ctx.encoded["val"], loss_fn, eval_fn, cfg, collate=ctx.collate, desc=desc)
    t0 = time.perf_counter()
    test = evaluate(model, ctx.encoded["test"], eval_fn, batch_size=cfg.eval_batch_size, collate=ctx.collate)
    times = {"eval_seconds": time.perf_counter() - t0, "run_seconds": time.perf_counter() - wall0}
    return row_of(ctx, run, cfg, minipeft.summary(model), len(data), result, test, times)


def study_run(contexts: Contexts, run: Run, args, **config) -> dict:
    """The grid engine's hook: run_one in the run's (model, task) context."""
    return run_one(contexts.get(run.model, run.task), run, args, **config)


def row_of(
    ctx: Context, run: Run, cfg: TrainConfig, s, n_train: int, result, test: dict, times: dict
) -> dict:
    scores = CLS_SCORES if ctx.task.type == SEQ_CLS else NER_SCORES
    curve = [  # (step, training seconds, validation AUROC or the task's headline metric)
        [h["step"], round(sec, 3), round(h["metrics"].get("roc_auc", h["metrics"].get(ctx.task.primary)), 5)]
        for h, sec in zip(result.history, result.history_seconds)
    ]
    return {
        "model": Path(run.model).name,
        "task": run.task,
        "method": run.method,
        "n_per_class": run.n_per_class,
        "seed": run.seed,
        "lr": cfg.lr,
        "epochs": cfg.epochs,
        "train_examples": n_train,
        "labels": len(ctx.labels),
        "trainable_params": s.trainable,
        "model_params": s.model,
        "trainable_percent": round(100 * s.trainable / s.model, 4),
        **{f"val_{m}": result.best_metrics.get(m, "") for m in scores},
        **{f"test_{m}": test.get(m, "") for m in scores},
        "best_epoch": result.best_epoch,
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_by_budget": result.stopped_by_budget,
        "train_seconds": round(result.train_seconds, 2),
        **{k: round(v, 2) for k, v in times.items()},
        "threads": torch.get_num_threads(),
        "curve": json.dumps(curve) if cfg.eval_every_steps else "",
    }


# ---------------------------------------------------------------- the estimate printed first
def _padded(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def seconds_per_token(ctx: Context, run: Run, args) -> tuple[float, float, float]:
    """(training, evaluation) seconds per padded token for this model, task and method, and the
    seconds of one run's set-up (loading the model, injecting the method), timed now. A training
    step is timed whole: forward, backward and the AdamW update (full fine-tuning's update of every
    weight is a real share of its step)."""
    t0 = time.perf_counter()
    model = set_up(ctx, run, 0)
    setup = time.perf_counter() - t0
    is_seq = ctx.task.type == SEQ_CLS
    loss_fn = seq_cls_loss if is_seq else token_cls_loss
    data = train_examples(ctx, run, args)
    batches = LengthBucketSampler([len(e["input_ids"]) for e in data], args.batch_size, seed=0).batches(0)[:3]
    opt = build_adamw(model, lr=1e-6, weight_decay=0.0)
    model.train()  # load_pretrained returns eval mode; a training step draws its dropout masks
    times = []
    for b in batches:
        batch = to_device(ctx.collate([data[i] for i in b]), torch.device("cpu"))
        t0 = time.perf_counter()
        loss_fn(model, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append((time.perf_counter() - t0) / batch["input_ids"].numel())
    model.eval()
    val = ctx.encoded["val"][:64]
    batch = ctx.collate(val)
    t0 = time.perf_counter()
    with torch.no_grad():
        loss_fn(model, batch)
    per_eval = (time.perf_counter() - t0) / batch["input_ids"].numel()
    return sorted(times)[len(times) // 2], per_eval, setup


def eval_tokens(ctx: Context, split: str, args) -> int:
    lens = [len(e["input_ids"]) for e in ctx.encoded[split]]
    return _padded(lens, LengthBucketSampler(lens, max(64, args.batch_size), shuffle=False).batches())


def train_tokens(ctx: Context, run: Run, args) -> int:
    lens = [len(e["input_ids"]) for e in train_examples(ctx, run, args)]
    sampler = LengthBucketSampler(lens, args.batch_size, seed=run.seed)
    return sum(_padded(lens, sampler.batches(e)) for e in range(args.epochs))

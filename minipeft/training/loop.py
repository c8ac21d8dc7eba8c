"""The state machine behind minipeft.training.train(): epochs, steps, evaluation, checkpoints.

Public entry point is `minipeft.training.train`; this module is its implementation detail. What
the run's state dict holds, how a checkpoint becomes it again and what it ends as: run_state.py.
state["epoch"] counts the epochs completed (the data order of epoch e+1 is drawn with e); every
epoch number that leaves this module (history, best_epoch, log.jsonl, screen, callback) counts from 1.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from ..files import safe_child
from ..reading import read_tensors
from . import checkpoint as ckpt
from . import distributed
from .batching import LengthBucketSampler, to_device
from .config import TrainResult, resolve_device
from .evaluation import evaluate
from .memory import SavedTensorsMeter, cuda_peak_bytes, peak_rss_bytes, reset_cuda_peak
from .optim import build_adamw, linear_warmup_factor, named_trainable, set_lr, warmup_steps
from .report import RunLog, Screen, jsonable, warn
from .run_state import check_base_unchanged, check_same_config, fresh_state, result_of, state_from_checkpoint


def _set_grad_checkpointing(model: nn.Module, on: bool) -> dict[nn.Module, bool]:
    """Set `gradient_checkpointing` on every module that has the attribute; return old values."""
    old = {
        m: m.gradient_checkpointing
        for m in model.modules()
        if isinstance(getattr(m, "gradient_checkpointing", None), bool)
    }
    if on and not old:
        raise ValueError(
            f"grad_checkpointing=True but no module of {type(model).__name__} has a boolean "
            f"`gradient_checkpointing` attribute; set it to False or add one to the model"
        )
    for m in old:
        m.gradient_checkpointing = on
    return old


class Loop:
    def __init__(
        self,
        model,
        train_data,
        val_data,
        loss_fn,
        eval_fn,
        config,
        out_dir,
        provenance,
        collate,
        callback,
        length_key,
        desc,
    ):
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.loss_fn, self.eval_fn, self.cfg = loss_fn, eval_fn, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.provenance, self.collate, self.callback = provenance, collate, callback
        self.length_key, self.desc = length_key, desc
        self.device = resolve_device(config.device)
        lengths = [len(ex[length_key]) for ex in train_data]
        self.sampler = LengthBucketSampler(
            lengths, config.batch_size * config.grad_accum, config.seed, config.bucket_batches
        )
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup = warmup_steps(self.total_steps, config.warmup_ratio)
        self.meter = SavedTensorsMeter(model) if config.measure_memory else None
        self.saved_bytes_max = 0
        self.best_tensors: dict[str, torch.Tensor] | None = None
        self.dist = distributed.context()  # distributed hook: rank 0 alone reads/writes out_dir
        if not self.dist.is_main:
            self.out_dir = None
        self.screen = Screen(desc, config.epochs, on=config.progress and self.dist.is_main)
        self.eval_seconds: list[float] = []  # this session's evaluations, for the ETA

    # ---------------------------------------------------------------- set-up and resume
    def _resume(self, doc: dict, tensors: dict) -> dict:
        check_same_config(doc, self.cfg, self.out_dir / "checkpoint.json")
        ckpt.restore_trainable(self.named, tensors)
        ckpt.load_optimizer_tensors(self.named, self.optimizer, tensors)
        ckpt.set_rng_states(tensors, doc["rng"])
        if doc.get("best_file"):
            self.best_tensors = read_tensors(safe_child(self.out_dir, doc["best_file"]))
        return state_from_checkpoint(doc)

    def _start(self) -> dict:
        self.model.to(self.device)
        self.named = named_trainable(self.model)
        self.optimizer = build_adamw(
            self.model, self.cfg.lr, self.cfg.weight_decay, loraplus_ratio=self.cfg.loraplus_ratio
        )
        found = ckpt.load_checkpoint(self.out_dir) if self.out_dir else None
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.out_dir, fresh=found is None)
        if found is None:
            ckpt.seed_everything(self.cfg.seed)
            state = fresh_state(self.model, self.cfg)
            self.resumed_from = None
            self.log(
                event="start",
                config=state["config"],
                provenance=self.provenance,
                steps_per_epoch=self.steps_per_epoch,
                total_steps=self.total_steps,
                warmup_steps=self.warmup,
                device=str(self.device),
                torch=torch.__version__,
            )
        else:
            state = self._resume(*found)
            self.resumed_from = state["step"]
            self.log(event="resume", step=state["step"], epoch=state["epoch"] + 1, position=state["position"])
        return state

    # ---------------------------------------------------------------- one optimiser step
    def _step(self, indices: list[int], step: int) -> tuple[float, float, float]:
        """Forward/backward over the micro-batches of `indices`, clip, AdamW. Returns (loss, lr, norm)."""
        params = [p for _, p in self.named]
        loss_sum = None  # stays on the device: read once per optimiser step, with the norm
        # distributed hook: this rank's share of the step, weight |micro|/N (× world size for DDP's mean)
        for micro, weight in self.dist.micro_batches(
            indices, self.cfg.batch_size, self.train_model, seed=(self.cfg.seed, step)
        ):
            batch = to_device(self.collate([self.train_data[i] for i in micro]), self.device)
            if self.meter is not None:
                with self.meter.measure():
                    loss = self.loss_fn(self.train_model, batch)
                self.saved_bytes_max = max(self.saved_bytes_max, self.meter.bytes)
            else:
                loss = self.loss_fn(self.train_model, batch)
            (loss * weight).backward()
            part = loss.detach().float() * weight
            loss_sum = part if loss_sum is None else loss_sum + part
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm or math.inf)
        # the step's one read of device values (one host synchronisation on a GPU, docs/cuda.md)
        loss_value, norm_value = torch.stack([loss_sum, norm.float().to(loss_sum.device)]).tolist()
        if not math.isfinite(loss_value):  # checked before the optimiser touches a weight
            raise FloatingPointError(
                f"loss is {loss_value} at optimiser step {step}; lower the "
                f"learning rate (now {self.cfg.lr}) or check the inputs"
            )
        loss_value = self.dist.mean(loss_value)  # distributed hook: the global batch's mean loss
        lr = self.cfg.lr * linear_warmup_factor(step, self.total_steps, self.warmup)
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, lr, norm_value

    # ---------------------------------------------------------------- epochs
    def _memory(self) -> dict:
        return {
            "saved_bytes_max": self.saved_bytes_max if self.meter else None,
            "peak_rss_bytes": peak_rss_bytes(),
            "cuda_peak_bytes": cuda_peak_bytes(self.device),
        }

    def _checkpoint(self, state: dict) -> None:
        if self.out_dir:
            ckpt.save_checkpoint(self.out_dir, self.named, self.optimizer, state)

    def _eta(self, state: dict) -> float | None:
        """Seconds left if every epoch runs: steps × seconds per step + evaluations × seconds each."""
        if not state["step"]:
            return None
        step_s = state["train_seconds"] / state["step"]
        eval_s = sum(self.eval_seconds) / len(self.eval_seconds) if self.eval_seconds else 0.0
        return (self.total_steps - state["step"]) * step_s + (self.cfg.epochs - state["epoch"]) * eval_s

    def _train_epoch(self, state: dict) -> float | None:
        epoch, batches = state["epoch"] + 1, self.sampler.batches(state["epoch"])  # data order: from 0
        self.screen.start_epoch(epoch, len(batches), state["position"])
        window = []
        self.model.train()
        for pos in range(state["position"], len(batches)):
            t0 = time.perf_counter()
            loss, lr, norm = self._step(batches[pos], state["step"])
            state["train_seconds"] += time.perf_counter() - t0
            state["step"] += 1
            state["position"] = pos + 1
            state["examples"] += len(batches[pos])
            state["epoch_loss"] = [state["epoch_loss"][0] + loss, state["epoch_loss"][1] + 1]
            window.append(loss)
            self.screen.step(pos + 1, loss, lr, self._eta(state))
            if state["step"] % self.cfg.log_every == 0 or pos + 1 == len(batches):
                self._log_step(state, epoch, sum(window) / len(window), lr, norm)
                window = []
            mid_epoch = pos + 1 < len(batches)
            saved_best = False
            if mid_epoch and self.cfg.eval_every_steps and state["step"] % self.cfg.eval_every_steps == 0:
                saved_best = self._evaluate(state, state["epoch_loss"][0] / state["epoch_loss"][1])
            if mid_epoch and (
                saved_best or (self.cfg.checkpoint_every and state["step"] % self.cfg.checkpoint_every == 0)
            ):
                self._checkpoint(state)  # after the evaluation of this step, so a resume repeats neither
                self._drop_old_best(saved_best)
            if self.callback is not None:
                self.callback(
                    {"step": state["step"], "epoch": epoch, "position": pos + 1, "loss": loss, "lr": lr}
                )
            if self._budget_spent(state):
                state["budget_spent"] = True
                break
        if state["budget_spent"] and state["position"] < len(batches):
            return None  # the epoch is unfinished: run() evaluates once more and stops
        total, count = state["epoch_loss"]
        state["epoch_loss"] = [0.0, 0]
        return total / max(count, 1)

    def _log_step(self, state: dict, epoch: int, loss: float, lr: float, norm: float) -> None:
        self.log(
            event="step",
            epoch=epoch,
            step=state["step"],
            loss=loss,
            lr=lr,
            grad_norm=norm,
            seconds=state["train_seconds"],
            samples_per_s=state["examples"] / max(state["train_seconds"], 1e-9),
            **self._memory(),
        )

    def _improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.cfg.select_mode == "max" else value < best

    def _budget_spent(self, state: dict) -> bool:
        """TrainConfig.max_seconds of training steps are spent and steps remain."""
        budget = self.cfg.max_seconds
        return budget is not None and state["train_seconds"] >= budget and state["step"] < self.total_steps

    def _evaluate(self, state: dict, train_loss: float) -> bool:
        """Validation metrics at this step: best-state bookkeeping, history, log line. Returns True when
        a new best-state file was written (the caller checkpoints, then drops the old one)."""
        t0 = time.perf_counter()
        metrics = evaluate(
            self.model,
            self.val_data,
            self.eval_fn,
            collate=self.collate,
            batch_size=self.cfg.eval_batch_size or self.cfg.batch_size * self.cfg.grad_accum,
            device=self.device,
            length_key=self.length_key,
        )
        if self.cfg.select_metric not in metrics:
            raise KeyError(
                f"select_metric {self.cfg.select_metric!r} is not among the metrics eval_fn "
                f"returned {sorted(metrics)}; set TrainConfig.select_metric to one of them"
            )
        epoch, step = state["epoch"] + 1, state["step"]  # the epoch in progress, from 1
        value = metrics[self.cfg.select_metric]
        better = self._improved(value, state["best_metric"])
        at_end = state["position"] == self.steps_per_epoch
        self._old_best = None
        if better:
            state.update(best_metric=value, best_epoch=epoch, best_step=step, best_metrics=metrics)
            self.best_tensors = {f"model.{n}": p.detach().clone() for n, p in self.named}
            if self.out_dir:
                name = f"best-epoch{epoch:03d}" + ("" if at_end else f"-step{step:06d}")
                self._old_best, state["best_file"] = state["best_file"], f"{name}.safetensors"
                ckpt.atomic_save_tensors(self.out_dir / state["best_file"], self.best_tensors)
        state["history"].append({"epoch": epoch, "step": step, "train_loss": train_loss, "metrics": metrics})
        state["history_seconds"].append(state["train_seconds"])
        state["last_eval_step"] = step
        self.eval_seconds.append(time.perf_counter() - t0)
        self._last_eval = (metrics, better)
        self.log(
            event="eval",
            epoch=epoch,
            step=step,
            seconds=state["train_seconds"],
            train_loss=train_loss,
            metrics=metrics,
            eval_seconds=self.eval_seconds[-1],
            best=better,
            best_epoch=state["best_epoch"],
            eta_seconds=self._eta(dict(state, epoch=epoch) if at_end else state),  # as after the epoch
        )
        return better and self.out_dir is not None

    def _drop_old_best(self, saved_best: bool) -> None:
        old = getattr(self, "_old_best", None)
        if saved_best and self.out_dir and old:
            (self.out_dir / old).unlink(missing_ok=True)

    def _end_epoch(self, state: dict, train_loss: float) -> None:
        epoch = state["epoch"] + 1  # epoch counts from 1
        saved_best = False
        if state["last_eval_step"] != state["step"]:  # not already evaluated at this step
            saved_best = self._evaluate(state, train_loss)
        metrics, better = self._last_eval
        state["bad_epochs"] = 0 if state["best_epoch"] == epoch else state["bad_epochs"] + 1
        state["epoch"], state["position"] = epoch, 0  # epochs completed
        eta = self._eta(state)
        self.screen.end_epoch(train_loss, metrics, self.cfg.select_metric, better, eta)
        patience = self.cfg.patience
        state["stopped_early"] = (
            patience is not None and state["bad_epochs"] >= patience and state["epoch"] < self.cfg.epochs
        )
        if state["stopped_early"]:
            self.screen.say(f"stopped early: {patience} epochs without a better {self.cfg.select_metric}")
        self._checkpoint(state)
        self._drop_old_best(saved_best)

    # ---------------------------------------------------------------- the run
    def run(self) -> TrainResult:
        old_gc = _set_grad_checkpointing(self.model, self.cfg.grad_checkpointing)
        reset_cuda_peak(self.device)
        try:
            state = self._start()
            state = self.dist.sync_start(self, state)  # distributed hook: rank 0's state everywhere
            self.train_model = self.dist.wrap(self.model)  # distributed hook: DDP (or the model itself)
            while (
                state["epoch"] < self.cfg.epochs and not state["stopped_early"] and not state["budget_spent"]
            ):
                loss = self._train_epoch(state)
                if loss is not None:
                    self._end_epoch(state, loss)
                elif state["last_eval_step"] != state["step"]:  # budget spent mid-epoch: one last look
                    total, count = state["epoch_loss"]
                    self._evaluate(state, total / max(count, 1))
            if self.best_tensors is not None:
                ckpt.restore_trainable(self.named, self.best_tensors)
        finally:
            self.screen.close()
            for m, v in old_gc.items():
                m.gradient_checkpointing = v
        return self._finish(state)

    def _finish(self, state: dict) -> TrainResult:
        after = check_base_unchanged(self.model, state["fingerprint_before"])
        result = result_of(
            state,
            self.cfg,
            after=after,
            trainable=sum(p.numel() for _, p in self.named),
            memory=self._memory(),
            resumed_from=self.resumed_from,
        )
        for text in result.warnings:
            self.log(event="warning", message=text)
            if self.dist.is_main:
                warn(self.desc, text)
        self.log(event="end", **result.to_dict())
        if self.out_dir:
            doc = {"config": state["config"], "provenance": self.provenance, "result": result.to_dict()}
            ckpt.atomic_write_text(self.out_dir / "result.json", json.dumps(doc, indent=2, default=jsonable))
            if not self.cfg.keep_checkpoints:
                ckpt.clean_run_files(self.out_dir)
        return result

"""What a run tells: log.jsonl for programs, a few lines on stderr for a person.

- `RunLog`: one JSON object per line in out_dir/log.jsonl (start/resume/step/eval/warning/end).
- `Screen`: on a terminal a tqdm bar per epoch (it rewrites one line); when stderr is a file or a
  pipe (a sweep's log, CI) no cursor codes at all, a plain line every ~10% of an epoch instead.
  After each epoch one line: train loss, validation metrics (the selected one first, `*` when
  it is the best so far), elapsed time and the ETA of the whole run. Only rank 0 speaks.

ETA of the run = steps left × seconds per step so far + evaluations left × seconds per evaluation
so far. It assumes every epoch runs: early stopping (patience) can only make the run shorter.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from minipeft import files


def jsonable(x):
    """json.dumps fallback: numpy scalars as numbers, paths and devices as strings, else repr."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (Path, torch.device)):
        return str(x)
    return repr(x)


class RunLog:
    """Append JSON lines to out_dir/log.jsonl (no-op without out_dir)."""

    def __init__(self, out_dir: Path | None, fresh: bool):
        self.path = files.safe_child(out_dir, "log.jsonl") if out_dir else None  # a link is refused
        if self.path and fresh:
            files.write_text(self.path, "")

    def __call__(self, **event) -> None:
        if self.path:
            files.append_line(self.path, json.dumps(event, default=jsonable))


def duration(seconds: float) -> str:
    """42s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def metrics_text(metrics: dict, first: str, best: bool) -> str:
    """'f1_macro 0.8312* accuracy 0.8500 ...': the selected metric first, `*` when it is the best."""
    keys = [first] + [k for k in metrics if k != first]
    parts = [f"{k} {metrics[k]:.4f}" + ("*" if k == first and best else "") for k in keys]
    return " ".join(parts)


class Screen:
    """Progress of one run on stderr (module docstring). `on` False: silent."""

    def __init__(self, desc: str, epochs: int, on: bool, stream=None):
        self.desc, self.epochs, self.on = desc, epochs, on
        self.stream = stream if stream is not None else sys.stderr
        self.tty = on and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        if self.on:
            line = f"[{self.desc}] {text}"
            if self.tty:  # above every live bar, the caller's (a sweep's) included
                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, steps: int, done: int) -> None:
        """epoch counts from 1; `done` steps of it already ran (a resumed run)."""
        self.epoch, self.steps, self.every = epoch, steps, max(1, steps // 10)
        if self.tty:
            self.bar = tqdm(
                total=steps,
                initial=done,
                desc=f"{self.desc} epoch {epoch}/{self.epochs}",
                leave=False,
                dynamic_ncols=True,
                file=self.stream,
            )

    def step(self, position: int, loss: float, lr: float, eta: float | None) -> None:
        """After the `position`-th step (from 1) of the epoch."""
        if self.bar is not None:
            self.bar.update(1)
            run_eta = {"run_eta": duration(eta)} if eta is not None else {}
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", **run_eta, refresh=False)
        elif position % self.every == 0 and position < self.steps:
            left = f", ETA {duration(eta)}" if eta is not None else ""
            self.say(
                f"epoch {self.epoch}/{self.epochs} step {position}/{self.steps}: "
                f"loss {loss:.4f} lr {lr:.2e}{left}"
            )

    def end_epoch(self, train_loss: float, metrics: dict, select: str, best: bool, eta: float | None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        left = f", ETA {duration(eta)}" if eta else ""
        self.say(
            f"epoch {self.epoch}/{self.epochs}: train loss {train_loss:.4f} | validation "
            f"{metrics_text(metrics, select, best)} | {duration(time.perf_counter() - self.t0)} elapsed{left}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def warn(desc: str, text: str, stream=None) -> None:
    """A warning a person must see, printed even when progress is off (rank 0 decides to call it)."""
    print(f"[{desc}] WARNING: {text}", file=stream if stream is not None else sys.stderr, flush=True)

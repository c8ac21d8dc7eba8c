"""What trains under each `--method`, with the paper's defaults (§1.2-1.5).

    lora    LoRA on --targets (default query,value), r=8, alpha=8, dropout 0.1; lr 3e-4
    ia3     IA3 on key,value,output.dense, input-scaled output.dense (PEFT's rule); lr 3e-4
    full    every parameter; lr 3e-5
    frozen  the encoder frozen, only the task head trains; lr 3e-5
The task head (`classifier`) always trains.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from minipeft import IA3Config, LoraConfig, inject

METHODS = ("lora", "ia3", "full", "frozen")
ADAPTER_METHODS = ("lora", "ia3")
DEFAULT_LR = {"lora": 3e-4, "ia3": 3e-4, "full": 3e-5, "frozen": 3e-5}
DEFAULT_TARGETS = {"lora": ("query", "value"), "ia3": ("key", "value", "output.dense")}
DEFAULT_FEEDFORWARD = ("output.dense",)
HEAD = ("classifier",)


@dataclass(frozen=True)
class MethodSpec:
    method: str
    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ()          # empty: the method's default
    feedforward: tuple[str, ...] = DEFAULT_FEEDFORWARD

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")

    def adapter_config(self):
        """The LoraConfig / IA3Config of an adapter method (None for full and frozen)."""
        targets = self.targets or DEFAULT_TARGETS.get(self.method, ())
        if self.method == "lora":
            return LoraConfig(r=self.rank, alpha=self.alpha, dropout=self.dropout, targets=targets,
                              modules_to_save=HEAD)
        if self.method == "ia3":
            return IA3Config(targets=targets, feedforward=self.feedforward, modules_to_save=HEAD)
        return None

    def describe(self) -> dict:
        cfg = self.adapter_config()
        out = {"method": self.method}
        if self.method == "lora":
            out.update(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=list(cfg.targets))
        elif self.method == "ia3":
            out.update(targets=list(cfg.targets), feedforward=list(cfg.feedforward))
        return out


def prepare(model: nn.Module, spec: MethodSpec) -> list[str]:
    """Set up `model` in place for `spec`; returns the adapted module paths (empty for full/frozen)."""
    cfg = spec.adapter_config()
    if cfg is not None:
        return inject(model, cfg)
    head = [m for name, m in model.named_modules() if name in HEAD]
    if not head:
        raise ValueError(f"{type(model).__name__} has no module named {HEAD[0]!r}; expected a model "
                         f"with a classification head")
    for p in model.parameters():
        p.requires_grad = spec.method == "full"
    for m in head:
        for p in m.parameters():
            p.requires_grad = True
    return []

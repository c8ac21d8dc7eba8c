"""What trains under each `--method`, with the paper's defaults (§1.2-1.5).

    lora    LoRA on the preset's targets (BERT: query,value), r=8, alpha=8, dropout 0.1; lr 3e-4
    ia3     IA3 on the preset's targets (BERT: key,value,output.dense, output.dense input-scaled)
    full    every parameter; lr 3e-5
    frozen  the encoder frozen, only the task head trains; lr 3e-5
    prefix  10 learned key and value rows in every layer (prefix tuning, no projection); lr 3e-4
    prompt  10 learned input embeddings prepended to the tokens (prompt tuning); lr 3e-4
The task head (`classifier`; DistilBERT also `pre_classifier`) always trains. prefix and prompt
wrap the model (minipeft.prompt) instead of changing it in place: use `build`, not `prepare`.

Targets come from a preset (models.presets) unless named: `--targets preset` (the default) applies
the paper's rule to the checkpoint (names with "tiny" or "mobile" get query,key,value; DistilBERT
gets q_lin,k_lin,v_lin), `--targets preset:NAME` picks one (bert, tiny, mobile, distilbert), and
`--targets query,key,value` names modules directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.presets import Preset, choose_preset

if TYPE_CHECKING:
    from torch import nn
# minipeft (and with it torch) is imported where an adapter is built, so that the command lines
# can list the methods for --help without loading torch

METHODS = ("lora", "ia3", "full", "frozen", "prefix", "prompt")
ADAPTER_METHODS = ("lora", "ia3")
PROMPT_METHODS = ("prefix", "prompt")
DEFAULT_LR = {"lora": 3e-4, "ia3": 3e-4, "full": 3e-5, "frozen": 3e-5, "prefix": 3e-4, "prompt": 3e-4}


@dataclass(frozen=True)
class MethodSpec:
    method: str
    preset: Preset
    rank: int = 8
    alpha: float = 8.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ()  # empty: the preset's
    feedforward: tuple[str, ...] = ()  # IA3, empty: the preset's
    num_virtual_tokens: int = 10  # prefix / prompt
    task_type: str = "SEQ_CLS"  # prefix / prompt: SEQ_CLS or TOKEN_CLS

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")

    @property
    def head(self) -> tuple[str, ...]:
        return self.preset.head

    def adapter_config(self):
        """The LoraConfig / IA3Config of an adapter method (None for full and frozen)."""
        from minipeft import IA3Config, LoraConfig

        if self.method == "lora":
            return LoraConfig(
                r=self.rank,
                alpha=self.alpha,
                dropout=self.dropout,
                targets=self.targets or self.preset.lora_targets,
                modules_to_save=self.head,
            )
        if self.method == "ia3":
            targets = self.targets or self.preset.ia3_targets
            feedforward = self.feedforward or tuple(t for t in self.preset.ia3_feedforward if t in targets)
            return IA3Config(targets=targets, feedforward=feedforward, modules_to_save=self.head)
        return None

    def prompt_config(self):
        """The PrefixConfig / PromptConfig of a virtual-token method (None for the others)."""
        if self.method not in PROMPT_METHODS:
            return None
        from minipeft.prompt import PrefixConfig, PromptConfig

        cls = PrefixConfig if self.method == "prefix" else PromptConfig
        return cls(
            num_virtual_tokens=self.num_virtual_tokens, modules_to_save=self.head, task_type=self.task_type
        )

    def describe(self) -> dict:
        cfg = self.adapter_config()
        out = {"method": self.method, "preset": self.preset.name, "head": list(self.head)}
        if self.method == "lora":
            out.update(rank=self.rank, alpha=self.alpha, dropout=self.dropout, targets=list(cfg.targets))
        elif self.method == "ia3":
            out.update(targets=list(cfg.targets), feedforward=list(cfg.feedforward))
        elif self.method in PROMPT_METHODS:
            out.update(num_virtual_tokens=self.num_virtual_tokens)
        return out


def resolve_preset(targets: tuple[str, ...], model_dir: Path) -> tuple[Preset, tuple[str, ...]]:
    """(preset, explicit targets) from --targets: empty or `preset` -> the paper's name rule;
    `preset:NAME` -> that preset; anything else -> explicit module names (preset for the head only)."""
    from models.families import family_of  # loads torch: only when a model is built

    cfg_file = Path(model_dir) / "config.json"
    model_type = family_of(cfg_file).model_type if cfg_file.is_file() else "bert"  # names a bad file
    if len(targets) == 1 and targets[0].startswith("preset"):
        _, _, name = targets[0].partition(":")
        return choose_preset(name or "paper", str(model_dir), model_type), ()
    return choose_preset("paper", str(model_dir), model_type), targets


def build(model: nn.Module, spec: MethodSpec) -> tuple[nn.Module, list[str]]:
    """(the model to train, adapted module paths): prefix/prompt wrap `model` (its base stays
    untouched and frozen); the other methods set it up in place with `prepare`."""
    from minipeft.prompt import prefix_tuning, prompt_tuning

    cfg = spec.prompt_config()
    if cfg is None:
        return model, prepare(model, spec)
    wrap = prefix_tuning if spec.method == "prefix" else prompt_tuning
    return wrap(model, cfg), []


def prepare(model: nn.Module, spec: MethodSpec) -> list[str]:
    """Set up `model` in place for `spec`; returns the adapted module paths (empty for full/frozen)."""
    if spec.method in PROMPT_METHODS:
        raise ValueError(f"--method {spec.method} wraps the model; call tasks.methods.build, not prepare")
    cfg = spec.adapter_config()
    if cfg is not None:
        from minipeft import inject

        return inject(model, cfg)
    head = [m for name, m in model.named_modules() if name in spec.head]
    if not head:
        raise ValueError(
            f"{type(model).__name__} has no module named {' or '.join(spec.head)}; expected "
            f"a model with a classification head"
        )
    for p in model.parameters():
        p.requires_grad = spec.method == "full"
    for m in head:
        for p in m.parameters():
            p.requires_grad = True
    return []

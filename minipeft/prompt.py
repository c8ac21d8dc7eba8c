"""Prefix tuning and prompt tuning: learned virtual tokens in front of a frozen model.

Prefix tuning (Li & Liang 2021), in every layer l, with P learned rows per layer and no projection:
    K_l = [Pk_l ; X W_kᵀ],   V_l = [Pv_l ; X W_vᵀ]
Prompt tuning (Lester et al. 2021), once, at the input embeddings:
    E = [Pe ; E_word[ids]]

Both wrap a model and keep its classifier trainable (`modules_to_save`, PEFT's suffix rule, so
"classifier" also covers DistilBERT's `pre_classifier`); everything else is frozen. The wrapped
model only has to accept two generic keyword arguments, which our encoders provide:
  * `prefix_kv`: one (key, value) pair per layer, each (batch, heads, P, head_dim); the model
    prepends them to its keys/values and grows the attention mask by P always-visible positions
    (and, as HF with past keys, starts the tokens' positions at P);
  * `inputs_embeds`: (batch, seq, width) in place of token ids.

Layouts are PEFT's: the wrapper holds the model as `base_model`, so the head's keys are
`base_model.classifier.*`, and the file key `prompt_embeddings` is (P, L·2·H) for prefix tuning,
row p = [k_0 | v_0 | k_1 | v_1 | ...] with each block (heads, head_dim) flattened, or (P, width)
for prompt tuning. Prompt tuning prepends the prompts at positions 0..P-1: a sequence head that
pools position 0 then reads the first virtual token, not [CLS], exactly as under PEFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TASK_TYPES = ("SEQ_CLS", "TOKEN_CLS")


@dataclass(frozen=True)
class PrefixConfig:
    """Prefix tuning: `num_virtual_tokens` learned key and value rows in every layer."""

    num_virtual_tokens: int = 10
    modules_to_save: tuple[str, ...] = ("classifier",)
    task_type: str = "SEQ_CLS"

    def __post_init__(self):
        _check(self, "PrefixConfig")


@dataclass(frozen=True)
class PromptConfig:
    """Prompt tuning: `num_virtual_tokens` learned input embeddings; `embeddings` names the input
    nn.Embedding by path suffix (its width is the prompt width: 128 for MobileBERT)."""

    num_virtual_tokens: int = 10
    modules_to_save: tuple[str, ...] = ("classifier",)
    task_type: str = "SEQ_CLS"
    embeddings: str = "word_embeddings"

    def __post_init__(self):
        _check(self, "PromptConfig")


def _check(cfg, name: str) -> None:
    if not isinstance(cfg.num_virtual_tokens, int) or cfg.num_virtual_tokens < 1:
        raise ValueError(f"{name}.num_virtual_tokens must be an int >= 1, found {cfg.num_virtual_tokens!r}")
    if cfg.task_type not in TASK_TYPES:
        raise ValueError(f"{name}.task_type must be one of {TASK_TYPES}, found {cfg.task_type!r}")
    if isinstance(cfg.modules_to_save, str):
        raise ValueError(
            f"{name}.modules_to_save must be a tuple of module names, found the string "
            f"{cfg.modules_to_save!r}; write ({cfg.modules_to_save!r},)"
        )
    object.__setattr__(cfg, "modules_to_save", tuple(cfg.modules_to_save))


class VirtualTokens(nn.Module):
    """The learned table: `embedding.weight` is (P, width), N(0, 1) at start as PEFT's nn.Embedding."""

    ROLE = "prompt"
    ADAPTER_PARAMS = ("embedding.weight",)

    def __init__(self, num_virtual_tokens: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(num_virtual_tokens, width)


def _freeze_all_but(model: nn.Module, modules_to_save) -> tuple[str, ...]:
    """Freeze every parameter except those of modules whose path ends with an entry (PEFT's rule)."""
    saved = tuple(
        p for p, _ in model.named_modules() if p and any(p.endswith(name) for name in modules_to_save)
    )
    saved = tuple(p for p in saved if not any(p.startswith(q + ".") for q in saved))  # outermost only
    missing = [n for n in modules_to_save if not any(p.endswith(n) for p in saved)]
    if missing:
        raise KeyError(
            f"modules_to_save {missing} match no module of {type(model).__name__}; "
            f"expected names such as 'classifier'"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for path in saved:
        for p in model.get_submodule(path).parameters():
            p.requires_grad_(True)
    return saved


class PrefixTuning(nn.Module):
    """K_l = [Pk_l ; X W_kᵀ], V_l = [Pv_l ; X W_vᵀ] in every layer l (see the module docstring)."""

    def __init__(
        self, base_model: nn.Module, config: PrefixConfig, num_layers: int, num_heads: int, head_dim: int
    ):
        super().__init__()
        self.config = config
        self.base_model = base_model
        self.num_layers, self.num_heads, self.head_dim = num_layers, num_heads, head_dim
        self.saved = _freeze_all_but(base_model, config.modules_to_save)
        self.prompt_encoder = VirtualTokens(config.num_virtual_tokens, num_layers * 2 * num_heads * head_dim)

    @property
    def token_dim(self) -> int:
        return self.num_heads * self.head_dim

    def prefix_kv(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """PEFT's reading of the table: view (P, 2L, heads, d), layer l's key is block 2l, value 2l+1."""
        p = self.config.num_virtual_tokens
        e = self.prompt_encoder.embedding.weight  # (P, L·2·H)
        e = e.view(p, 2 * self.num_layers, self.num_heads, self.head_dim).permute(
            1, 2, 0, 3
        )  # (2L, heads, P, d)
        e = e.unsqueeze(1).expand(-1, batch, -1, -1, -1)  # (2L, batch, heads, P, d)
        return [(e[2 * l], e[2 * l + 1]) for l in range(self.num_layers)]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None):
        batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        dtype = next(self.base_model.parameters()).dtype  # PEFT casts to the base dtype
        prefix = [(k.to(dtype), v.to(dtype)) for k, v in self.prefix_kv(batch)]
        return self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            prefix_kv=prefix,
        )


def _find_embedding(model: nn.Module, suffix: str) -> str:
    """The path of the one nn.Embedding whose path is `suffix` or ends with "." + suffix."""
    found = [
        p
        for p, m in model.named_modules()
        if isinstance(m, nn.Embedding) and (p == suffix or p.endswith("." + suffix))
    ]
    if len(found) != 1:
        raise KeyError(
            f"PromptConfig.embeddings={suffix!r} matches {len(found)} nn.Embedding modules of "
            f"{type(model).__name__} ({found}); expected exactly one"
        )
    return found[0]


class PromptTuning(nn.Module):
    """E = [Pe ; E_word[ids]]: P learned embeddings prepended to the input (module docstring)."""

    def __init__(self, base_model: nn.Module, config: PromptConfig):
        super().__init__()
        self.config = config
        self.base_model = base_model
        self.embeddings_path = _find_embedding(base_model, config.embeddings)
        self.saved = _freeze_all_but(base_model, config.modules_to_save)
        self.prompt_encoder = VirtualTokens(config.num_virtual_tokens, self.token_dim)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.base_model.get_submodule(self.embeddings_path)

    @property
    def token_dim(self) -> int:
        return self.word_embeddings.embedding_dim

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, width)
        b, p = inputs_embeds.shape[0], self.config.num_virtual_tokens
        prompts = self.prompt_encoder.embedding.weight.to(inputs_embeds.dtype)  # (P, width)
        x = torch.cat([prompts.expand(b, -1, -1), inputs_embeds], dim=1)  # (batch, P+seq, width)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(b, p), attention_mask], dim=1)
        if token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(b, p), token_type_ids], dim=1)
        out = self.base_model(attention_mask=attention_mask, token_type_ids=token_type_ids, inputs_embeds=x)
        if self.config.task_type == "TOKEN_CLS":
            out = out[:, p:]  # (batch, seq, labels): real tokens only
        return out


def prefix_tuning(
    model: nn.Module,
    config: PrefixConfig = PrefixConfig(),
    num_layers: int | None = None,
    num_heads: int | None = None,
    head_dim: int | None = None,
) -> PrefixTuning:
    """Wrap `model`; the attention shape defaults to `model.config`'s num_hidden_layers,
    num_attention_heads and head_dim (the width of the keys, 128 for MobileBERT, not its 512 body)."""
    cfg = getattr(model, "config", None)
    try:
        num_layers = num_layers or cfg.num_hidden_layers
        num_heads = num_heads or cfg.num_attention_heads
        head_dim = head_dim or cfg.head_dim
    except AttributeError as e:
        raise ValueError(
            f"{type(model).__name__} has no config with the attention shape ({e}); pass "
            f"num_layers, num_heads and head_dim"
        ) from None
    return PrefixTuning(model, config, int(num_layers), int(num_heads), int(head_dim))


def prompt_tuning(model: nn.Module, config: PromptConfig = PromptConfig()) -> PromptTuning:
    return PromptTuning(model, config)


def prompt_counts(wrapper: nn.Module) -> dict[str, int]:
    """Trainable parameters of a wrapper: the virtual tokens, the saved head, and their sum."""
    prompt = wrapper.prompt_encoder.embedding.weight.numel()
    head = sum(
        p.numel() for path in wrapper.saved for p in wrapper.base_model.get_submodule(path).parameters()
    )
    return {"prompt": prompt, "head": head, "trainable": prompt + head}

"""minipeft: parameter-efficient fine-tuning by hand, in pure PyTorch.

Adapters behind one interface. Every adapter layer type (LoRALinear, IA3Linear, ...) stands in
for one nn.Linear and satisfies the small structural protocol `minipeft.adapter.AdapterLayer`:

    ROLE, ADAPTER_PARAMS                  its audit role and its trainable tensors
    from_config(base, path, config)       how inject() builds it from its frozen config
    merged() -> (W', b')                  how merge() folds it into the base layer
    delta_weight() -> ΔW (out, in)        the weight update, for analysis
    PEFT_TYPE, PEFT_MARKERS, PEFT_REQUIRED, PEFT_OPTIONAL,
    peft_config(config), config_from_peft(d, file, modules_to_save),
    peft_tensors(), load_peft_tensors(t)  its adapter_config.json fields and tensor keys

plus `base`, `weight`, `bias` and `disabled` on each instance. One registry,
`minipeft.registry.ADAPTERS`, maps each config type to its layer class; inject, merge, remove,
disabled, save_adapter / load_adapter and param_table go through it and never name a concrete
adapter. Adding an adapter type is one file and one registry line (or `register(Config, Layer)`
at run time): see docs/adapters.md. Prefix and prompt tuning (minipeft.prompt) wrap a whole model
instead and have their own save/load (minipeft.prompt_io). Optional members, used when present:
`from_targets(bases, config)` (layers sharing state, VeRA), `peft_shared_tensors()` /
`load_peft_shared(t)` (file tensors outside any layer), `peft_expected()` (what a loading file
holds when it differs from what is saved: PiSSA/OLoRA), ADAPTER_BUFFERS (frozen adapter buffers,
given the layer's role) and LORAPLUS_B (LoRA+'s B side, minipeft.training.optim). Methods: docs/methods.md.
"""

from minipeft.adapter import AdapterLayer
from minipeft.audit import ParamRow, ParamSummary, fingerprint, param_table, summary
from minipeft.config import DoraConfig, IA3Config, LoraConfig, VeraConfig
from minipeft.dora import DoRALinear
from minipeft.ia3 import IA3Linear
from minipeft.inject import adapters, disabled, inject, merge, remove, saved_modules
from minipeft.io import load_adapter, save_adapter
from minipeft.lora import LoRALinear
from minipeft.registry import register
from minipeft.vera import VeRALinear
from minipeft.version import __version__

__all__ = [
    "__version__",
    "LoraConfig",
    "IA3Config",
    "DoraConfig",
    "VeraConfig",
    "DoRALinear",
    "VeRALinear",
    "LoRALinear",
    "IA3Linear",
    "AdapterLayer",
    "register",
    "inject",
    "merge",
    "remove",
    "disabled",
    "adapters",
    "saved_modules",
    "param_table",
    "summary",
    "fingerprint",
    "ParamRow",
    "ParamSummary",
    "save_adapter",
    "load_adapter",
]

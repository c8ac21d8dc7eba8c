"""minipeft: parameter-efficient fine-tuning by hand, in pure PyTorch."""

__version__ = "0.1.0"

from minipeft.audit import ParamRow, ParamSummary, fingerprint, param_table, summary
from minipeft.config import IA3Config, LoraConfig
from minipeft.ia3 import IA3Linear
from minipeft.inject import adapters, disabled, inject, merge, remove, saved_modules
from minipeft.io import load_adapter, save_adapter
from minipeft.lora import LoRALinear

__all__ = [
    "__version__",
    "LoraConfig",
    "IA3Config",
    "LoRALinear",
    "IA3Linear",
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

"""The adapter registry: config type -> adapter layer class (minipeft.adapter.AdapterLayer).

inject builds layers through it, merge / remove / disabled / the audit find layers by it, and
save_adapter / load_adapter translate configs and tensors through the class it names. Adding an
adapter type is one file (its config and its layer class) and one line in ADAPTERS; a user's own
type can be added at run time with `register`.
"""

from __future__ import annotations

from pathlib import Path

from minipeft.adapter import RESERVED_ROLES, missing_members
from minipeft.config import IA3Config, LoraConfig
from minipeft.ia3 import IA3Linear
from minipeft.lora import LoRALinear

ADAPTERS: dict[type, type] = {
    LoraConfig: LoRALinear,
    IA3Config: IA3Linear,
}


def register(config_type: type, layer_type: type) -> type:
    """Add an adapter type: `config_type` instances given to inject() build `layer_type` layers.
    Checks `layer_type` against the AdapterLayer protocol. Returns `layer_type`."""
    missing = missing_members(layer_type)
    if missing:
        raise TypeError(
            f"{layer_type.__name__} does not satisfy minipeft.adapter.AdapterLayer: missing {missing}; "
            "see docs/adapters.md"
        )
    if layer_type.ROLE in RESERVED_ROLES:
        raise ValueError(f"{layer_type.__name__}.ROLE={layer_type.ROLE!r} is reserved {RESERVED_ROLES}")
    for field in ("targets", "modules_to_save"):
        if field not in getattr(config_type, "__dataclass_fields__", {}):
            raise TypeError(f"{config_type.__name__} must be a dataclass with a `{field}` field")
    ADAPTERS[config_type] = layer_type
    return layer_type


def layer_types() -> tuple[type, ...]:
    """Every registered layer class (for isinstance)."""
    return tuple(ADAPTERS.values())


def roles() -> tuple[str, ...]:
    """The registered layers' audit roles, in registration order, each once."""
    return tuple(dict.fromkeys(t.ROLE for t in ADAPTERS.values()))


def layer_for(config) -> type:
    """The layer class that `config`'s type builds; TypeError for an unregistered type."""
    try:
        return ADAPTERS[type(config)]
    except KeyError:
        names = ", ".join(t.__name__ for t in ADAPTERS)
        raise TypeError(
            f"inject() takes a registered adapter config ({names}), found {type(config).__name__}; "
            "a new type is added with minipeft.registry.register(ConfigType, LayerType)"
        ) from None


def layer_for_peft_type(d: dict, file: Path) -> type:
    """The layer class that reads adapter_config.json's dict `d`: among the classes whose PEFT_TYPE
    is d's peft_type and whose PEFT_MARKERS all hold in d, the one with the most markers (a variant
    that PEFT stores under an existing peft_type, as DoRA under LORA with use_dora, wins over the
    plain type), the first registered on a tie."""
    peft_type = d.get("peft_type")
    fits = [
        t
        for t in ADAPTERS.values()
        if t.PEFT_TYPE == peft_type and all(d.get(k) == v for k, v in t.PEFT_MARKERS.items())
    ]
    if not fits:
        known = " or ".join(repr(t) for t in dict.fromkeys(t.PEFT_TYPE for t in ADAPTERS.values()))
        raise ValueError(f"{file}: peft_type={peft_type!r} is not supported; expected {known}")
    return max(fits, key=lambda t: len(t.PEFT_MARKERS))  # max keeps the first of equals

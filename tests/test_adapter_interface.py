"""The adapter interface (minipeft.adapter.AdapterLayer) and its registry (minipeft.registry).

A toy adapter type defined here, and registered from here, goes through inject, disabled, merge,
remove, param_table, summary, fingerprint, save_adapter and load_adapter without a line of library
code knowing it. The built-in types satisfy the protocol and agree with themselves (merged() is
W + delta_weight()). And, parsed with `ast`, no library module outside the registry and an
adapter's own file branches on a concrete adapter or config class.
"""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from test_inject import Toy

from minipeft import (
    IA3Config,
    LoraConfig,
    adapters,
    disabled,
    fingerprint,
    inject,
    load_adapter,
    merge,
    param_table,
    register,
    registry,
    remove,
    save_adapter,
    summary,
)
from minipeft.adapter import adopt_linear, missing_members
from minipeft.io import CONFIG_FILE, PREFIX, WEIGHTS_FILE

ROOT = Path(__file__).resolve().parent.parent


# ---- a toy adapter type, as a user would write it in a file of their own -----------------------


@dataclass(frozen=True)
class OuterConfig:
    """Rank-one update plus a bias shift: y = x Wᵀ + b + (x · v) u + c."""

    targets: tuple[str, ...] = ("query",)
    modules_to_save: tuple[str, ...] = ()
    v_std: float = 0.5


class OuterLinear(nn.Module):
    """y = x Wᵀ + b + (x · v) u + c with u (out,) and c (out,) starting at zero, v (in,) random.
    ΔW = u vᵀ; merged: (W + u vᵀ, b + c). PEFT-style file: u as (out, 1), v as (1, in), c as is."""

    ROLE = "outer"
    ADAPTER_PARAMS = ("outer_u", "outer_v", "outer_c")
    PEFT_TYPE = "OUTER"
    PEFT_MARKERS = {}
    PEFT_REQUIRED = ("target_modules", "v_std")
    PEFT_OPTIONAL = ()

    def __init__(self, base: nn.Linear, v_std: float):
        super().__init__()
        adopt_linear(self, base)
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.outer_u = nn.Parameter(torch.zeros(self.out_features, **like))  # (out,)
        self.outer_v = nn.Parameter(torch.randn(self.in_features, **like) * v_std)  # (in,)
        self.outer_c = nn.Parameter(torch.zeros(self.out_features, **like))  # (out,)

    @classmethod
    def from_config(cls, base, path, config):
        return cls(base, config.v_std)

    def forward(self, x):  # x (..., in)
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.disabled:
            return y
        return y + (x @ self.outer_v)[..., None] * self.outer_u + self.outer_c  # (..., out)

    @torch.no_grad()
    def delta_weight(self):
        return torch.outer(self.outer_u.float(), self.outer_v.float())  # (out, in)

    @torch.no_grad()
    def merged(self):
        b = self.outer_c if self.bias is None else self.bias + self.outer_c
        return self.weight + self.delta_weight().to(self.weight.dtype), b.clone()

    def peft_tensors(self):
        return {"outer_u": self.outer_u[:, None], "outer_v": self.outer_v[None, :], "outer_c": self.outer_c}

    @torch.no_grad()
    def load_peft_tensors(self, tensors):
        for name in self.ADAPTER_PARAMS:
            getattr(self, name).copy_(tensors[name].reshape(-1))

    @staticmethod
    def peft_config(config):
        return {"v_std": config.v_std}

    @staticmethod
    def config_from_peft(d, file, modules_to_save):
        return OuterConfig(
            targets=tuple(d["target_modules"]), modules_to_save=modules_to_save, v_std=d["v_std"]
        )


@pytest.fixture
def outer_registered():
    register(OuterConfig, OuterLinear)
    try:
        yield
    finally:
        registry.ADAPTERS.pop(OuterConfig)


def _outer_formula(layer: OuterLinear, x):
    """The docstring's equation, from the adapter's tensors, independent of its forward."""
    b = 0 if layer.bias is None else layer.bias
    return x @ layer.weight.T + b + (x @ layer.outer_v)[:, None] * layer.outer_u[None, :] + layer.outer_c


# ---- the toy type through every entry point ---------------------------------------------------


def _outer_model(seed=0):
    torch.manual_seed(seed)
    model = Toy()
    model.value = nn.Linear(6, 6, bias=False)  # a layer without a bias: merge must create one
    return model


def _trained_outer():
    model = _outer_model()
    config = OuterConfig(targets=("query", "value"), modules_to_save=("classifier",))
    touched = inject(model, config)
    assert touched == ["query", "value", "classifier"]
    with torch.no_grad():
        for _, m in adapters(model):
            for n in m.ADAPTER_PARAMS:
                getattr(m, n).normal_()
        model.classifier.weight.add_(1.0)
    return model.eval(), config


def test_toy_type_injects_and_computes_its_equation(outer_registered):
    base = _outer_model()
    keys = set(base.state_dict())
    model, _ = _trained_outer()
    assert [p for p, _ in adapters(model)] == ["query", "value"]
    assert set(model.state_dict()) == keys | {f"{p}.outer_{n}" for p in ("query", "value") for n in "uvc"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{p}.outer_{n}" for p in ("query", "value") for n in "uvc"} | {
        "classifier.weight",
        "classifier.bias",
    }
    x = torch.randn(5, 6)
    torch.testing.assert_close(model.query(x), _outer_formula(model.query, x))
    torch.testing.assert_close(model.value(x), _outer_formula(model.value, x))
    with disabled(model):  # the base alone; the classifier was trained, so compare layer by layer
        torch.testing.assert_close(model.query(x), base.query(x))
        torch.testing.assert_close(model.value(x), base.value(x))


def test_toy_type_merges_removes_and_keeps_the_fingerprint(outer_registered):
    model, config = _trained_outer()
    untrained = _outer_model()
    inject(untrained, config)
    assert fingerprint(model) == fingerprint(untrained)  # trained adapter and head tensors excluded
    x = torch.randn(5, 6)
    plain = merge(model)
    assert not adapters(plain) and type(plain.value) is nn.Linear
    q = model.query
    torch.testing.assert_close(plain.query.weight, q.weight + torch.outer(q.outer_u, q.outer_v))
    torch.testing.assert_close(plain.value.bias, model.value.outer_c)  # b = 0 + c
    torch.testing.assert_close(plain(x), model(x))
    query_base = model.query.base
    remove(model)
    assert model.query is query_base and not adapters(model)
    assert all(p.requires_grad for p in model.parameters())  # the flags from before inject()


def test_toy_type_has_its_own_role_in_the_audit(outer_registered):
    model, _ = _trained_outer()
    rows = param_table(model, hashes=False)
    role = {r.name: r.role for r in rows}
    adapter_names = {f"{p}.outer_{n}" for p in ("query", "value") for n in "uvc"}
    assert {n for n, r in role.items() if r == "outer"} == adapter_names
    assert {n for n, r in role.items() if r == "head"} == {"classifier.weight", "classifier.bias"}
    s = summary(model)
    count = sum(r.numel for r in rows if r.name in adapter_names)
    assert count == 2 * (6 + 6 + 6) and s.by_role["outer"] == count == s.adapter
    assert s.by_role["lora"] == s.by_role["ia3"] == 0


def test_toy_type_saves_in_peft_layout_and_loads_bit_exact(outer_registered, tmp_path):
    model, config = _trained_outer()
    save_adapter(model, tmp_path, task_type="SEQ_CLS")
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (cfg["peft_type"], cfg["v_std"], cfg["target_modules"]) == ("OUTER", 0.5, ["query", "value"])
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    assert tensors[f"{PREFIX}query.outer_u"].shape == (6, 1)
    assert tensors[f"{PREFIX}query.outer_v"].shape == (1, 6)
    other = _outer_model()
    loaded = load_adapter(other, tmp_path)
    assert loaded == config
    a, b = model.state_dict(), other.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(5, 6)
    assert torch.equal(model(x), other.eval()(x))


# ---- the registry's own contract --------------------------------------------------------------


def test_register_checks_the_protocol():
    assert missing_members(nn.Linear) == [
        "ROLE",
        "ADAPTER_PARAMS",
        "PEFT_TYPE",
        "PEFT_MARKERS",
        "PEFT_REQUIRED",
        "PEFT_OPTIONAL",
        "from_config",
        "merged",
        "delta_weight",
        "peft_tensors",
        "load_peft_tensors",
        "peft_config",
        "config_from_peft",
    ]
    with pytest.raises(TypeError, match="missing .*'merged'"):
        register(OuterConfig, nn.Linear)
    head = type("HeadRole", (OuterLinear,), {"ROLE": "head"})
    with pytest.raises(ValueError, match="reserved"):
        register(OuterConfig, head)
    assert OuterConfig not in registry.ADAPTERS


def test_inject_refuses_an_unregistered_config():
    with pytest.raises(TypeError, match=r"OuterConfig; a new type is added with .*register"):
        inject(Toy(), OuterConfig())


def test_peft_markers_pick_a_variant_stored_under_the_same_peft_type(outer_registered):
    variant = type("TiedOuter", (OuterLinear,), {"PEFT_MARKERS": {"tied": True}})
    config_type = dataclass(frozen=True)(type("TiedConfig", (OuterConfig,), {}))
    register(config_type, variant)
    try:
        file = Path("adapter_config.json")
        assert registry.layer_for_peft_type({"peft_type": "OUTER", "tied": True}, file) is variant
        assert registry.layer_for_peft_type({"peft_type": "OUTER"}, file) is OuterLinear
        assert registry.layer_for_peft_type({"peft_type": "OUTER", "tied": False}, file) is OuterLinear
        with pytest.raises(ValueError, match="peft_type='VERA' is not supported; expected 'LORA' or 'IA3'"):
            registry.layer_for_peft_type({"peft_type": "VERA"}, file)
    finally:
        registry.ADAPTERS.pop(config_type)


# ---- the built-in types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        LoraConfig(r=2, alpha=4, targets=("query", "value")),
        IA3Config(),  # key and value output-scaled, output.dense input-scaled
    ],
    ids=["lora", "ia3"],
)
def test_builtin_types_merge_to_w_plus_delta_and_match_their_forward(config):
    torch.manual_seed(0)
    model = Toy()
    inject(model, config)
    assert not missing_members(registry.layer_for(config))
    x = torch.randn(4, 6)
    for path, m in adapters(model):
        with torch.no_grad():
            for n in m.ADAPTER_PARAMS:
                getattr(m, n).uniform_(0.5, 1.5)
        w, b = m.merged()
        torch.testing.assert_close(w, m.weight + m.delta_weight())  # merged() is W + ΔW
        xin = torch.randn(4, m.in_features)
        torch.testing.assert_close(F.linear(xin, w, b), m(xin), msg=path)
    plain = merge(model)
    torch.testing.assert_close(plain(x), model(x))


# ---- no branches on concrete adapter classes outside the registry -----------------------------

DISPATCH = ("minipeft/inject.py", "minipeft/io.py", "minipeft/audit.py")


def _concrete():
    """{class name: file defining it} for every registered config and layer class."""
    return {
        cls.__name__: Path(inspect.getsourcefile(cls)).resolve()
        for pair in registry.ADAPTERS.items()
        for cls in pair
    }


def _type_branches(tree: ast.AST, names) -> list[tuple[int, str]]:
    """(line, name) of isinstance/issubclass calls, and `type(x) is/== X` tests, naming one of `names`."""
    found = []
    for node in ast.walk(tree):
        tested = []
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            tested = node.args[1:]
        elif isinstance(node, ast.Compare) and any(isinstance(o, (ast.Is, ast.Eq)) for o in node.ops):
            tested = [node.left, *node.comparators]
        for arg in tested:
            for sub in ast.walk(arg):
                name = getattr(sub, "id", None) or getattr(sub, "attr", None)
                if name in names:
                    found.append((node.lineno, name))
    return found


def _names_used(tree: ast.AST) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rsplit(".", 1)[-1])
    return used


def test_no_library_module_branches_on_a_concrete_adapter_class():
    concrete = _concrete()
    own_files = set(concrete.values()) | {(ROOT / "minipeft/registry.py").resolve()}
    bad = []
    for pkg in ("minipeft", "tasks", "benchmarks"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if f.resolve() in own_files:
                continue
            tree = ast.parse(f.read_text(), filename=str(f))
            bad += [
                f"{f.relative_to(ROOT)}:{line} tests for {n}" for line, n in _type_branches(tree, concrete)
            ]
    assert not bad, "branches on adapter classes outside minipeft/registry.py:\n" + "\n".join(bad)


def test_dispatch_modules_never_name_a_concrete_adapter():
    """inject, io and audit reach adapter types only through the registry: they import no adapter's
    module and use none of the registered class names (docstrings aside), nor `merged_weight`."""
    adapter_modules = {
        "minipeft." + p.stem for p in {*_concrete().values()} if p.parent == (ROOT / "minipeft").resolve()
    }
    bad = []
    for rel in DISPATCH:
        tree = ast.parse((ROOT / rel).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad += [f"{rel} imports {m}" for m in sorted(imported & adapter_modules)]
        bad += [f"{rel} uses {n}" for n in sorted(_names_used(tree) & (set(_concrete()) | {"merged_weight"}))]
    assert adapter_modules >= {"minipeft.lora", "minipeft.ia3", "minipeft.config"}
    assert not bad, "\n".join(bad)


def test_the_branch_checker_can_fail():
    snippet = (
        "if isinstance(m, LoRALinear):\n    pass\nok = type(m) is IA3Linear\nx = isinstance(m, nn.Linear)\n"
    )
    found = _type_branches(ast.parse(snippet), {"LoRALinear": None, "IA3Linear": None})
    assert found == [(1, "LoRALinear"), (3, "IA3Linear")]
    assert {"LoRALinear", "merged_weight"} <= _names_used(
        ast.parse("from minipeft.lora import LoRALinear\nw = m.merged_weight()")
    )

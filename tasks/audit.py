"""Audit report: every parameter and buffer of a model (and its adapter) accounted for.

    python -m tasks.audit --model DIR [--adapter DIR] [--format md|json] [--out FILE]

Lists each tensor with its role (base, lora, ia3, prompt, head), kind, shape, dtype, numel, trainable flag
and SHA-256; totals by role, each tensor once (tied/shared tensors are named); the paper-style
summary; the base fingerprint; and, with --adapter, whether its manifest verifies against the
adapter file and this base, with the provenance it records, and what a LoRA/IA³ adapter changes:
‖ΔW‖_F and ‖ΔW‖_F / ‖W0‖_F per adapted module (ΔW = merged minus base weight, minipeft.analysis).
A prefix/prompt-tuning adapter (peft_type PREFIX_TUNING / PROMPT_TUNING) wraps the model as
minipeft.prompt_io.load_prompt does, so its tensor names carry the wrapper's `base_model.` prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open

from minipeft import analysis, fingerprint, param_table, summary
from minipeft.files import write_text
from minipeft.io import CONFIG_FILE, PREFIX, WEIGHTS_FILE
from models import load_pretrained
from tasks.adapters import attach, is_prompt_adapter, load_base_for_adapter

HEAD_OF_TASK = {"SEQ_CLS": "sequence-classification", "TOKEN_CLS": "token-classification"}


def adapter_head(adapter_dir: Path) -> tuple[str | None, int | None]:
    """(load_pretrained head, num_labels) that the adapter was trained with: the task type from
    adapter_config.json, the label count from the saved classifier's shape."""
    cfg_file = adapter_dir / CONFIG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"{cfg_file}: not found; --adapter must be a folder written by save_adapter or PEFT"
        )
    head = HEAD_OF_TASK.get(json.loads(cfg_file.read_text()).get("task_type"))
    with safe_open(str(adapter_dir / WEIGHTS_FILE), framework="pt") as f:
        key = f"{'base_model.' if is_prompt_adapter(adapter_dir) else PREFIX}classifier.weight"
        labels = f.get_slice(key).get_shape()[0] if key in f.keys() else None
    return head, labels


def totals(rows) -> dict:
    """Per role and kind: tensors and elements, each distinct tensor once."""
    out = {}
    for r in rows:
        if r.shared_with is None:
            t = out.setdefault(f"{r.kind}:{r.role}", {"tensors": 0, "numel": 0, "trainable": 0})
            t["tensors"] += 1
            t["numel"] += r.numel
            t["trainable"] += r.numel if r.trainable else 0
    return dict(sorted(out.items()))


def build_report(
    model_dir,
    adapter_dir=None,
    head: str | None = None,
    num_labels: int | None = None,
    allow_base_mismatch: bool = False,
) -> dict:
    model_dir = Path(model_dir)
    adapter_dir = Path(adapter_dir) if adapter_dir else None
    if adapter_dir is not None and head is None:
        head, found = adapter_head(adapter_dir)
        num_labels = num_labels or found
    model = (
        load_base_for_adapter(model_dir, head, num_labels)
        if adapter_dir is not None
        else load_pretrained(model_dir, head=head, num_labels=num_labels)
    )
    caught, check = [], None
    if adapter_dir is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, check = attach(model, adapter_dir, allow_base_mismatch)
    rows = param_table(model, buffers=True)
    updates = analysis.update_norms(model)
    return {
        "model": str(model_dir),
        "adapter": str(adapter_dir) if adapter_dir else None,
        "head": head,
        "base_fingerprint": fingerprint(model),
        "summary": {**asdict(summary(model)), "text": str(summary(model))},
        "totals": totals(rows),
        "shared": [{"name": r.name, "same_tensor_as": r.shared_with} for r in rows if r.shared_with],
        "adapter_check": check,
        "warnings": [str(w.message) for w in caught],
        "tensors": [asdict(r) for r in rows],
        "updates": updates,
    }


def _verdict(check: dict | None) -> str:
    if check is None:
        return "no adapter"
    if not check["verified"]:
        return "UNVERIFIED (no manifest)"
    return "verified, BASE MISMATCH overridden" if check["base_mismatch"] else "verified (tensors and base)"


def updates_markdown(rep: dict) -> list[str]:
    """What the adapter changes in each adapted module (none for prefix/prompt tuning)."""
    if not rep.get("updates"):
        return []
    lines = [
        "",
        "What the adapter changes (ΔW = merged weight − base weight; relative = ‖ΔW‖_F / ‖W0‖_F; "
        "spectra and ranks: python -m benchmarks.internals --adapters DIR):",
        "",
        "| adapted module | shape | ‖ΔW‖_F | relative |",
        "|---|---|---:|---:|",
    ]
    for u in rep["updates"]:
        lines.append(f"| `{u['path']}` | {tuple(u['shape'])} | {u['delta_fro']:.4g} | {u['relative']:.3e} |")
    return lines


def to_markdown(rep: dict) -> str:
    check = rep["adapter_check"]
    lines = [
        f"# Audit: {rep['model']}" + (f" + {rep['adapter']}" if rep["adapter"] else ""),
        "",
        f"- {rep['summary']['text']}",
        f"- base fingerprint: `{rep['base_fingerprint']}`",
        f"- adapter: {_verdict(check)}",
    ]
    if check and check.get("base_mismatch"):
        lines.append(f"- expected base fingerprint: `{check['expected_base_fingerprint']}`")
    if check and check.get("provenance") is not None:
        lines.append(f"- provenance: `{json.dumps(check['provenance'], sort_keys=True)}`")
    lines += [f"- warning: {w}" for w in rep["warnings"]]
    lines += ["", "| kind:role | tensors | elements | trainable |", "|---|---:|---:|---:|"]
    lines += [
        f"| {k} | {v['tensors']:,} | {v['numel']:,} | {v['trainable']:,} |" for k, v in rep["totals"].items()
    ]
    if rep["shared"]:
        lines += [
            "",
            "Shared tensors (counted once): "
            + ", ".join(f"`{s['name']}` = `{s['same_tensor_as']}`" for s in rep["shared"]),
        ]
    lines += updates_markdown(rep)
    lines += [
        "",
        "| name | kind | role | shape | dtype | numel | trainable | sha256 |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for r in rep["tensors"]:
        sha = f"= `{r['shared_with']}`" if r["shared_with"] else f"`{r['sha256']}`"
        lines.append(
            f"| `{r['name']}` | {r['kind']} | {r['role']} | {tuple(r['shape'])} | {r['dtype']} | "
            f"{r['numel']:,} | {'yes' if r['trainable'] else 'no'} | {sha} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tasks.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF-layout model folder (config.json + model.safetensors)")
    p.add_argument(
        "--adapter",
        help="adapter folder (adapter_config.json + adapter_model.safetensors "
        "[+ adapter_manifest.json]) to load onto the model and verify",
    )
    p.add_argument(
        "--head",
        choices=sorted(HEAD_OF_TASK.values()),
        default=None,
        help="model head; default: from the adapter's task_type, else the bare encoder",
    )
    p.add_argument(
        "--num-labels",
        type=int,
        default=None,
        help="head outputs; default: the adapter's saved classifier, else config.json",
    )
    p.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="load an adapter whose manifest names another base model (the report records it)",
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="report format (default md)")
    p.add_argument("--out", type=Path, help="write the report to this file (atomically) instead of stdout")
    args = p.parse_args(argv)
    rep = build_report(args.model, args.adapter, args.head, args.num_labels, args.allow_base_mismatch)
    text = to_markdown(rep) if args.format == "md" else json.dumps(rep, indent=2, sort_keys=True) + "\n"
    if args.out:
        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return rep


if __name__ == "__main__":
    main()

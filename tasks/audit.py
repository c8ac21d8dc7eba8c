"""Audit report: every parameter and buffer of a model (and its adapter) accounted for.

    python -m tasks.audit [--model DIR] [--adapter DIR] [--format md|json] [--out FILE]

Lists each tensor with its role (base, lora, ia3, prompt, head), kind, shape, dtype, numel, trainable flag
and SHA-256; totals by role, each tensor once (tied/shared tensors are named); the paper-style
summary; the base fingerprint; and, with --adapter, whether its manifest verifies against the
adapter file and this base, with the provenance it records, and what a LoRA/IA³ adapter changes:
‖ΔW‖_F and ‖ΔW‖_F / ‖W0‖_F per adapted module (ΔW = merged minus base weight, minipeft.analysis).
A prefix/prompt-tuning adapter (peft_type PREFIX_TUNING / PROMPT_TUNING) wraps the model as
minipeft.prompt_io.load_prompt does, so its tensor names carry the wrapper's `base_model.` prefix.

--model defaults to the base the adapter records (its manifest's provenance, else
adapter_config.json's base_model_name_or_path). The head comes from the adapter's task_type; an
adapter saved without one (save_adapter on a BertForSequenceClassification) is recognised by its
keys (`bert.` prefix). Every bad input is one line `error: ...` and exit status 2. --out must be
new or an earlier report of tasks.audit.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from tasks.cli import ArgumentParser, run_or_exit

HEAD_OF_TASK = {"SEQ_CLS": "sequence-classification", "TOKEN_CLS": "token-classification"}
HEADS = tuple(HEAD_OF_TASK.values())


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tasks.audit", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        help="HF-layout model folder (config.json + model.safetensors); "
        "default: the base the adapter records",
    )
    p.add_argument(
        "--adapter",
        help="adapter folder (adapter_config.json + adapter_model.safetensors "
        "[+ adapter_manifest.json]) to load onto the model and verify",
    )
    p.add_argument(
        "--head",
        choices=sorted(HEAD_OF_TASK.values()),
        default=None,
        help="model head; default: from the adapter's task_type (or its keys), else the bare encoder",
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
    p.add_argument(
        "--out",
        type=Path,
        help="write the report to this file (atomically) instead of stdout; it must be new or an "
        "earlier report of tasks.audit",
    )
    return p


if __name__ == "__main__":  # --help and usage errors answer before torch loads
    build_parser().parse_args()

from minipeft import analysis, fingerprint, param_table, summary
from minipeft.audit import MANIFEST_FILE
from minipeft.files import refuse_symlink, write_text
from minipeft.io import CONFIG_FILE, PREFIX, WEIGHTS_FILE
from minipeft.reading import read_tensors
from models import load_pretrained
from models.families import family_of
from tasks.adapters import attach, is_prompt_adapter, load_base_for_adapter, read_object


def _config(adapter_dir: Path) -> dict:
    cfg_file = adapter_dir / CONFIG_FILE
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"--adapter {adapter_dir}: no such folder")
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"{cfg_file}: not found; --adapter must be a folder written by save_adapter or PEFT"
        )
    return read_object(cfg_file)


def adapter_head(adapter_dir: Path, model_dir: Path | None = None) -> tuple[tuple, int | None]:
    """(candidate load_pretrained heads, num_labels) the adapter was trained with: the task type
    from adapter_config.json; without one, a head model when the keys carry the family's prefix
    (`bert.`), tried as sequence then token classification; the label count from the classifier."""
    cfg = _config(adapter_dir)
    task_type = cfg.get("task_type")
    if task_type is not None and task_type not in (*HEAD_OF_TASK, "FEATURE_EXTRACTION"):
        raise ValueError(
            f"{adapter_dir / CONFIG_FILE}: task_type={task_type!r}; expected SEQ_CLS, TOKEN_CLS, "
            "FEATURE_EXTRACTION or null"
        )
    keys = read_tensors(adapter_dir / WEIGHTS_FILE, finite=False)
    key = f"{'base_model.' if is_prompt_adapter(adapter_dir) else PREFIX}classifier.weight"
    labels = keys[key].shape[0] if key in keys and keys[key].dim() == 2 else None
    if task_type in HEAD_OF_TASK:
        return (HEAD_OF_TASK[task_type],), labels
    prefix = family_of(model_dir / "config.json").prefix if model_dir is not None else "bert"
    if any(k.startswith(f"{PREFIX}{prefix}.") for k in keys) or labels is not None:
        return HEADS, labels
    return (None,), labels


def recorded_base(adapter_dir: Path) -> Path:
    """The base model folder the adapter records (manifest provenance, else adapter_config.json)."""
    manifest = adapter_dir / MANIFEST_FILE
    prov = read_object(manifest).get("provenance") if manifest.is_file() else None
    base = prov.get("base_model") if isinstance(prov, dict) else None
    base = base or _config(adapter_dir).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ValueError(
            f"{adapter_dir}: neither {MANIFEST_FILE} nor {CONFIG_FILE} records the base model; "
            "pass --model DIR"
        )
    if not Path(base).is_dir():
        raise FileNotFoundError(
            f"{adapter_dir}: the recorded base model {base} is not a folder here; pass --model DIR"
        )
    return Path(base)


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
    adapter_dir = Path(adapter_dir) if adapter_dir else None
    if model_dir is None:
        if adapter_dir is None:
            raise ValueError("pass --model DIR, --adapter DIR, or both (the adapter records its base)")
        model_dir = recorded_base(adapter_dir)
    model_dir = Path(model_dir)
    caught, check = [], None
    if adapter_dir is None:
        model = load_pretrained(model_dir, head=head, num_labels=num_labels)
    else:
        heads, found = adapter_head(adapter_dir, model_dir)
        if head is not None and head not in heads:
            raise ValueError(
                f"--head {head}, but {adapter_dir / CONFIG_FILE} was trained with "
                f"{' or '.join(str(h) for h in heads)}; drop --head or pass the matching one"
            )
        model, check, caught, head = _attach_first(
            model_dir, adapter_dir, (head,) if head else heads, num_labels or found, allow_base_mismatch
        )
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


def _attach_first(model_dir, adapter_dir, heads, num_labels, allow_base_mismatch):
    """(model, check, warnings, head) for the first head the adapter loads onto; else the first error."""
    errors = []
    for head in heads:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = load_base_for_adapter(model_dir, head, num_labels)
                model, check = attach(model, adapter_dir, allow_base_mismatch)
                return model, check, caught, head
            except (ValueError, KeyError) as e:
                errors.append(e)
    raise errors[0]


def provenance_lines(prov, indent: str = "  ") -> list[str]:
    """The provenance as a nested list, one field a line (long values wrap in the reader's view)."""
    if not isinstance(prov, dict):
        return [f"{indent}- `{json.dumps(prov, sort_keys=True)}`"]
    lines = []
    for k, v in sorted(prov.items()):
        if isinstance(v, dict) and v:
            lines.append(f"{indent}- {k}:")
            lines += provenance_lines(v, indent + "  ")
        else:
            text = ", ".join(map(str, v)) if isinstance(v, list) else v
            lines.append(f"{indent}- {k}: `{text}`")
    return lines


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
    if check and check.get("adapter") and check["adapter"].get("init"):
        a = check["adapter"]
        lines.append(f"- adapter init: {a['init']} at rank {a['rank']}, saved as {a['saved_as']}")
    if check and check.get("provenance") is not None:
        lines += ["- provenance:", *provenance_lines(check["provenance"])]
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


def is_report(path: Path) -> bool:
    """An earlier report of this program: markdown starting `# Audit:`, or JSON with our keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text.startswith("# Audit:"):
        return True
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(doc, dict) and {"base_fingerprint", "tensors", "totals"} <= set(doc)


def check_out(out: Path) -> None:
    refuse_symlink(out, "--out")
    if out.is_dir():
        raise IsADirectoryError(21, "--out is a folder; give a file path", str(out))
    if out.exists() and not is_report(out):
        raise ValueError(
            f"--out {out}: the file exists and is not a report of tasks.audit; refusing to replace it. "
            "Choose another path, or delete the file first"
        )


def run(args) -> dict:
    if args.num_labels is not None and args.num_labels < 1:
        raise ValueError(f"--num-labels {args.num_labels}: expected a whole number >= 1")
    if args.out:
        check_out(args.out)
    rep = build_report(args.model, args.adapter, args.head, args.num_labels, args.allow_base_mismatch)
    text = to_markdown(rep) if args.format == "md" else json.dumps(rep, indent=2, sort_keys=True) + "\n"
    if args.out:
        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return rep


def main(argv=None) -> dict:
    return run_or_exit(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    main()

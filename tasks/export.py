"""Export a fine-tuning run as one plain model: the adapter folded into the base weights.

    python -m tasks.export --run runs/mp --out runs/mp-merged

--run is a folder tasks.finetune wrote. Its task.json gives the labels, the head and the base
model (--model overrides the base, for example when the checkpoint moved); the adapter in
RUN/adapter is checked against its manifest and merged (W' = W + (alpha/r)·B·A for LoRA,
W' = diag(l)·W or W·diag(l) for IA³). --out gets HuggingFace's layout (config.json with the task's
labels as id2label, model.safetensors, the base's tokenizer files) plus task.json, so transformers,
tasks.predict --model and tasks.audit read it unchanged. Prefix and prompt tuning add tokens, not
weights: they cannot be merged (use the adapter with tasks.predict). A run of --method full or
frozen already holds the whole model in RUN/model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tasks.cli import run_or_exit


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tasks.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="output folder of tasks.finetune (holds task.json, adapter/)")
    p.add_argument("--out", required=True, help="folder to write the merged model into (must not exist)")
    p.add_argument("--model", help="base model folder (default: the one recorded in RUN/task.json)")
    return p


def read_run(run: Path) -> tuple[dict, Path]:
    """(task.json of the run, its adapter folder), checked before anything heavy loads."""
    info_file = run / "task.json"
    if not info_file.is_file():
        raise FileNotFoundError(f"{info_file}: no such file; --run takes an output folder of tasks.finetune")
    info = json.loads(info_file.read_text())
    if info.get("method") in ("full", "frozen"):
        raise ValueError(
            f"{run}: a --method {info['method']} run already holds the whole model in {run / 'model'}; "
            "use that folder"
        )
    if info.get("method") in ("prefix", "prompt"):
        raise ValueError(
            f"{run}: --method {info['method']} adds virtual tokens, not weights, so it cannot be merged; "
            f"use python -m tasks.predict --adapter {run / 'adapter'}"
        )
    adapter = run / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json; was the run finished?")
    if not info.get("labels"):
        raise ValueError(f"{info_file}: no labels; expected the list tasks.finetune writes")
    return info, adapter


def export(args) -> Path:
    run, out = Path(args.run), Path(args.out)
    info, adapter = read_run(run)
    if out.exists():
        raise FileExistsError(f"--out {out}: already exists; choose a new folder (nothing is overwritten)")
    base = Path(args.model or info.get("base_model") or "")
    if not (base / "config.json").is_file():
        raise FileNotFoundError(
            f"{base / 'config.json'}: the base model recorded in {run / 'task.json'} is not there; "
            "pass --model DIR of the checkpoint the run was trained from"
        )

    from minipeft import merge
    from models import save_pretrained
    from tasks.adapters import attach, load_base_for_adapter
    from tasks.registry import HEADS

    model = load_base_for_adapter(base, HEADS[info["type"]], labels=info["labels"])
    model, _ = attach(model, adapter)  # verifies the manifest against these tensors and this base
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(merge(model), tmp, tokenizer_dir=base)
    (tmp / "task.json").write_text(json.dumps({**info, "merged_from": str(adapter)}, indent=2) + "\n")
    tmp.rename(out)  # a folder at --out is always complete
    return out


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    out = run_or_exit(export, args, extra_errors=(FileExistsError,))
    print(json.dumps({"out": str(out), "run": args.run}))


if __name__ == "__main__":
    main()

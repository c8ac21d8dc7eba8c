"""Every command line answers --help without importing torch (so in well under a second), names
itself as `python -m ...`, and keeps its help readable."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    "tasks.finetune",
    "tasks.predict",
    "tasks.audit",
    "tasks.export",
    "tasks.fetch",
    "tasks.verify_manifest",
    "benchmarks.rank_sweep",
    "benchmarks.internals",
    "benchmarks.train_step",
    "benchmarks.ops",
    "benchmarks.encoder",
    "benchmarks.memory",
    "benchmarks.ddp_scaling",
    "benchmarks.paper_grid",
    "benchmarks.few_shot",
    "benchmarks.time_budget",
)


@pytest.mark.slow  # twelve interpreters: about 3 s
def test_help_never_imports_torch():
    for module in COMMANDS:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", module, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, (module, out.stderr[-500:])
        imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
        assert "torch" not in imported, f"{module} --help imports torch"
        assert out.stdout.startswith(f"usage: python -m {module} "), out.stdout[:80]
        words = len(out.stdout.split())
        assert words < 700, f"{module} --help has {words} words"

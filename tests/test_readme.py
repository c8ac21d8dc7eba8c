"""The README is run, not just read: its library snippet executes as written, CI runs its test
command verbatim, and every `python -m` module it names exists."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("./setup.sh")]
    readme = [line.strip() for line in README.splitlines() if line.strip().startswith("./setup.sh --test")]
    assert len(ci) == 1 and readme == ci, (ci, readme)
    assert "ruff check" in ci[0] and "ruff format --check" in ci[0] and "pytest" in ci[0]


def test_every_module_the_readme_runs_exists():
    modules = sorted(set(re.findall(r"python -m ((?:tasks|benchmarks)\.[a-z_]+)", README)))
    assert "benchmarks.rank_sweep" in modules and "tasks.export" in modules
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not missing, missing


@pytest.mark.slow  # the real checkpoint, loaded twice, merged and saved: about 5 s
def test_library_snippet_runs_as_written(minilm_dir, tmp_path, monkeypatch):
    (snippet,) = python_blocks(README.split("## Using the library", 1)[1].split("\n## ", 1)[0])
    monkeypatch.chdir(tmp_path)  # the snippet writes out/adapter and out/merged
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    # what the snippet promises: the adapter round-trips, the merged model carries the labels
    assert scope["logits"].shape == (1, 2)
    assert (tmp_path / "out/adapter/adapter_manifest.json").is_file()
    merged_cfg = (tmp_path / "out/merged/config.json").read_text()
    assert '"0": "negative"' in merged_cfg and '"1": "positive"' in merged_cfg
    model, again, tok = scope["model"], scope["again"], scope["tok"]
    batch = tok(["chest pain radiating to the left arm"], max_length=480)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**batch), model.eval()(**batch), rtol=0, atol=1e-6)
    n_lora = 6 * 2 * 8 * (384 + 384)  # 6 layers x (query, value) x r (in + out)
    assert sum(r.numel for r in scope["rows"] if r.role == "lora") == n_lora

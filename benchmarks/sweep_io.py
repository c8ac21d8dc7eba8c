"""runs.csv and sweep.json of the rank sweep: read, append atomically, refuse a mismatched resume.

runs.csv holds one row per finished run; a run is identified by (rank, seed, trial). Appending
rewrites the whole file under a temporary name and renames it into place, so a kill leaves either
the old or the new file, never half a row. sweep.json records the settings every row depends on;
restarting with other settings in the same --out is refused (the rows would not be comparable).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from minipeft import files

COLUMNS = (
    "task",
    "rank",
    "seed",
    "trial",
    "alpha_policy",
    "alpha",
    "scaling",
    "lr",
    "dropout",
    "targets",
    "epochs",
    "train_examples",
    "trainable_params",
    "adapter_params",
    "adapter_percent",
    "model_params",
    "val_auroc",
    "val_f1_macro",
    "val_accuracy",
    "test_auroc",
    "test_f1_macro",
    "test_accuracy",
    "best_epoch",
    "train_seconds",
    "eval_seconds",
    "run_seconds",
    "cpu_seconds",
    "threads",
    "samples_per_second",
    "saved_bytes_max",
    "peak_rss_bytes",
)


def atomic_write(path: Path, data: str | bytes) -> None:
    files.write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data, fsync=True)


def run_key(row: dict) -> tuple[int, int, int]:
    return int(row["rank"]), int(row["seed"]), int(row["trial"])


def read_runs(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [
            c
            for c in ("rank", "seed", "trial", "val_auroc", "test_auroc")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError(
                f"{path}: columns {missing} are missing (found {reader.fieldnames}); "
                f"it is not a rank-sweep runs.csv: choose another --out"
            )
        return list(reader)


def write_runs(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=run_key):
        writer.writerow(row)
    atomic_write(path, buf.getvalue())


def check_settings(path: Path, settings: dict) -> None:
    """Write sweep.json, or compare with the one a previous (killed) sweep left."""
    path = Path(path)
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e}); choose another --out for a new sweep") from None
        if not isinstance(old, dict):
            raise ValueError(f"{path}: not a sweep's settings (a JSON object); choose another --out")
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise ValueError(
                f"{path}: this --out holds a sweep with other settings "
                f"(setting: (before, now)) {diff}; use the same flags to resume it, "
                f"or another --out for a new sweep"
            )
        return
    atomic_write(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")

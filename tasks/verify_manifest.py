"""Check an adapter folder against its adapter_manifest.json with the standard library alone.

    python -m tasks.verify_manifest ADAPTER_DIR      # prints OK, or each problem and exits 1

A third party needs neither torch nor minipeft: the safetensors file is an 8-byte little-endian
header length, a JSON header {key: {dtype, shape, data_offsets}}, then the raw tensor bytes,
and the manifest lists the SHA-256 of each tensor's bytes and of adapter_config.json's meaning
(lists sorted, `peft_version` dropped, canonical JSON). Every check `load_adapter` makes on these
files is made here; a hostile file (a header length of 2**60, offsets past the end, JSON that is
not an object) is reported as a problem, never a crash. A missing file exits with status 2.
"""

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

FILES = ("adapter_manifest.json", "adapter_config.json", "adapter_model.safetensors")


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _sorted_lists(obj):
    if isinstance(obj, dict):
        return {k: _sorted_lists(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return sorted((_sorted_lists(v) for v in obj), key=canonical)
    return obj


def config_sha256(config: dict) -> str:
    body = {k: v for k, v in config.items() if k != "peft_version"}
    return hashlib.sha256(canonical(_sorted_lists(body)).encode()).hexdigest()


def _json_object(path: Path):
    """(dict, None) or (None, problem)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"{path.name}: not readable JSON ({e})"
    return (doc, None) if isinstance(doc, dict) else (None, f"{path.name}: not a JSON object")


def read_safetensors(path: Path):
    """(header without __metadata__, data bytes, None) or (None, None, problem), bounds checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return None, None, f"{path.name}: {len(raw)} bytes, shorter than the 8-byte header length"
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            return None, None, f"{path.name}: header length {n} exceeds the file's {size - 8} bytes"
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            return None, None, f"{path.name}: header is not JSON ({e})"
        data = f.read()
    if not isinstance(header, dict):
        return None, None, f"{path.name}: header is not a JSON object"
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return None, None, f"{path.name}: __metadata__ is not an object of strings"
    for key, h in header.items():
        offsets = h.get("data_offsets") if isinstance(h, dict) else None
        ok = isinstance(offsets, list) and len(offsets) == 2 and all(type(x) is int for x in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1] <= len(data):
            return None, None, f"{path.name}: {key}: data_offsets {offsets!r:.60} outside the data"
    return header, data, None


def verify(adapter_dir):
    """Return a list of problems (empty when the adapter matches its manifest)."""
    d = Path(adapter_dir)
    manifest, problem = _json_object(d / "adapter_manifest.json")
    if problem:
        return [problem]
    config, problem = _json_object(d / "adapter_config.json")
    if problem:
        return [problem]
    problems = []
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    if hashlib.sha256(canonical(body).encode()).hexdigest() != manifest.get("manifest_sha256"):
        problems.append("manifest edited after writing (manifest_sha256 mismatch)")
    if config_sha256(config) != manifest.get("config_sha256"):
        problems.append("adapter_config.json changed after saving (config_sha256 mismatch)")
    header, data, problem = read_safetensors(d / "adapter_model.safetensors")
    listed = manifest.get("tensors")
    if problem or not isinstance(listed, dict):
        return problems + [problem or "adapter_manifest.json: no tensors table"]
    for key in sorted(set(header) | set(listed)):
        if key not in header or key not in listed:
            problems.append(f"{key}: only in {'manifest' if key in listed else 'safetensors file'}")
            continue
        h, m = header[key], listed[key]
        start, end = h["data_offsets"]
        digest = hashlib.sha256(data[start:end]).hexdigest()
        if not isinstance(m, dict) or (digest, h.get("dtype"), h.get("shape")) != (
            m.get("sha256"),
            m.get("dtype"),
            m.get("shape"),
        ):
            problems.append(f"{key}: bytes, dtype or shape differ from the manifest")
    return problems


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m tasks.verify_manifest",
        description="Check an adapter's tensors and config against its adapter_manifest.json "
        "with the Python standard library alone.",
    )
    p.add_argument("adapter_dir", help="folder with adapter_model.safetensors and adapter_manifest.json")
    args = p.parse_args(argv)
    for name in FILES:
        if not (Path(args.adapter_dir) / name).is_file():
            print(
                f"error: {Path(args.adapter_dir) / name}: no such file; expected an adapter folder "
                "written by minipeft's save_adapter",
                file=sys.stderr,
            )
            return 2
    try:
        found = verify(args.adapter_dir)
    except OSError as e:
        print(f"error: {e.filename or args.adapter_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    print("\n".join(found) if found else "OK: every tensor and the config match adapter_manifest.json")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

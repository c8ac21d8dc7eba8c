"""minipeft.files: atomic writes keep the old file on failure and leave no temporary file behind."""

import json

import pytest
import torch
from safetensors.torch import load_file

from minipeft import files


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.json"
    files.write_json(target, {"b": 1, "a": [1, 2]})
    before = target.read_bytes()

    def half_then_fail(tmp):
        tmp.write_text('{"trunc')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.write_atomic(target, half_then_fail, fsync=True)
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["out.json"]

    with pytest.raises(TypeError):  # an unserialisable object fails before the rename
        files.write_json(target, {"x": object()})
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["out.json"]


def test_formats_round_trip(tmp_path):
    doc = {"z": 1, "a": {"y": [1.5, None]}}
    files.write_json(tmp_path / "d.json", doc)
    text = (tmp_path / "d.json").read_text(encoding="utf-8")
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    files.write_text(tmp_path / "t.csv", "a,b\r\n1,2\r\n", newline="", fsync=True)
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    files.write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    t = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    files.save_tensors(tmp_path / "w.safetensors", t, metadata={"format": "pt"})
    assert torch.equal(load_file(tmp_path / "w.safetensors")["w"], t["w"])
    assert _listing(tmp_path) == ["b.bin", "d.json", "t.csv", "w.safetensors"]


def test_suffix_reaches_the_writer(tmp_path):
    seen = []
    files.write_atomic(
        tmp_path / "plot.png", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"png")), suffix=".png"
    )
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path and seen[0].name.startswith(".plot.png.")
    assert (tmp_path / "plot.png").read_bytes() == b"png"

"""Folders written by HF `datasets` `save_to_disk`, read without pyarrow or datasets.

The paper's i2b2-2010 RE data is such a folder. Its layout:

    DIR/dataset_dict.json                     {"splits": ["train", "validation"]}
    DIR/<split>/state.json                    {"_data_files": [{"filename": "data-00000-of-00001.arrow"},
                                               ...]}
    DIR/<split>/data-0000i-of-0000n.arrow     Arrow IPC stream: one Schema message, then RecordBatch messages

This file reads the Arrow IPC format (the "streaming format" save_to_disk writes; the "file format",
which is the same stream behind an `ARROW1` magic, too) for flat tables, with a small reader of the
flatbuffers it uses for metadata. Facts used, from the Arrow columnar format specification:

* A message is 0xFFFFFFFF, an int32 metadata length, a flatbuffer `Message` (version, header type,
  header, bodyLength) padded to 8 bytes, then bodyLength bytes of body. 0xFFFFFFFF then 0 ends a
  stream (before format 0.15 the marker was absent: the length came first).
* Header types: 1 Schema, 2 DictionaryBatch, 3 RecordBatch. Schema: endianness, fields. Field:
  name, nullable, type type, type, dictionary, children. RecordBatch: length, nodes (length,
  null_count per field, pre-order), buffers (offset, length into the body), compression.
* Type ids: 2 Int (bitWidth, is_signed), 5 Utf8 and 20 LargeUtf8 (validity, int32 or int64 offsets,
  bytes), 6 Bool (validity, bits). Other types are skipped when they are not asked for.

Columns can be utf8 strings, integers or booleans (what `Value("string")`, `ClassLabel` and
`Value("int64")` features store); a missing column, another type for a wanted column, a null,
compression or a dictionary-encoded column is an error naming the file and column.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# type id -> buffers per array in a RecordBatch, for the flat types (nested ones add their children's)
_FLAT_BUFFERS = {
    1: 0,
    2: 2,
    3: 2,
    4: 3,
    5: 3,
    6: 2,
    7: 2,
    8: 2,
    9: 2,
    10: 2,
    11: 2,
    15: 2,
    18: 2,
    19: 3,
    20: 3,
}
_NESTED_BUFFERS = {12: 2, 13: 1, 16: 1, 17: 2, 21: 2}  # List, Struct, FixedSizeList, Map, LargeList
_TYPE_NAMES = {
    1: "null",
    2: "int",
    3: "float",
    4: "binary",
    5: "utf8",
    6: "bool",
    7: "decimal",
    8: "date",
    9: "time",
    10: "timestamp",
    11: "interval",
    12: "list",
    13: "struct",
    14: "union",
    15: "fixed-size binary",
    16: "fixed-size list",
    17: "map",
    18: "duration",
    19: "large binary",
    20: "large utf8",
    21: "large list",
}
_INT_FORMATS = {
    (8, True): "b",
    (8, False): "B",
    (16, True): "h",
    (16, False): "H",
    (32, True): "i",
    (32, False): "I",
    (64, True): "q",
    (64, False): "Q",
}


class _Table:
    """One flatbuffer table: fields by index through its vtable (absent fields read as None/default)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        size = struct.unpack_from("<H", buf, vtable)[0]
        self.slots = struct.unpack_from(f"<{(size - 4) // 2}H", buf, vtable + 4)

    def _slot(self, i: int) -> int:
        return self.slots[i] if i < len(self.slots) else 0

    def scalar(self, i: int, fmt: str, default=0):
        o = self._slot(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0] if o else default

    def _target(self, i: int):
        o = self._slot(i)
        if not o:
            return None
        at = self.pos + o
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, i: int):
        at = self._target(i)
        return None if at is None else _Table(self.buf, at)

    def string(self, i: int):
        at = self._target(i)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4 : at + 4 + n].decode("utf-8", errors="replace")

    def tables(self, i: int) -> list:
        at = self._target(i)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        items = (at + 4 + 4 * k for k in range(n))
        return [_Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]) for p in items]

    def structs(self, i: int, fmt: str) -> list:
        at = self._target(i)
        if at is None:
            return []
        n, size = struct.unpack_from("<I", self.buf, at)[0], struct.calcsize("<" + fmt)
        return [struct.unpack_from("<" + fmt, self.buf, at + 4 + size * k) for k in range(n)]


def _messages(data: bytes, path: Path):
    """(header type, header table, body bytes) for each message of an Arrow IPC stream (or file)."""
    pos = 8 if data[:6] == b"ARROW1" else 0
    while pos + 4 <= len(data):
        size = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        if size == -1:  # continuation marker
            if pos + 4 > len(data):
                break
            size = struct.unpack_from("<i", data, pos)[0]
            pos += 4
        if size == 0:  # end of stream
            return
        if size < 0 or pos + size > len(data):
            raise ValueError(
                f"{path}: not an Arrow IPC stream (bad message length {size} at byte {pos - 4}); "
                f"expected a data-*.arrow file written by datasets' save_to_disk"
            )
        meta = data[pos : pos + size]
        message = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        pos += size
        body_len = message.scalar(3, "q")
        if pos + body_len > len(data):
            raise ValueError(f"{path}: a message body runs past the end of the file (a truncated file?)")
        yield message.scalar(1, "B"), message.table(2), data[pos : pos + body_len]
        pos += body_len
    raise ValueError(f"{path}: the Arrow stream ends without its end-of-stream marker (a truncated file?)")


def _field_info(field: _Table) -> dict:
    type_id, children = field.scalar(2, "B"), field.tables(5)
    info = {
        "name": field.string(0),
        "type": type_id,
        "dictionary": field.table(4) is not None,
        "children": [_field_info(c) for c in children],
    }
    if type_id == 2:
        t = field.table(3)
        info["int"] = (t.scalar(0, "i"), bool(t.scalar(1, "B")))  # (bitWidth, is_signed)
    return info


def _flatten(info: dict) -> list:
    """The field and its descendants, pre-order: one RecordBatch node each."""
    return [info] + [f for c in info["children"] for f in _flatten(c)]


def _buffer_count(info: dict, path: Path) -> int:
    t = info["type"]
    if t in _FLAT_BUFFERS:
        return _FLAT_BUFFERS[t]
    if t in _NESTED_BUFFERS:
        return _NESTED_BUFFERS[t]
    raise ValueError(
        f"{path}: column {info['name']!r} has Arrow type {_TYPE_NAMES.get(t, t)}, which this reader "
        f"cannot step over; save the data set with string and integer columns only, or as CSV"
    )


def _bit(bits: bytes, i: int) -> bool:
    return bool(bits[i >> 3] >> (i & 7) & 1)


def _column(info: dict, node, buffers: list, body: bytes, path: Path, before: int) -> list:
    """One record batch's values of a column; `before` rows of the file came in earlier batches."""
    n, nulls = node
    name = info["name"]
    if nulls:
        validity = body[buffers[0][0] : buffers[0][0] + buffers[0][1]]
        row = before + next((i for i in range(n) if validity and not _bit(validity, i)), 0) + 1
        raise ValueError(f"{path}: column {name!r} row {row}: missing value (null); every row needs a value")
    t = info["type"]
    if t in (5, 20):
        fmt = "i" if t == 5 else "q"
        (o_at, _), (d_at, d_len) = buffers[1], buffers[2]
        offsets = struct.unpack_from(f"<{n + 1}{fmt}", body, o_at)
        data = body[d_at : d_at + d_len]
        out = []
        for i in range(n):
            try:
                out.append(data[offsets[i] : offsets[i + 1]].decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}: column {name!r} row {before + i + 1}: not UTF-8 ({e.reason})"
                ) from None
        return out
    if t == 2:
        fmt = _INT_FORMATS.get(info["int"])
        if fmt is None:
            raise ValueError(
                f"{path}: column {name!r}: integers of {info['int'][0]} bits are not an Arrow type"
            )
        return list(struct.unpack_from(f"<{n}{fmt}", body, buffers[1][0]))
    if t == 6:
        bits = body[buffers[1][0] : buffers[1][0] + buffers[1][1]]
        return [_bit(bits, i) for i in range(n)]
    raise ValueError(
        f"{path}: column {name!r} has Arrow type {_TYPE_NAMES.get(t, t)}; "
        f"expected strings (utf8), integers or booleans"
    )


def read_arrow(path: Path, columns: tuple[str, ...]) -> dict[str, list]:
    """The named columns of one Arrow IPC stream file, as Python lists (str, int or bool values).
    A truncated or damaged file (offsets past its end, bad UTF-8, ...) raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return _read_arrow(path, path.read_bytes(), columns)
    except (struct.error, IndexError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise ValueError(
            f"{path}: not a readable Arrow file ({type(e).__name__}: {str(e)[:120]}); it is truncated or "
            "damaged: write the data set again with save_to_disk"
        ) from None


def _read_arrow(path: Path, data: bytes, columns: tuple[str, ...]) -> dict[str, list]:
    fields, out = None, {c: [] for c in columns}
    for kind, header, body in _messages(data, path):
        if kind == 1:  # Schema
            if header.scalar(0, "h") != 0:
                raise ValueError(f"{path}: big-endian Arrow data is not supported")
            fields = [_field_info(f) for f in header.tables(1)]
            names = [f["name"] for f in fields]
            missing = [c for c in columns if c not in names]
            if missing:
                raise KeyError(
                    f"{path}: no column {', '.join(repr(c) for c in missing)}; found {', '.join(names)}"
                )
            for f in fields:
                if f["name"] in columns and f["dictionary"]:
                    raise ValueError(
                        f"{path}: column {f['name']!r} is dictionary-encoded; "
                        f"save it as plain strings or integers"
                    )
        elif kind == 3:  # RecordBatch
            if fields is None:
                raise ValueError(f"{path}: a record batch comes before the schema; not an Arrow IPC stream")
            if header.table(3) is not None:
                raise ValueError(f"{path}: the record batches are compressed; save without compression")
            nodes, buffers = header.structs(1, "qq"), header.structs(2, "qq")
            ni = bi = 0
            before = len(out[columns[0]]) if columns else 0
            for f in fields:
                flat = _flatten(f)
                nb = sum(_buffer_count(g, path) for g in flat)
                if f["name"] in columns:
                    out[f["name"]] += _column(f, nodes[ni], buffers[bi : bi + nb], body, path, before)
                ni, bi = ni + len(flat), bi + nb
        elif kind == 2:
            raise ValueError(f"{path}: the stream holds dictionary batches; save the columns as plain values")
    if fields is None:
        raise ValueError(f"{path}: no schema message; not an Arrow IPC stream")
    return out


def is_dataset_folder(d: Path) -> bool:
    """Whether `d` looks like a save_to_disk folder of a DatasetDict."""
    return (Path(d) / "dataset_dict.json").is_file()


def _plain_name(n) -> bool:
    return isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n


def read_split(
    data_dir: Path, split: str, columns: tuple[str, ...]
) -> tuple[Path, list[Path], list[tuple[int, dict]]]:
    """(split folder, its shard files, rows as (row number from 1, {column: value as str})) of one
    split of a save_to_disk DatasetDict folder, the shards in state.json's order."""
    folder = Path(data_dir) / split
    state = folder / "state.json"
    if state.is_file():
        try:
            names = [f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
            if not all(_plain_name(n) for n in names):
                raise ValueError(f"file names {names!r:.80} must be plain names inside {folder}")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f'{state}: expected a JSON object with _data_files [{{"filename": ...}}] '
                f"as save_to_disk writes it ({e})"
            ) from None
        shards = [folder / n for n in names]
    else:
        shards = sorted(folder.glob("data-*.arrow"))
    if not shards:
        raise FileNotFoundError(f"{folder}: no data-*.arrow shards and no state.json naming them")
    rows = []
    for shard in shards:
        cols = read_arrow(shard, columns)
        n = len(cols[columns[0]]) if columns else 0
        rows += [
            (
                len(rows) + i + 1,
                {c: str(int(v) if isinstance(v, bool) else v) for c, v in ((c, cols[c][i]) for c in columns)},
            )
            for i in range(n)
        ]
    return folder, shards, rows


def splits_of(data_dir: Path) -> list[str]:
    """The split names dataset_dict.json lists."""
    path = Path(data_dir) / "dataset_dict.json"
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{path}: expected {{"splits": [...]}} as save_to_disk writes it ({e})') from None
    return [str(s) for s in splits]

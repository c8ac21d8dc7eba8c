"""The one writer every command and save function goes through: atomic files, atomic folders, and
folders a run may only write in when it can prove they are its own.

Files: write a temporary file next to the target, then os.replace it into place. A reader (or a
process killed mid-write) sees the old file or the complete new one, never half of one. If
writing fails, the temporary file is removed and the old file is untouched. The temporary name is
`.<name>.<pid>-<random><suffix>` in the same folder (os.replace is atomic only within one file
system); pass suffix=".png" etc. when the writer infers the format from it. Files get the mode
the umask gives (0644 under the usual 022), whatever the writer created the temporary file with.

Folders (`replace_dir`): the new folder is written beside the old one under a hidden name, then
the two are exchanged in one step (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames, the
old folder kept under `.<name>.<pid>-<random>.old` until the new one is in place, put back by
`recover_dir`). A kill at any moment leaves the old folder or the new one, each complete.

Ownership: `claim_dir` accepts an output folder that is new, empty, or holds the marker file this
program wrote there with the same settings; `check_replaceable` accepts a folder that holds only
the files a save function writes. Anything else is refused with a ValueError that says what to
do, so no command overwrites or deletes a user's file. Symbolic links are never followed for
writing, and names that would leave their folder (`../x`, `/x`) are refused.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

from minipeft.reading import read_json

MARKER_FORMAT = "minipeft.output/1"
_OURS = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}(\.[A-Za-z0-9]+)*$")


def default_mode(directory: bool = False) -> int:
    """0o666 (files) or 0o777 (folders) minus the process umask, as open() and mkdir() give."""
    mask = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                mask = int(line.split()[1], 8)
    except OSError:
        pass
    if mask is None:  # not Linux: read it by setting it (restored at once)
        mask = os.umask(0o022)
        os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _temp_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def refuse_symlink(path: Path, what: str = "path") -> None:
    if Path(path).is_symlink():
        raise ValueError(
            f"{path}: is a symbolic link (to {os.readlink(path)}); refusing to write through it, "
            f"so nothing outside the {what} is touched. Remove the link or choose another path"
        )


def safe_child(folder, name: str) -> Path:
    """folder/name for a plain file name written by us; refuses separators, `..` and links."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(
            f"{folder}: the file name {name!r} would leave its folder; expected a plain name "
            f"(no '/', no '..'). The file naming it was edited or is corrupt"
        )
    path = Path(folder) / name
    refuse_symlink(path, f"folder {folder}")
    return path


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(e: OSError, path: Path) -> OSError:
    """The OSError (same class) with the target named and the promise that the old file stands."""
    if e.errno is None:  # one of our own messages: already clear
        return e
    return type(e)(e.errno, f"{os.strerror(e.errno)} while writing {path}; the previous version is untouched")


def write_atomic(path, write: Callable[[Path], None], *, suffix: str = ".tmp", fsync: bool = False) -> Path:
    """Call write(tmp) on a fresh temporary path next to `path`, then rename it to `path`."""
    path = Path(path)
    refuse_symlink(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; expected a file path", str(path))
    tmp = _temp_name(path, suffix)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        err = _disk_error(e, path)
        raise err from (None if err is e else e)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str, *, newline: str | None = None, fsync: bool = False) -> Path:
    """UTF-8 text; newline="" keeps "\\r\\n" as given (CSV)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)

    return write_atomic(path, write, fsync=fsync)


def write_bytes(path, data: bytes, *, fsync: bool = False) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def write_json(path, obj, *, default: Callable | None = None, fsync: bool = False) -> Path:
    """JSON with indent=2, sorted keys and a trailing newline."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n", fsync=fsync)


def save_tensors(
    path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, *, fsync: bool = False
) -> Path:
    """A safetensors file (tensors must be contiguous CPU tensors, as safetensors requires)."""
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), fsync=fsync)


def append_line(path, line: str) -> None:
    """Append one line to a log file in a folder we own; a symbolic link there is refused."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            refuse_symlink(Path(path))
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line if line.endswith("\n") else line + "\n")


# ---- ownership: which folders a command may write in -------------------------------------------


def is_temporary(name: str) -> bool:
    """A name this module gives its temporary files and folders (`.<name>.<pid>-<hex>...`)."""
    return bool(_OURS.match(name))


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _check_folder(path: Path, flag: str) -> None:
    refuse_symlink(path, flag)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"{flag} is a file, expected a folder; choose a folder path", str(path)
        )


def read_marker(path: Path, marker: str) -> dict | None:
    """The marker document in `path`, None when absent; a damaged one raises naming the file."""
    file = path / marker
    if not file.exists():
        return None
    refuse_symlink(file)
    doc = read_json(file, "choose a new output folder")
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT:
        raise ValueError(
            f"{file}: not a marker written by minipeft (expected format {MARKER_FORMAT!r}); "
            "choose a new output folder"
        )
    return doc


def check_dir_owned(path, *, marker: str, program: str, flag: str = "--out") -> None:
    """Refuse `path` unless it is new, empty, or holds `marker` (which its writer checks further):
    a command that keeps its own marker format (a sweep's sweep.json) calls this before writing."""
    path = Path(path)
    _check_folder(path, flag)
    if not path.is_dir() or (path / marker).is_file():
        return
    present = [n for n in _listing(path) if not is_temporary(n)]
    if present:
        shown = ", ".join(present[:5]) + (" ..." if len(present) > 5 else "")
        raise ValueError(
            f"{flag} {path}: the folder is not empty ({shown}) and holds no {marker} written by "
            f"{program}; refusing to write into it. Choose a new or empty folder"
        )


def claim_dir(
    path,
    *,
    program: str,
    settings: dict,
    marker: str = "run.json",
    flag: str = "--out",
    dry_run: bool = False,
) -> dict:
    """Make `path` ours or refuse it. Accepted: a new folder, an empty one, or one holding `marker`
    written by `program` with equal `settings` (a resumed run). Returns the marker document;
    dry_run=True checks without writing anything."""
    path = Path(path)
    check_dir_owned(path, marker=marker, program=program, flag=flag)
    settings = json.loads(json.dumps(settings, default=str))  # as it will read back
    doc = read_marker(path, marker) if path.is_dir() else None
    if doc is None:
        doc = {"format": MARKER_FORMAT, "program": program, "settings": settings, "finished": False}
        if not dry_run:
            path.mkdir(parents=True, exist_ok=True)
            write_json(path / marker, doc, fsync=True)
        return doc
    if doc.get("program") != program:
        raise ValueError(
            f"{path / marker}: written by {doc.get('program')!r}, not {program}; choose another {flag}"
        )
    old = doc.get("settings") or {}
    diff = {
        k: (old.get(k), settings.get(k))
        for k in sorted(set(old) | set(settings))
        if old.get(k) != settings.get(k)
    }
    if diff:
        shown = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in list(diff.items())[:4])
        raise ValueError(
            f"{path / marker}: this {flag} holds a run with other settings ({shown}); repeat the "
            f"same command to resume it, or choose a new {flag}"
        )
    return doc


def mark_finished(path, marker: str = "run.json", **fields) -> None:
    """Record in the marker that everything the run writes is on disk."""
    doc = read_marker(Path(path), marker)
    if doc is None:
        raise FileNotFoundError(f"{Path(path) / marker}: no marker; claim_dir() the folder first")
    write_json(Path(path) / marker, {**doc, **fields, "finished": True}, fsync=True)


def check_replaceable(path, owned: Collection[str], what: str) -> None:
    """Refuse to replace `path` unless it is absent or a folder holding only names in `owned`
    (the files `what` writes) and our temporary files."""
    path = Path(path)
    _check_folder(path, what)
    if not path.is_dir():
        return
    foreign = [n for n in _listing(path) if n not in owned and not is_temporary(n)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"{path}: holds files that {what} did not write ({shown}); refusing to replace the folder. "
            f"Move them away or choose an empty folder"
        )


# ---- folders replaced as a whole ------------------------------------------------------------------


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux >= 3.15); False when the call is unavailable."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dir(target) -> None:
    """After a kill between the two renames of the fallback swap: put the old folder back, and
    remove temporary folders of `target` left by dead processes."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for p in sorted(target.parent.iterdir()):
        m = _OURS.match(p.name)
        if not m or m["name"] != target.name or not p.is_dir() or p.is_symlink() or _alive(int(m["pid"])):
            continue
        if p.name.endswith(".old") and not target.exists():
            os.replace(p, target)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _swap_in(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if _renameat2_exchange(tmp, target):
        shutil.rmtree(tmp)  # now the old folder
        return
    old = _temp_name(target, ".old")
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old)


@contextmanager
def replace_dir(target, owned: Collection[str], what: str) -> Iterator[Path]:
    """with replace_dir(out, owned=FILES, what="save_adapter") as tmp: write the files into tmp.
    On a clean exit tmp becomes `out` in one step; on an error `out` is left as it was."""
    target = Path(target)
    check_replaceable(target, owned, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = _temp_name(target, ".new")
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        os.chmod(tmp, default_mode(directory=True))
        _swap_in(tmp, target)
        _fsync(target.parent, directory=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        err = _disk_error(e, target)
        raise err from (None if err is e else e)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

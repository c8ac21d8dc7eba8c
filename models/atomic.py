"""Whole-folder replacement for save_pretrained (models/ may not import minipeft; the same scheme
as minipeft.files.replace_dir, reduced to what a model folder needs).

The files are written into a hidden folder beside the target, which then takes the target's
place in one step (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames). A kill at any moment
leaves the old folder or the new one, each complete; a failure leaves the old one untouched.
An existing target holding files save_pretrained does not write is refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path


def _mode(directory: bool) -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _exchange(a: Path, b: Path) -> bool:
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def check_target(target: Path, owned: Collection[str]) -> None:
    if target.is_symlink():
        raise ValueError(f"{target}: is a symbolic link; refusing to write through it. Choose another folder")
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file; expected a folder path", str(target))
    foreign = sorted(p.name for p in target.iterdir() if p.name not in owned) if target.is_dir() else []
    if foreign:
        raise ValueError(
            f"{target}: holds files save_pretrained does not write ({', '.join(foreign[:5])}); "
            "refusing to replace the folder. Move them away or choose an empty folder"
        )


@contextmanager
def replace_dir(target, owned: Collection[str]) -> Iterator[Path]:
    """with replace_dir(out, owned) as tmp: write into tmp; on a clean exit tmp becomes out."""
    target = Path(target)
    check_target(target, owned)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        for f in tmp.iterdir():
            os.chmod(f, _mode(False))
        os.chmod(tmp, _mode(True))
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp)  # the old folder now
        else:
            old = tmp.with_suffix(".old")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno is None:
            raise
        raise type(e)(
            e.errno, f"{e.strerror} while writing {target}; the previous files are untouched"
        ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

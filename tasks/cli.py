"""The one way our command lines turn a user mistake into a clear message and exit status 2.

A user mistake is a ValueError, KeyError or FileNotFoundError raised with a message that names the
file, key or flag, what was expected, what was found and the fix; an OSError from the file system
(a folder where a file belongs, a full disk, no permission) is one too, printed with its file.
Each is printed as one line `error: ...` on stderr, with exit status 2. Anything else is our bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FloatingPointError, OSError)

_FIXES = {
    errno.ENOSPC: "free space on that disk, or write elsewhere, then run the command again",
    errno.EDQUOT: "free space within your quota, then run the command again",
    errno.EACCES: "check the permissions of that path, or choose another one",
    errno.EPERM: "check the permissions of that path, or choose another one",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENOTDIR: "a part of that path is a file: give a folder path",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENAMETOOLONG: "use a shorter path",
}


def comma_list(text: str) -> tuple[str, ...]:
    """'query, value,' -> ('query', 'value'): a comma-separated flag value (an argparse type)."""
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def one_line(e: BaseException) -> str:
    """The message of a user error on one line; an OSError names its file and a fix."""
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, OSError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename else ""
        msg = f"{where}{e.strerror}"
        if e.errno in _FIXES:
            msg += f"; {_FIXES[e.errno]}"
    else:
        msg = str(e)
    return " ".join(msg.split())


def run_or_exit(fn, *args, extra_errors: tuple = ()):
    """fn(*args); a user mistake (USER_ERRORS plus `extra_errors`) is printed as `error: <message>`
    on one line of stderr and ends the process with status 2, no traceback."""
    try:
        return fn(*args)
    except USER_ERRORS + tuple(extra_errors) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (`error: <prog>: <message>; see --help`), status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())}; see {self.prog} --help\n")

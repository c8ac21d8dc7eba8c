"""The one way our command lines turn a user mistake into a clear message and exit status 2."""

from __future__ import annotations

import sys

USER_ERRORS = (ValueError, KeyError, FileNotFoundError)


def run_or_exit(fn, *args, extra_errors: tuple = ()):
    """fn(*args); a user mistake (ValueError, KeyError, FileNotFoundError, plus `extra_errors`) is
    printed as `error: <message>` on stderr and ends the process with status 2, no traceback."""
    try:
        return fn(*args)
    except USER_ERRORS + tuple(extra_errors) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None

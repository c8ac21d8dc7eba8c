"""The fuzzing suite's harness: run an entry point on one hostile input and classify the outcome.

Every input ends in exactly one of:
- a clear error: a command line exits with status 2 and prints one line `error: ...` naming the
  file, key or flag (`names`); a library call raises ValueError/KeyError/FileNotFoundError (or an
  OSError) whose message names it;
- a documented acceptance (docs/data-safety.md): the call succeeds, and the case says it may;
and never in a traceback, a hang (SIGALRM after `timeout` seconds) or a changed file outside the
places the case may write. TALLY counts them; conftest prints it at the end of the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
import traceback
from pathlib import Path

TALLY = {"tried": 0, "clear": 0, "accepted": 0, "tracebacks": 0, "user_files_touched": 0, "kills": 0}
LIB_ERRORS = (ValueError, KeyError, FileNotFoundError, OSError)


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    def ring(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Relative path -> content hash (or 'dir' / 'link -> target') of everything under root."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"link -> {p.readlink()}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _names_one(text: str, names) -> bool:
    return any(str(n) in text for n in names)


def count(kind: str) -> None:
    TALLY["tried"] += 1
    TALLY[kind] += 1


def check_cli(main, argv, sandbox: Path, names, *, may_accept=False, writes=(), timeout=120) -> str:
    """Run `main(argv)` in-process. Returns "clear" or "accepted"; anything else fails the test.
    `names`: strings one of which the error line must contain (file, key or flag); `writes`: paths
    under `sandbox` the run may create or change (its --out); every other file must stay as it was."""
    before = snapshot(sandbox, tuple(Path(w) for w in writes))
    err, out = io.StringIO(), io.StringIO()
    code, tb = 0, None
    try:
        with deadline(timeout), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback or hang is the finding
        tb = traceback.format_exc()
    after = snapshot(sandbox, tuple(Path(w) for w in writes))
    if before != after:
        TALLY["user_files_touched"] += 1
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise AssertionError(f"{argv}: changed files outside --out: {changed[:5]}")
    if tb is not None:
        TALLY["tracebacks"] += 1
        raise AssertionError(
            f"{argv}: traceback instead of a one-line error:\n{tb}\nstderr: {err.getvalue()}"
        )
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    if code == 0:
        assert may_accept, (
            f"{argv}: accepted, but this input must be refused; stderr: {err.getvalue()[-500:]}"
        )
        count("accepted")
        return "accepted"
    assert code == 2, f"{argv}: exit status {code}, expected 2; stderr: {err.getvalue()[-800:]}"
    assert len(lines) == 1, f"{argv}: expected one `error:` line, got {lines or err.getvalue()[-800:]}"
    assert _names_one(lines[0], names), f"{argv}: the error names none of {names}: {lines[0]}"
    count("clear")
    return "clear"


def check_lib(fn, *args, names, may_accept=False, timeout=60, **kwargs):
    """Call a library function on hostile input: a clear exception naming one of `names`, or (when
    documented) a return value. Returns ("clear", exc) or ("accepted", value)."""
    try:
        with deadline(timeout):
            value = fn(*args, **kwargs)
    except LIB_ERRORS as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {msg}"
        assert _names_one(msg, names), f"{fn.__name__}{args}: the error names none of {names}: {msg}"
        count("clear")
        return "clear", e
    except Hang:
        TALLY["tracebacks"] += 1
        raise
    except BaseException:
        TALLY["tracebacks"] += 1
        raise AssertionError(
            f"{fn.__name__}: traceback on hostile input:\n{traceback.format_exc()}"
        ) from None
    assert may_accept, f"{fn.__name__}{args}: accepted, but this input must be refused"
    count("accepted")
    return "accepted", value


def summary() -> str:
    t = TALLY
    return (
        f"fuzz: {t['tried']} inputs tried, {t['clear']} clear errors, {t['accepted']} documented "
        f"acceptances, {t['tracebacks']} tracebacks, {t['user_files_touched']} user files touched, "
        f"{t['kills']} kills survived with identical results"
    )

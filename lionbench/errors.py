"""Bad user input, an interrupted run, the exit codes, the one-line messages, and the
output-directory check.

Anything raised as `UserError` reaches `cli.main`, which prints it as the one error line
(`say_error`) with exit code 2 and no traceback, before any run directory exists. Only a Hydra
job prints its own (a bad run of a multirun must not stop the others). `Interrupted` ends a
command whose run stopped on a signal after checkpointing. Everything else is a bug or a runtime
failure.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path


class UserError(Exception):
    """Bad input: an unknown name, an invalid value, a missing path."""


def first_line(e: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (its type when it has none), for
    one-line messages; `with_type`: `<ExceptionType>: <first line>`."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    return f"{type(e).__name__}: {lines[0]}" if with_type else lines[0]


def say_error(message: str | BaseException) -> None:
    """THE error line: `error: <message>` on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning line: `warning: <message>` on stderr; the command goes on."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


# A write that failed for want of space: ENOSPC, or EDQUOT (a user's quota on a shared cluster).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


def disk_full_error(e: OSError, path: Path | str) -> OSError:
    """The same error naming the file it failed to write (a write on an open file names none)."""
    return OSError(e.errno, e.strerror or os.strerror(e.errno or errno.ENOSPC), str(path))


def disk_full_line(e: OSError, where: Path) -> str:
    """The one line a run that ran out of space ends with: the condition, the file (or the run
    directory, when the failed write named none) and what to do. Checkpoints are written to a
    temporary file and renamed, so the last complete one is still there to resume from."""
    path = e.filename or where
    return (
        f"disk full ({e.strerror or os.strerror(errno.ENOSPC)}) writing {path}; free space "
        f"there and run the same command again (it resumes from the last checkpoint)"
    )


def check_output_dir(out: Path, option: str = "--out") -> None:
    """An output directory must be one or become one: no file in the way, writable."""

    _check_links(out, option)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} exists and is not a directory")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {out} is not writable ({existing} denies writing)")
    try:  # permissions are not the whole story (read-only mounts, /proc, quotas, root)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"{option} {out} is not writable ({existing}: {e.strerror})") from None


def _check_links(out: Path, option: str) -> None:
    """A symlink on the way that leads nowhere (dangling, or a loop) cannot become a
    directory: `mkdir` would fail on it after the run had started."""
    for p in (out.absolute(), *out.absolute().parents):
        if not p.is_symlink() or p.exists():
            continue
        try:
            p.resolve(strict=True)
            what = "a symlink that cannot be followed"
        except FileNotFoundError:
            what = f"a dangling symlink (to {os.readlink(p)}, which does not exist)"
        except (RuntimeError, OSError):  # RuntimeError before Python 3.13, ELOOP after
            what = "a symlink loop"
        raise UserError(f"{option} {out}: {p} is {what}; point it at a directory or remove it")


class Interrupted(BaseException):
    """Raised once an interrupted run has saved its checkpoint and summary.

    A BaseException, like KeyboardInterrupt, so that it passes through Hydra's job runner (which
    records ordinary exceptions as failed jobs and goes on to the next) and ends the whole command:
    a preempted sweep must stop, not start its next run."""

    def __init__(self, signum: int, step: int, run_dir: Path) -> None:
        super().__init__(signum, step, run_dir)
        self.signum, self.step, self.run_dir = signum, step, run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by signal N"


# --------------------------------------------------------------- usage errors (Click's)


def click_exception() -> type[Exception]:
    """ClickException of the click that Typer runs on: recent Typer releases carry their own
    copy of click, older ones use click itself."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


def one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def usage_hint(e: Exception) -> str:
    """What is accepted where the usage error happened: a group's commands, else its help."""
    ctx = getattr(e, "ctx", None)
    if ctx is None:
        return ""
    if hasattr(ctx.command, "list_commands"):
        return f" (commands: {', '.join(ctx.command.list_commands(ctx))})"
    return f" (see '{ctx.command_path} --help')"


def usage_line(e: Exception) -> str:
    """A Click usage error as the one error line, with what is accepted where it happened."""
    return f"{one_line(e.format_message()).rstrip('.')}{usage_hint(e)}"  # type: ignore[attr-defined]

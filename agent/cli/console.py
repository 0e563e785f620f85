"""What every `vitron` command shares: the consoles, one-line errors, progress bars."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# The commands that help with an error, by its class or the field it names: the lower layers name settings and
# fields only, the command line knows its own commands.
ADVICE_BY_ERROR = {
    "SessionNotFound": "`vitron sessions list` shows the sessions",
    "StepNotFound": "`vitron sessions show ID` shows a session's steps",
    "AliasNotFound": "`vitron sessions show ID` shows a session's artifacts",
}
ADVICE_BY_FIELD = {
    "VITRON_DATABASE_AUTO_UPGRADE": "`vitron sessions migrate` upgrades it",
    "VITRON_MODELS_FILE": "`vitron models` shows what each module uses",
    "backend": "`vitron models` shows each module's backends",
}


def advice(exc: Any) -> str:
    """The command that helps with one of our errors, if any."""
    return ADVICE_BY_ERROR.get(type(exc).__name__) or ADVICE_BY_FIELD.get(exc.field or "", "")


def clear_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one line on stderr and a non-zero exit; tracebacks only with VITRON_DEBUG=1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from schemas import VitronError  # here, not at import: `vitron --help` loads no schemas

        try:
            refuse_undecodable(kwargs)
            return fn(*args, **kwargs)
        except VitronError as exc:
            more = advice(exc)
            fail(exc.message + (f"; {more}" if more else ""), 2)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("VITRON_DEBUG"):
                raise
            if (line := environment_error(exc)) is not None:
                fail(line, 2)
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with VITRON_DEBUG=1 for details)", 1)

    return wrapper


def refuse_undecodable(arguments: dict[str, Any]) -> None:
    """Refuse a text argument that was not UTF-8: Python keeps such bytes of argv as lone surrogates, which no
    database, file or model can take. A path may hold them (a file's name is bytes), so only text is checked."""
    from schemas import InvalidInput

    for name, value in arguments.items():
        for text in value if isinstance(value, list | tuple) else (value,):
            if isinstance(text, str) and (bad := next((c for c in text if "\udc80" <= c <= "\udcff"), None)):
                raise InvalidInput(f"the text is not UTF-8: byte 0x{ord(bad) - 0xDC00:02x} at character "
                                   f"{text.index(bad)}", field=name,
                                   fix="give the text in UTF-8 (check the terminal's or the script's encoding)")


_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


def environment_error(exc: Exception) -> str | None:
    """One line for what is wrong with this machine rather than with vitron, or None: the settings' values (a
    `VITRON_*` variable that does not parse), a full disk, a file that cannot be written or read. The store and the
    database say these in their own words where they can; this is the rest."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == "VitronSettings":
        err = exc.errors(include_url=False)[0]
        name = "VITRON_" + "_".join(str(part) for part in err["loc"]).upper()
        return f"{name}: {err['msg']}, got {err.get('input')!r} (fix the variable, or unset it for the default)"
    if isinstance(exc, OSError) and exc.errno in _FULL | _DENIED:
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno in _FULL:
            return f"{where}the disk is full ({exc.strerror}) (free space on it, or point VITRON_HOME at another disk)"
        return (f"{where}{exc.strerror} (check the permissions; vitron keeps its data in VITRON_HOME, which must be a "
                "folder this user can write)")
    return None


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[float, str], None]]:
    """A rich progress bar on stderr; yields the callback tools report progress to."""
    if not enabled or not err.is_terminal:  # a bar in a log is noise (and rich leaves a blank line there)
        yield lambda fraction, message: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        yield lambda fraction, message: bar.update(task, completed=fraction, description=message)

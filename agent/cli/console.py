"""What every `vitron` command shares: the consoles, one-line errors, progress bars."""

from __future__ import annotations

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
    "VITRON_BROKER_URL": "`vitron worker` starts a worker",
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
            return fn(*args, **kwargs)
        except VitronError as exc:
            more = advice(exc)
            fail(exc.message + (f"; {more}" if more else ""), 2)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("VITRON_DEBUG"):
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with VITRON_DEBUG=1 for details)", 1)

    return wrapper


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[float, str], None]]:
    """A rich progress bar on stderr; yields the callback tools report progress to."""
    if not enabled:
        yield lambda fraction, message: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)
        yield lambda fraction, message: bar.update(task, completed=fraction, description=message)

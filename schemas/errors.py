"""Typed errors. Each says what went wrong, on which field, and how to fix it."""

from __future__ import annotations

import os

ECHO_SETTING = "VITRON_ERROR_ECHO_CHARS"
DEFAULT_ECHO_CHARS = 2000
"""How much of a problem's text (which may quote the bad input: a 2 MB line) an error keeps; the setting changes it."""


def echo_limit() -> int:
    try:
        return max(80, int(os.environ.get(ECHO_SETTING, DEFAULT_ECHO_CHARS)))
    except ValueError:
        return DEFAULT_ECHO_CHARS


def bounded(text: str) -> str:
    """`text`, its middle left out past the echo limit (the start says what went wrong, the end often where)."""
    limit = echo_limit()
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return f"{text[:head]} …[{len(text) - head - tail:,} characters left out]… {text[-tail:]}"


class VitronError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, problem: str, *, field: str | None = None, fix: str | None = None) -> None:
        self.problem = bounded(problem) if isinstance(problem, str) else problem
        self.field = field
        self.fix = bounded(fix) if isinstance(fix, str) else fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.field}: {self.problem}" if self.field else self.problem
        return f"{text} ({self.fix})" if self.fix else text

    def to_dict(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "field": self.field, "problem": self.problem, "fix": self.fix}


def error_text(exc: BaseException) -> str:
    """What an error says to a user: one of ours says its problem, field and fix; anything else its type and text."""
    return exc.message if isinstance(exc, VitronError) else bounded(f"{type(exc).__name__}: {exc}")


def a_or_an(noun: str) -> str:
    """`an image`, `a mask`."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


class InvalidInput(VitronError, ValueError):
    """A value given by a user or a planner is not acceptable."""


class UnknownModule(InvalidInput):
    """No specialist module goes by that name."""


class PlanSyntaxError(InvalidInput):
    """A plan's text does not follow the invocation grammar; says what was found, where, and what was expected."""

    def __init__(self, problem: str, *, text: str, position: int, expected: str, fix: str | None = None) -> None:
        self.position = position
        self.expected = expected
        # Line and column (both from 1) are for humans; `position` is the character offset into `text`.
        self.line = text.count("\n", 0, position) + 1
        self.column = position - text.rfind("\n", 0, position)
        self.found = repr(text[position:position + 20]) if position < len(text) else "end of text"
        super().__init__(
            f"{problem}: found {self.found} at offset {position} (line {self.line}, column {self.column}); "
            f"expected {expected}",
            field="plan",
            fix=fix,
        )


class UnsupportedOperation(InvalidInput):
    """The command asks for something the chosen backend cannot do."""


class AmbiguousTarget(VitronError):
    """A command's phrase fits several objects equally ("the red object" with two alike): the agent asks which one.
    `question` names each with its box; `boxes` are their (x1, y1, x2, y2)."""

    def __init__(self, question: str, *, boxes: list[tuple[float, float, float, float]] | None = None,
                 fix: str | None = None) -> None:
        super().__init__(question, field="command", fix=fix)
        self.question = question
        self.boxes = list(boxes or [])


def question_of(exc: BaseException) -> str | None:
    """The question an error asks the user, or None: a target several objects fit (`AmbiguousTarget`, also as the
    `JobFailed` a worker sends back, which keeps its class name and its problem)."""
    if isinstance(exc, AmbiguousTarget):
        return exc.question
    if isinstance(exc, VitronError) and getattr(exc, "error_type", None) == AmbiguousTarget.__name__:
        return exc.problem
    return None


class WorkflowFailed(VitronError):
    """A step of a workflow run did not succeed; `field` names the step (`steps.paint`)."""


class ArtifactNotFound(VitronError):
    """A ref names content the store does not hold."""


class UnsafePath(VitronError):
    """A path would read or write outside the artifact store's root."""


class CorruptArtifact(VitronError):
    """A file exists but cannot be decoded as the kind it claims to be."""


class ArtifactDamaged(CorruptArtifact):
    """An object in the artifact store no longer hashes to the SHA-256 it is stored under: the store's copy is damaged
    (a truncated write, a disk error, an edit by hand), not the file a user gave."""


class BackendUnavailable(VitronError):
    """The module needs a backend that is not configured on this machine."""


class SessionBusy(VitronError):
    """Another process (or thread) is running a turn of this session; `expires_at` is when its lease runs out."""

    def __init__(self, problem: str, *, field: str | None = None, fix: str | None = None,
                 expires_at: float | None = None) -> None:
        super().__init__(problem, field=field, fix=fix)
        self.expires_at = expires_at  # a POSIX timestamp


class SessionNotFound(VitronError):
    """No session has that id."""


class AliasNotFound(VitronError):
    """A session holds no artifact by that alias."""


class StepNotFound(VitronError):
    """No step has that id."""


class DatabaseUnavailable(VitronError):
    """The session database cannot be reached, or stayed busy past every retry."""


class DatabaseOutOfDate(VitronError):
    """The session database's schema is not the one this code expects (older, newer or unknown)."""

"""`SessionMemory`: what the agent remembers of a session, in SQL, with blobs left in the artifact store.

A session holds turns (numbered 1, 2, 3… in append order), steps (one specialist invocation each, with
the executor job that runs it), and artifacts. Each artifact gets a stable, per-session alias made of
its kind's prefix and a counter (`img1`, `mask2`, `video1`, `masks1`, `emb1`, `boxes1`, `text1`),
assigned when it is recorded, and remembers what made it: the step and the parent artifacts. A content has one
row, except that an undo gives an earlier content a new row (`record_undo`), so it is the newest of its kind again.

Every write locks its session (a row lock on PostgreSQL; SQLite's single writer lock, taken at BEGIN),
so concurrent writers to one session never lose a turn or reuse a number, and each is retried from the
start after a transient "database is locked" or serialization failure.

Tokens are counted approximately, as ceil(characters / 4) of the text, the reply and the invocations'
compact JSON: the usual rule of thumb for English with BPE tokenizers, a little high for prose, which
errs on the side of fitting the planner's context.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, Row, Table, and_, bindparam, case, delete, func, insert, literal, or_, select, update
from sqlalchemy import text as sql_text

from schemas import (
    FINISHED_STATUSES,
    STEP_STATUSES,
    AliasNotFound,
    ArtifactNotFound,
    ArtifactRef,
    InvalidInput,
    Invocation,
    SessionNotFound,
    StepNotFound,
    StepStatus,
    VitronError,
    VitronSettings,
    step_number,
)

from .artifacts import ArtifactStore
from .database import Database
from .models import (
    ROLES,
    ArtifactParentRow,
    ArtifactRow,
    SessionRow,
    StepOutputRow,
    StepRow,
    TurnRow,
    UploadRow,
    utcnow,
)

Role = Literal["user", "assistant", "system", "tool"]
"""Who said a turn: the user, the planner (`assistant`), a system prompt, or a tool's message."""


ALIAS_PREFIXES: dict[str, str] = {
    "image": "img", "mask": "mask", "video": "video", "masks": "masks",
    "embedding": "emb", "boxes": "boxes", "text": "text",
}
"""The alias prefix of each artifact kind: `img1`, `mask2`, `emb1`…"""

_ALIAS = re.compile(r"^@?([A-Za-z_][A-Za-z0-9_]*)$")
_BATCH = 500  # bound the IN (...) lists: SQLite allows a limited number of parameters per statement


def approx_tokens(*texts: str | None) -> int:
    """Approximate token count: ceil(characters / 4) over the given texts."""
    return sum(math.ceil(len(t) / 4) for t in texts if t)


class _AnyOwner:
    def __repr__(self) -> str:
        return "ANY_OWNER"


ANY_OWNER: Final = _AnyOwner()
"""The owner that reaches every owner's sessions: for the operator's own tools on the machine that holds the
database (`vitron sessions …`, `vitron jobs list`), never for a request made with a key."""

Owner = str | None | _AnyOwner
"""Whose sessions a look-up reaches: an owner's (a server key's owner) only; None, the local user's (the Python API,
`vitron run`, a server without keys: the sessions created with no owner) only; or `ANY_OWNER`'s, everyone's. A
session of another owner is not found, as if there were none."""


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """A session's header, with how many turns and artifacts it holds."""

    id: str
    title: str
    owner: str | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    turns: int
    artifacts: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "owner": self.owner, "settings": self.settings,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "turns": self.turns, "artifacts": self.artifacts}


@dataclass(frozen=True)
class ArtifactEntry:
    """One row of a session's artifact table: the ref (alias filled in) and what made it."""

    ref: ArtifactRef
    made_by: str  # the producing step's module, or "upload", "planner" (signal embeddings) or "undo" (`restored`)
    parents: tuple[str, ...] = ()  # aliases of what it was made from, in input order
    step_id: int | None = None
    turn_seq: int | None = None
    size: int | None = None
    label: str | None = None
    created_at: datetime | None = None

    @property
    def alias(self) -> str:
        return self.ref.alias or ""

    def describe(self) -> str:
        """One line for the planner: `@mask1 mask [480, 640]: image_segmentation of @img1 (turn 2)`."""
        shape = f" {list(self.ref.shape)}" if self.ref.shape else ""
        source = self.made_by + (f" of {', '.join('@' + p for p in self.parents)}" if self.parents else "")
        turn = f" (turn {self.turn_seq})" if self.turn_seq is not None else ""
        label = f" “{self.label}”" if self.label else ""
        return f"@{self.alias} {self.ref.kind}{shape}{label}: {source}{turn}"

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "kind": self.ref.kind, "sha256": self.ref.sha256,
                "media_type": self.ref.media_type, "shape": list(self.ref.shape), "size": self.size,
                "made_by": self.made_by, "parents": list(self.parents), "step_id": self.step_id,
                "turn": self.turn_seq, "label": self.label,
                "created_at": self.created_at.isoformat() if self.created_at else None}


UNDO = "undo"
"""What made an undo's row: a new alias for an earlier artifact's content, made current again (`record_undo`)."""

_MEDIA_KINDS = ("image", "video")  # what an edit or an undo is about; masks and the rest belong to one of these


def restored(entries: Sequence[ArtifactEntry], entry: ArtifactEntry) -> ArtifactEntry:
    """The artifact an undo's row brought back: the session's row of the same content that is not an undo (the
    entry itself for any other row)."""
    if entry.made_by != UNDO:
        return entry
    return next((e for e in entries if e.ref.sha256 == entry.ref.sha256 and e.made_by != UNDO), entry)


def undo_target(entries: Sequence[ArtifactEntry], kind: str | None = None) -> ArtifactEntry | None:
    """What "undo" goes back to: the artifact before the last edit. The newest image or video (of `kind`, if given)
    that a step made, or an undo brought back, and of that (an undo's row read as what it brought back, so that
    undoing twice walks further back) its first image or video parent: undoing an edit gives the edited image,
    undoing an animation the image animated. None when there is nothing before it (an upload, a generated image)."""
    kinds = (kind,) if kind else _MEDIA_KINDS
    last = next((e for e in reversed(entries) if e.ref.kind in kinds and e.made_by not in ("upload", "planner")), None)
    if last is None:
        return None
    last = restored(entries, last)
    by_alias = {e.alias: e for e in entries}
    parent = next((by_alias[p] for p in last.parents if p in by_alias and by_alias[p].ref.kind in _MEDIA_KINDS), None)
    return None if parent is None else restored(entries, parent)


def undo_replaces(entries: Sequence[ArtifactEntry], target: ArtifactEntry) -> ArtifactEntry | None:
    """The artifact an undo back to `target` replaces, its row's parent: the newest image or video (for a target of
    another kind, the newest of that kind); None when that already is the target's content."""
    kinds = _MEDIA_KINDS if target.ref.kind in _MEDIA_KINDS else (target.ref.kind,)
    newest = next((e for e in reversed(entries) if e.ref.kind in kinds), None)
    return None if newest is None or newest.ref.sha256 == target.ref.sha256 else newest


@dataclass(frozen=True)
class TurnRecord:
    """One turn. `invocations` are JSON (tensors as refs); rebuild models with `Invocation.model_validate`."""

    id: int
    session_id: str
    seq: int
    role: Role
    text: str
    invocations: tuple[dict[str, Any], ...]
    reply: str | None
    tokens: int
    created_at: datetime
    artifacts: tuple[ArtifactRef, ...] = ()  # recorded in this turn (uploads and step outputs)

    def describe(self) -> str:
        """The turn as the planner reads it: role, words, and the aliases it brought or made."""
        words = self.reply if self.role == "assistant" and self.reply else self.text
        refs = " ".join(f"@{r.alias}" for r in self.artifacts)
        return f"[{self.seq}] {self.role}: {words}" + (f" [{refs}]" if refs else "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "role": self.role, "text": self.text,
                "invocations": list(self.invocations), "reply": self.reply, "tokens": self.tokens,
                "created_at": self.created_at.isoformat(), "artifacts": [r.alias for r in self.artifacts]}


@dataclass(frozen=True)
class StepRecord:
    """One specialist invocation and its job."""

    id: int
    session_id: str
    turn_id: int | None
    position: int | None
    module: str
    command: str
    invocation: dict[str, Any]
    backend: str | None
    status: StepStatus
    progress: float
    message: str | None
    job_id: str | None
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish (or None while it has not both started and finished)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        def stamp(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {"id": self.id, "turn_id": self.turn_id, "position": self.position, "module": self.module,
                "command": self.command, "backend": self.backend, "status": self.status, "progress": self.progress,
                "message": self.message, "job_id": self.job_id, "error": self.error,
                "created_at": stamp(self.created_at), "started_at": stamp(self.started_at),
                "finished_at": stamp(self.finished_at), "duration_s": self.duration_s}


@dataclass(frozen=True)
class Lineage:
    """An artifact and, recursively, what it was made from; the leaves are uploads (or planner signals)."""

    artifact: ArtifactEntry
    parents: tuple[Lineage, ...] = ()

    def sources(self) -> tuple[ArtifactEntry, ...]:
        """The artifacts at the far end of the lineage (nothing made them), each once, oldest alias first."""
        found: dict[str, ArtifactEntry] = {}
        for node in self.walk():
            if not node.parents:
                found.setdefault(node.artifact.alias, node.artifact)
        return tuple(found.values())

    def walk(self) -> Iterable[Lineage]:
        """Every node, depth first, each once."""
        seen: set[str] = set()
        stack = [self]
        while stack:
            node = stack.pop()
            if node.artifact.alias in seen:
                continue
            seen.add(node.artifact.alias)
            yield node
            stack.extend(reversed(node.parents))

    def describe(self, indent: str = "") -> str:
        lines = [indent + self.artifact.describe()]
        for parent in self.parents:
            lines.append(parent.describe(indent + "  "))
        return "\n".join(lines)


@dataclass(frozen=True)
class History:
    """The planner's context: the latest turns within a token budget, older turns summed up by their artifacts."""

    session_id: str
    turns: tuple[TurnRecord, ...]
    tokens: int
    earlier_turns: int
    earlier_artifacts: tuple[ArtifactEntry, ...] = ()  # the newest of them, at most `summary_limit`
    earlier_artifact_count: int = 0

    def render(self) -> str:
        """Plain text for the planner's prompt."""
        lines: list[str] = []
        if self.earlier_turns:
            shown = len(self.earlier_artifacts)
            more = self.earlier_artifact_count - shown
            lines.append(f"(earlier: {self.earlier_turns} turns, {self.earlier_artifact_count} artifacts"
                         + (f"; the {shown} most recent:" if more else ":" if shown else "") + ")")
            lines.extend("  " + a.describe() for a in self.earlier_artifacts)
        lines.extend(t.describe() for t in self.turns)
        return "\n".join(lines)


@dataclass(frozen=True)
class DeletedSession:
    """What deleting a session removed."""

    session_id: str
    turns: int
    steps: int
    artifacts: int
    blobs_removed: tuple[str, ...] = field(default=())  # sha256 of store files no other session referenced
    blobs_kept: tuple[str, ...] = field(default=())  # … left in the store: put within the store's delete grace


# -- the API ---------------------------------------------------------------------------------------


class SessionMemory:
    """Sessions, turns, steps, jobs and artifacts in SQL (SQLite or PostgreSQL); blobs in the artifact store."""

    def __init__(self, database: Database | str, store: ArtifactStore) -> None:
        self.db = database if isinstance(database, Database) else Database.open(database)
        self.store = store

    @classmethod
    def from_settings(cls, settings: VitronSettings | None = None) -> SessionMemory:
        """The configured database (upgraded on start when allowed) and artifact store."""
        settings = settings or VitronSettings()
        return cls(Database.from_settings(settings), ArtifactStore.from_settings(settings))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SessionMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ------------------------------------------------------------------------------

    def create_session(self, title: str = "", *, owner: str | None = None,
                       settings: Mapping[str, Any] | None = None) -> SessionInfo:
        """Start a new session; its id is a random 32-hex-digit string."""
        settings_json = _json_object(settings, "settings")

        def work(c: Connection) -> SessionInfo:
            now = utcnow()
            row = c.execute(insert(_sessions).returning(*_sessions.c), {
                "id": uuid.uuid4().hex, "title": title, "owner": owner, "settings": settings_json,
                "created_at": now, "updated_at": now}).one()
            return _session_info(row, 0, 0)

        return self.db.write(work)

    def get_session(self, session_id: str) -> SessionInfo:
        """The session's header and counts; `SessionNotFound` if there is none by that id."""
        return self.db.read(lambda c: self._info(c, _session_row(c, session_id)))

    def list_sessions(self, *, owner: Owner = None, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        """`owner`'s sessions (see `Owner`: None is the local user's, those with no owner), most recently active
        first."""
        turns = select(func.count()).where(_turns.c.session_id == _sessions.c.id).scalar_subquery()
        artifacts = select(func.count()).where(_artifacts.c.session_id == _sessions.c.id).scalar_subquery()
        query = select(_sessions, turns.label("n_turns"), artifacts.label("n_artifacts")).order_by(
            _sessions.c.updated_at.desc(), _sessions.c.id)
        query = _owned_by(query, owner).limit(limit).offset(offset)
        return self.db.read(lambda c: [_session_info(row, row.n_turns, row.n_artifacts) for row in c.execute(query)])

    def resolve_session_id(self, text: str, *, owner: Owner = None) -> str:
        """A full session id from the id or a unique prefix of it (at least 4 characters), as people type them,
        among `owner`'s sessions only (see `Owner`): another owner's id or prefix is no session at all."""
        text = text.strip()

        def work(c: Connection) -> str:
            if c.scalar(_owned_by(select(_sessions.c.id).where(_sessions.c.id == text), owner)) is not None:
                return text
            if len(text) >= 4 and re.fullmatch(r"[0-9a-f]+", text):
                found = c.scalars(_owned_by(select(_sessions.c.id).where(_sessions.c.id.startswith(text)), owner)
                                  .limit(3)).all()
                if len(found) == 1:
                    return found[0]
                if len(found) > 1:
                    raise InvalidInput(f"session id prefix {text!r} matches several sessions", field="session",
                                       fix="give more characters of the id")
            raise _no_session(text)

        return self.db.read(work)

    def rename_session(self, session_id: str, title: str) -> SessionInfo:
        def work(c: Connection) -> SessionInfo:
            _lock_session(c, session_id)
            row = c.execute(update(_sessions).where(_sessions.c.id == session_id)
                            .values(title=title, updated_at=utcnow()).returning(*_sessions.c)).one()
            return self._info(c, row)

        return self.db.write(work)

    def delete_session(self, session_id: str) -> DeletedSession:
        """Delete the session's rows and checkpoints, then the blobs that no other session references."""

        # Deleting and recording agree on blobs. A recording puts its blob, then writes its row; every recording
        # checks, under a lock, that its blobs are still in the store (`_hold_blobs`); a deletion checks references
        # and removes the blobs no row uses under the same lock (SQLite's one write lock; on PostgreSQL an advisory
        # lock per blob bucket, shared by recordings, exclusive here), last in its transaction. So a row never
        # lands for a blob a deletion removed. And a blob put within the store's grace period (a put touches an
        # existing blob's mtime) is kept: the row of a recording in flight may not be written yet, and it would
        # otherwise fail for want of the blob it had just put.
        def work(c: Connection) -> DeletedSession:
            _lock_session(c, session_id)
            counts = [c.scalar(select(func.count()).where(table.c.session_id == session_id))
                      for table in (_turns, _steps, _artifacts)]
            rows = c.execute(select(_artifacts.c.sha256, _artifacts.c.kind, _artifacts.c.media_type)
                             .where(_artifacts.c.session_id == session_id)).all()
            c.execute(delete(_sessions).where(_sessions.c.id == session_id))  # cascades to every child row
            unused = _unreferenced(c, {r.sha256 for r in rows})
            if unused and c.dialect.name == "postgresql":
                # Wait for the recordings of these blobs in flight; their rows count in the second look.
                c.execute(_LOCK_BLOBS, {"space": _BLOB_LOCKS, "keys": _blob_lock_keys(unused)})
                unused = _unreferenced(c, unused)
            orphans = {r.sha256: ArtifactRef(sha256=r.sha256, kind=r.kind, media_type=r.media_type)
                       for r in rows if r.sha256 in unused}
            # The files go before the commit, under the lock; if the commit then failed, the session's rows would
            # stay without those blobs: a deletion asked for anyway.
            removed: list[str] = []
            kept: list[str] = []
            for ref in orphans.values():
                if self.store.delete(ref, keep_recent=True):
                    removed.append(ref.sha256)
                elif self.store.exists(ref):
                    kept.append(ref.sha256)
            return DeletedSession(session_id, *counts, blobs_removed=tuple(removed), blobs_kept=tuple(kept))

        result = self.db.write(work)
        from .checkpoints import delete_thread_checkpoints

        delete_thread_checkpoints(self.db, session_id)  # the agent's LangGraph thread id is the session id
        return result

    def sessions_using(self, shas: Iterable[str]) -> dict[str, list[str]]:
        """For each of the contents (by sha256) that some session's artifacts hold, the ids of those sessions."""
        wanted = sorted(set(shas))

        def work(c: Connection) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for chunk in _chunks(wanted):
                query = (select(_artifacts.c.sha256, _artifacts.c.session_id).distinct()
                         .where(_artifacts.c.sha256.in_(chunk)).order_by(_artifacts.c.sha256, _artifacts.c.session_id))
                for sha, session in c.execute(query):
                    found.setdefault(sha, []).append(session)
            return found

        return self.db.read(work)

    def _info(self, c: Connection, row: Row[Any]) -> SessionInfo:
        turns = c.scalar(select(func.count()).where(_turns.c.session_id == row.id)) or 0
        artifacts = c.scalar(select(func.count()).where(_artifacts.c.session_id == row.id)) or 0
        return _session_info(row, turns, artifacts)

    # -- turns ---------------------------------------------------------------------------------

    def append_turn(self, session_id: str, role: Role, text: str = "", *,
                    invocations: Sequence[Invocation | Mapping[str, Any]] = (), reply: str | None = None,
                    attachments: Sequence[ArtifactRef] = ()) -> TurnRecord:
        """Add a turn at the end of the session; `attachments` (uploads) are recorded as its artifacts."""
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}", field="role", fix=f"use one of {', '.join(ROLES)}")
        dumped = [self._dump_invocation(inv) for inv in invocations]
        signals = [ref for inv in dumped for ref in _signal_refs(inv)]
        sizes = self._blob_sizes((*attachments, *signals))
        tokens = approx_tokens(text, reply, json.dumps(dumped, separators=(",", ":")) if dumped else None)

        def work(c: Connection) -> TurnRecord:
            now = utcnow()
            _touch_session(c, session_id, now)
            self._hold_blobs(c, (*attachments, *signals))
            seq = c.scalar(_NEXT_SEQ, {"session_id": session_id})
            row = c.execute(_INSERT_TURN, {
                "session_id": session_id, "seq": seq, "role": role, "text": text, "invocations": dumped,
                "reply": reply, "tokens": tokens, "created_at": now}).one()
            refs = [_record(c, session_id, ref, sizes, turn_id=row.id, origin="upload")[1] for ref in attachments]
            refs += [_record(c, session_id, ref, sizes, turn_id=row.id, origin="planner", label="signal")[1]
                     for ref in signals]
            return _turn_record(row, tuple(dict.fromkeys(refs)))

        return self.db.write(work)

    def turns(self, session_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[TurnRecord]:
        """The session's turns in order, from `after_seq + 1`."""

        def work(c: Connection) -> list[TurnRecord]:
            _session_row(c, session_id)
            query = (select(_turns).where(_turns.c.session_id == session_id, _turns.c.seq > after_seq)
                     .order_by(_turns.c.seq).limit(limit))
            return _with_turn_artifacts(c, list(c.execute(query)))

        return self.db.read(work)

    def history(self, session_id: str, *, token_budget: int = 2000, max_turns: int = 50,
                summary_limit: int = 30) -> History:
        """The planner's context: the newest turns whose tokens fit `token_budget` (the newest one always),
        at most `max_turns`, plus the newest `summary_limit` artifacts of the turns before them.

        Reads only the window (an index range scan from the end) and the summary, so the cost does not
        grow with the session's length.
        """
        if token_budget < 0 or max_turns < 1 or summary_limit < 0:
            raise InvalidInput("token_budget and summary_limit must be >= 0, max_turns >= 1", field="history")

        def work(c: Connection) -> History:
            _session_row(c, session_id)
            newest = list(c.execute(select(_turns).where(_turns.c.session_id == session_id)
                                    .order_by(_turns.c.seq.desc()).limit(max_turns)))
            window: list[Row[Any]] = []
            used = 0
            for row in newest:
                if window and used + row.tokens > token_budget:
                    break
                window.append(row)
                used += row.tokens
            window.reverse()
            turns = _with_turn_artifacts(c, window)
            first_seq = window[0].seq if window else None
            earlier_turns = first_seq - 1 if first_seq else 0  # seq counts 1, 2, 3… without gaps
            older: Any = _artifacts.c.session_id == session_id
            if first_seq is not None:  # artifacts of earlier turns, and those recorded outside any turn
                older = and_(older, or_(_artifacts.c.turn_id.is_(None), _turns.c.seq < first_seq))
            base = select(_artifacts.c.id).outerjoin(_turns, _turns.c.id == _artifacts.c.turn_id).where(older)
            count = c.scalar(select(func.count()).select_from(base.subquery())) or 0
            ids = list(c.scalars(base.order_by(_artifacts.c.id.desc()).limit(summary_limit)))
            entries = _entries(c, _entries_query(_artifacts.c.id.in_(ids))) if ids else []
            return History(session_id, tuple(turns), used, earlier_turns, tuple(entries), count)

        return self.db.read(work)

    # -- steps and jobs ------------------------------------------------------------------------

    def record_step(self, session_id: str, invocation: Invocation | Mapping[str, Any], *,
                    turn_id: int | None = None, position: int | None = None) -> StepRecord:
        """Record a planned step. Its input refs and signal embeddings join the session's artifacts;
        aliases it names (`@img1`) must exist."""
        return self.record_steps(session_id, [invocation], turn_id=turn_id, first_position=position)[0]

    def record_steps(self, session_id: str, invocations: Sequence[Invocation | Mapping[str, Any]], *,
                     turn_id: int | None = None, first_position: int | None = 1) -> list[StepRecord]:
        """Record a plan's steps, numbered from `first_position` (None: unnumbered), in one transaction (all or
        none). Aliases they name (`@img1`) must exist; their input refs and signals join the session's artifacts."""
        dumped = [self._dump_invocation(inv) for inv in invocations]
        blobs = [ref for inv in dumped for ref in (*_invocation_input_refs(inv), *_signal_refs(inv))]
        sizes = self._blob_sizes(blobs)

        def work(c: Connection) -> list[StepRecord]:
            now = utcnow()
            _touch_session(c, session_id, now)
            self._hold_blobs(c, blobs)
            if turn_id is not None:
                _turn_in_session(c, session_id, turn_id)
            for inv in dumped:
                for name in inv.get("inputs", {}).values():
                    if isinstance(name, str) and step_number(name) is None:
                        _artifact_by_alias(c, session_id, name)
            rows = c.execute(_INSERT_STEPS, [
                {"session_id": session_id, "turn_id": turn_id,
                 "position": None if first_position is None else first_position + index,
                 "module": inv["module"], "command": inv.get("command", ""), "invocation": inv,
                 "status": "pending", "progress": 0.0, "created_at": now}
                for index, inv in enumerate(dumped)]).all() if dumped else []
            for inv in dumped:
                for ref in _invocation_input_refs(inv):
                    _record(c, session_id, ref, sizes, turn_id=turn_id, origin="upload")
                for ref in _signal_refs(inv):
                    _record(c, session_id, ref, sizes, turn_id=turn_id, origin="planner", label="signal")
            return [_step_record(r) for r in rows]

        return self.db.write(work)

    def finish_step(self, step_id: int, outputs: Sequence[ArtifactRef], *, backend: str | None = None,
                    ) -> list[ArtifactRef]:
        """A step succeeded: record its outputs (lineage from its inputs) and its status, in one transaction.
        Returns the outputs' refs with their aliases."""
        sizes = self._blob_sizes(outputs)

        def work(c: Connection) -> list[ArtifactRef]:
            step = c.execute(_STEP_HEAD, {"step_id": step_id}).first()
            if step is None:
                raise StepNotFound(f"no step {step_id}", field="step", fix="use an id returned by record_step")
            if c.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already holds the one write lock
                _lock_session(c, step.session_id)
            self._hold_blobs(c, outputs)
            parents = _step_inputs(c, step_id, step.session_id, step.turn_id, step.invocation)
            refs = [_record(c, step.session_id, ref, sizes, step_id=step_id, turn_id=step.turn_id, origin="step",
                            parents=parents)[1] for ref in outputs]
            c.execute(_FINISH_STEP, {"step_id": step_id, "now": utcnow(), "backend": backend})
            return refs

        return self.db.write(work)

    def record_job(self, step_id: int, job_id: str, *, backend: str | None = None) -> StepRecord:
        """The executor took the step: remember its job id (and backend); the step becomes `queued`."""
        return self.update_step(step_id, status="queued", job_id=job_id, backend=backend)

    def update_step(self, step_id: int, *, status: StepStatus | None = None, progress: float | None = None,
                    message: str | None = None, backend: str | None = None, job_id: str | None = None,
                    error: BaseException | Mapping[str, Any] | str | None = None) -> StepRecord:
        """Change a step's status, progress, backend or job id; `running` stamps the start, a finished
        status the end. An error is kept as `{"error", "field", "problem", "fix"}`."""
        if status is not None and status not in STEP_STATUSES:
            raise InvalidInput(f"unknown step status {status!r}", field="status",
                               fix=f"use one of {', '.join(STEP_STATUSES)}")
        if progress is not None and not (0.0 <= progress <= 1.0):
            raise InvalidInput(f"progress {progress} is outside [0, 1]", field="progress")
        values: dict[str, Any] = {name: value for name, value in (
            ("status", status), ("progress", progress), ("message", message), ("backend", backend),
            ("job_id", job_id), ("error", _error_json(error) if error is not None else None)) if value is not None}

        def work(c: Connection) -> StepRecord:
            now = _stamp(utcnow())
            if status == "running" or status in FINISHED_STATUSES:
                values["started_at"] = func.coalesce(_steps.c.started_at, now)
            if status in FINISHED_STATUSES:
                values["finished_at"] = now
            if status == "succeeded":
                values["progress"] = 1.0
            # One statement: the row lock, the change and the new row (UPDATE … RETURNING on both backends).
            query = (update(_steps).where(_steps.c.id == step_id).values(values).returning(*_steps.c) if values
                     else select(_steps).where(_steps.c.id == step_id))
            row = c.execute(query).first()
            if row is None:
                raise StepNotFound(f"no step {step_id}", field="step",
                                   fix="use an id returned by record_step")
            return _step_record(row)

        return self.db.write(work)

    def steps(self, session_id: str) -> list[StepRecord]:
        """The session's steps in the order they were recorded."""

        def work(c: Connection) -> list[StepRecord]:
            _session_row(c, session_id)
            return [_step_record(r) for r in c.execute(select(_steps).where(_steps.c.session_id == session_id)
                                                       .order_by(_steps.c.id))]

        return self.db.read(work)

    def step_for_job(self, job_id: str) -> StepRecord:
        """The step an executor job runs."""

        def work(c: Connection) -> StepRecord:
            row = c.execute(select(_steps).where(_steps.c.job_id == job_id).order_by(_steps.c.id.desc())).first()
            if row is None:
                raise StepNotFound(f"no step runs job {job_id!r}", field="job_id",
                                   fix="record the job with record_job first")
            return _step_record(row)

        return self.db.read(work)

    # -- artifacts -----------------------------------------------------------------------------

    def record_artifact(self, session_id: str, ref: ArtifactRef, *, step_id: int | None = None,
                        turn_id: int | None = None, parents: Sequence[ArtifactRef | str] | None = None,
                        label: str | None = None) -> ArtifactEntry:
        """Give a stored artifact an alias in the session, with what made it.

        With a `step_id` it is that step's output (its turn too), and its parents, unless given, are the
        step's inputs: the refs and aliases it names, and for `@N` every output of step N of its turn.
        Without one it is an upload. Content already in the session keeps its first alias and lineage.
        """
        sizes = self._blob_sizes([ref])

        def work(c: Connection) -> ArtifactEntry:
            _lock_session(c, session_id)
            self._hold_blobs(c, [ref])
            step = None
            if step_id is not None:
                step = c.execute(select(_steps.c.session_id, _steps.c.turn_id, _steps.c.invocation)
                                 .where(_steps.c.id == step_id)).first()
                if step is None or step.session_id != session_id:
                    raise StepNotFound(f"no step {step_id} in session {session_id}", field="step_id",
                                       fix="use an id record_step returned for this session")
            if turn_id is not None:
                _turn_in_session(c, session_id, turn_id)
            parent_ids = (_parent_ids(c, session_id, parents) if parents is not None
                          else _step_inputs(c, step_id, session_id, step.turn_id, step.invocation)
                          if step is not None and step_id is not None else [])
            artifact_id, _ = _record(c, session_id, ref, sizes, step_id=step_id,
                                     turn_id=turn_id if turn_id is not None else step.turn_id if step else None,
                                     origin="step" if step else "upload", label=label, parents=parent_ids)
            (entry,) = _entries(c, _entries_query(_artifacts.c.id == artifact_id))
            return entry

        return self.db.write(work)

    def record_undo(self, session_id: str, target: str, *, turn_id: int | None = None) -> ArtifactEntry:
        """Make `target` (`@img1`, or an undo's row of it) the session's current artifact of its kind again: a new
        row for the same stored content, made by `undo`, its parent the artifact it replaces (`@img4 image: undo
        of @img3`). A later step that leaves its input out reads it as the target (`restored`). No job runs."""

        def work(c: Connection) -> ArtifactEntry:
            _lock_session(c, session_id)
            if turn_id is not None:
                _turn_in_session(c, session_id, turn_id)
            alias = _artifact_by_alias(c, session_id, target).alias
            ids = {e.alias: (row_id, e) for row_id, e in _entries(c, _SESSION_ENTRIES, {"session_id": session_id},
                                                                   with_ids=True)}
            entries = [e for _, e in ids.values()]
            back = restored(entries, ids[alias][1])
            replaced = undo_replaces(entries, back)
            number = c.scalar(_NEXT_ALIAS_NUMBER, {"session_id": session_id, "kind": back.ref.kind})
            row_id = c.execute(_INSERT_ARTIFACT, {
                "session_id": session_id, "sha256": back.ref.sha256, "kind": back.ref.kind,
                "media_type": back.ref.media_type, "shape": list(back.ref.shape), "size": back.size,
                "alias": f"{ALIAS_PREFIXES[back.ref.kind]}{number}", "alias_number": number, "origin": UNDO,
                "label": None, "step_id": None, "turn_id": turn_id, "created_at": utcnow()}).scalar_one()
            if replaced is not None:
                c.execute(_INSERT_PARENTS, [{"child_id": row_id, "parent_id": ids[replaced.alias][0], "position": 0}])
            (entry,) = _entries(c, _entries_query(_artifacts.c.id == row_id))
            return entry

        return self.db.write(work)

    def artifact_table(self, session_id: str) -> list[ArtifactEntry]:
        """Every artifact of the session, in the order recorded, with alias, kind and what made each."""

        def work(c: Connection) -> list[ArtifactEntry]:
            entries = _entries(c, _SESSION_ENTRIES, {"session_id": session_id})
            if not entries:
                _session_row(c, session_id)  # none yet, or no such session
            return entries

        return self.db.read(work)

    def resolve_alias(self, session_id: str, alias: str) -> ArtifactRef:
        """The ref behind `@img1` (or `img1`) in the session; `AliasNotFound` names the aliases there are."""

        def work(c: Connection) -> ArtifactRef:
            _session_row(c, session_id)
            return _ref(_artifact_by_alias(c, session_id, alias))

        return self.db.read(work)

    def lineage(self, session_id: str, artifact: str | ArtifactRef) -> Lineage:
        """What the artifact was made from, recursively, back to the uploads."""

        def work(c: Connection) -> Lineage:
            _session_row(c, session_id)
            if isinstance(artifact, ArtifactRef):
                start = c.execute(_ARTIFACT_BY_SHA, {"session_id": session_id, "sha256": artifact.sha256}).first()
                if start is None:
                    raise _alias_missing(c, session_id, f"content {artifact.short}")
            else:
                start = _artifact_by_alias(c, session_id, artifact)
            # Every ancestor id in one recursive query; works the same on SQLite and PostgreSQL.
            start_id = literal(start.id, _artifacts.c.id.type)  # BIGINT on PostgreSQL, as the union
            ancestors = select(start_id.label("id")).cte("ancestors", recursive=True)
            ancestors = ancestors.union(select(_parents.c.parent_id)
                                        .join(ancestors, _parents.c.child_id == ancestors.c.id))
            ids = select(ancestors.c.id)
            entries = {e_id: e for e_id, e in _entries(c, _entries_query(_artifacts.c.id.in_(ids)), with_ids=True)}
            edges = c.execute(select(_parents.c.child_id, _parents.c.parent_id)
                              .where(_parents.c.child_id.in_(ids))
                              .order_by(_parents.c.child_id, _parents.c.position)).all()
            children: dict[int, list[int]] = {}
            for child, parent in edges:
                children.setdefault(child, []).append(parent)
            built: dict[int, Lineage] = {}

            def build(node: int) -> Lineage:
                if node not in built:  # parents are always recorded before children: no cycles
                    built[node] = Lineage(entries[node], tuple(build(p) for p in children.get(node, ())))
                return built[node]

            return build(start.id)

        return self.db.read(work)

    # -- internals -----------------------------------------------------------------------------

    def _dump_invocation(self, inv: Invocation | Mapping[str, Any]) -> dict[str, Any]:
        """Validate and dump to JSON; signal tensors go to the store and become refs."""
        try:
            model = inv if isinstance(inv, Invocation) else Invocation.model_validate(
                dict(inv), context={"store": self.store})
            return model.model_dump(mode="json", context={"store": self.store}, exclude_none=True)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(err["msg"], field=f"invocation.{loc}" if loc else "invocation",
                               fix="give a schemas.Invocation or a dict that validates as one") from None

    def _hold_blobs(self, c: Connection, refs: Iterable[ArtifactRef]) -> None:
        """A recording's half of its agreement with `delete_session`: under the lock a deletion takes (SQLite's write
        lock; on PostgreSQL the blobs' advisory locks, shared among recordings), each blob must still be in the
        store, so the rows written next never point at a blob a deletion removed."""
        unique = {ref.sha256: ref for ref in refs}
        if not unique:
            return
        if c.dialect.name == "postgresql":
            c.execute(_LOCK_BLOBS_SHARED, {"space": _BLOB_LOCKS, "keys": _blob_lock_keys(unique)})
        for ref in unique.values():
            if not self.store.exists(ref):
                raise ArtifactNotFound(f"{ref.kind} {ref.short} left the artifact store before it was recorded (a "
                                       "session's deletion removed it)", field="ref",
                                       fix="put the content again, then record it")

    def _blob_sizes(self, refs: Iterable[ArtifactRef]) -> dict[str, int]:
        """Each ref's size in bytes, by sha256; `ArtifactNotFound`, naming the store, before anything is written."""
        sizes = {}
        for ref in refs:
            if not isinstance(ref, ArtifactRef):
                raise InvalidInput(f"expected an ArtifactRef, got {type(ref).__name__}", field="ref")
            sizes[ref.sha256] = self.store.size(ref)
        return sizes


# -- SQL -------------------------------------------------------------------------------------------
# SQL expressions on a bare connection, not the ORM's unit of work: the per-step writes are on the turn's
# critical path, and they cost a third of what the ORM spends on the same statements.

_sessions: Table = SessionRow.__table__  # type: ignore[assignment]
_turns: Table = TurnRow.__table__  # type: ignore[assignment]
_steps: Table = StepRow.__table__  # type: ignore[assignment]
_artifacts: Table = ArtifactRow.__table__  # type: ignore[assignment]
_parents: Table = ArtifactParentRow.__table__  # type: ignore[assignment]
_outputs: Table = StepOutputRow.__table__  # type: ignore[assignment]
_uploads: Table = UploadRow.__table__  # type: ignore[assignment]  # what the server's users uploaded or made
_parent = _artifacts.alias("parent")

# The statements every step and turn runs, built once: building a statement costs as much as running it.
_LOCK_SESSION = select(_sessions).where(_sessions.c.id == bindparam("session_id")).with_for_update(key_share=True)
_TOUCH_SESSION = (update(_sessions).where(_sessions.c.id == bindparam("session_id"))
                  .values(updated_at=bindparam("now")).returning(_sessions.c.id))
_NEXT_SEQ = select(func.coalesce(func.max(_turns.c.seq), 0) + 1).where(_turns.c.session_id == bindparam("session_id"))
_INSERT_TURN = insert(_turns).returning(*_turns.c)
_STEP_HEAD = (select(_steps.c.session_id, _steps.c.turn_id, _steps.c.invocation)
              .where(_steps.c.id == bindparam("step_id")))
# A step already recorded as succeeded keeps its finish time: finished again, it is a resumed turn taking the
# step's outputs back (its graph checkpoint was lost to a kill after the step's row landed), not a second run.
_FINISH_STEP = update(_steps).where(_steps.c.id == bindparam("step_id")).values(
    status="succeeded", progress=1.0,
    finished_at=case((and_(_steps.c.status == "succeeded", _steps.c.finished_at.is_not(None)), _steps.c.finished_at),
                     else_=bindparam("now", type_=_steps.c.finished_at.type)),
    started_at=func.coalesce(_steps.c.started_at, bindparam("now", type_=_steps.c.started_at.type)),
    backend=func.coalesce(bindparam("backend", type_=_steps.c.backend.type), _steps.c.backend))
# A content's own row; an undo's rows of it come later, under aliases of their own.
_ARTIFACT_BY_SHA = select(_artifacts).where(_artifacts.c.session_id == bindparam("session_id"),
                                            _artifacts.c.sha256 == bindparam("sha256"), _artifacts.c.origin != UNDO)
_ARTIFACT_ID_BY_SHA = _ARTIFACT_BY_SHA.with_only_columns(_artifacts.c.id)
_ARTIFACT_BY_ALIAS = select(_artifacts).where(_artifacts.c.session_id == bindparam("session_id"),
                                              _artifacts.c.alias == bindparam("alias"))
_TURN_OWNER = select(_turns.c.session_id).where(_turns.c.id == bindparam("turn_id"))
_INSERT_STEPS = insert(_steps).returning(*_steps.c, sort_by_parameter_order=True)
_INSERT_PARENTS = insert(_parents)
_NEXT_ALIAS_NUMBER = select(func.coalesce(func.max(_artifacts.c.alias_number), 0) + 1).where(
    _artifacts.c.session_id == bindparam("session_id"), _artifacts.c.kind == bindparam("kind"))
_EXISTING_AND_NEXT_ALIAS = select(_ARTIFACT_ID_BY_SHA.scalar_subquery(), _NEXT_ALIAS_NUMBER.scalar_subquery())
_INSERT_ARTIFACT = insert(_artifacts).returning(_artifacts.c.id)
_INSERT_OUTPUT = insert(_outputs)
_IS_OUTPUT = select(_outputs.c.step_id).where(_outputs.c.step_id == bindparam("step_id"),
                                              _outputs.c.artifact_id == bindparam("artifact_id"))
_STEP_OUTPUTS = select(_outputs.c.artifact_id).where(_outputs.c.step_id.in_(
    select(_steps.c.id).where(_steps.c.session_id == bindparam("session_id"), _steps.c.turn_id == bindparam("turn_id"),
                              _steps.c.position == bindparam("position")))).order_by(_outputs.c.artifact_id)


# Advisory locks on PostgreSQL, in a key space of their own (two int4 keys): one per bucket of blobs, the first
# byte of the sha256. Recordings take theirs shared, a deletion exclusive; in key order, so none waits in a cycle.
_BLOB_LOCKS = 0x56424C42  # "VBLB"
_EACH_KEY = "FROM unnest(CAST(:keys AS integer[])) AS k"
_LOCK_BLOBS_SHARED = sql_text(f"SELECT pg_advisory_xact_lock_shared(:space, k) {_EACH_KEY}")
_LOCK_BLOBS = sql_text(f"SELECT pg_advisory_xact_lock(:space, k) {_EACH_KEY}")


def _blob_lock_keys(shas: Iterable[str]) -> list[int]:
    return sorted({int(sha[:2], 16) for sha in shas})


def _unreferenced(c: Connection, shas: Iterable[str]) -> set[str]:
    """Those of `shas` no artifact row and no upload row references."""
    wanted = sorted(set(shas))
    used: set[str] = set()
    for chunk in _chunks(wanted):
        used.update(c.scalars(select(_artifacts.c.sha256).where(_artifacts.c.sha256.in_(chunk))))
        used.update(c.scalars(select(_uploads.c.sha256).where(_uploads.c.sha256.in_(chunk))))
    return set(wanted) - used


def _stamp(now: datetime) -> Any:
    """A timestamp as a typed bind, for use inside SQL expressions (coalesce) on both backends."""
    return literal(now, _steps.c.started_at.type)


def _lock_session(c: Connection, session_id: str) -> Row[Any]:
    """Load the session row for update: writers to one session take turns (a no-op clause on SQLite,
    where the write transaction already holds the database's single write lock)."""
    row = c.execute(_LOCK_SESSION, {"session_id": session_id}).first() if isinstance(session_id, str) else None
    if row is None:
        raise _no_session(session_id)
    return row


def _touch_session(c: Connection, session_id: str, now: datetime) -> None:
    """Lock the session row (as `_lock_session`) and mark it active, in one statement."""
    found = c.execute(_TOUCH_SESSION, {"session_id": session_id, "now": now}).first() \
        if isinstance(session_id, str) else None
    if found is None:
        raise _no_session(session_id)


def _owned_by(query: Any, owner: Owner) -> Any:
    """`query` on the sessions table, limited to `owner`'s sessions (`Owner`)."""
    if isinstance(owner, _AnyOwner):
        return query
    if owner is not None and not isinstance(owner, str):
        raise InvalidInput(f"an owner is a name, None or ANY_OWNER, not {type(owner).__name__}", field="owner")
    return query.where(_sessions.c.owner.is_(None) if owner is None else _sessions.c.owner == owner)


def _session_row(c: Connection, session_id: str) -> Row[Any]:
    row = c.execute(select(_sessions).where(_sessions.c.id == session_id)).first() \
        if isinstance(session_id, str) else None
    if row is None:
        raise _no_session(session_id)
    return row


def _turn_in_session(c: Connection, session_id: str, turn_id: int) -> None:
    owner = c.scalar(_TURN_OWNER, {"turn_id": turn_id})
    if owner is None or owner != session_id:
        raise InvalidInput(f"no turn {turn_id} in session {session_id}", field="turn_id",
                           fix="use the id append_turn returned for this session")


def _alias_missing(c: Connection, session_id: str, what: str) -> AliasNotFound:
    known = list(c.scalars(select(_artifacts.c.alias).where(_artifacts.c.session_id == session_id)
                           .order_by(_artifacts.c.id.desc()).limit(12)))
    fix = "use one of " + ", ".join("@" + a for a in reversed(known)) if known else "this session has no artifacts yet"
    return AliasNotFound(f"session {session_id} has no artifact {what}", field="alias", fix=fix)


def _artifact_by_alias(c: Connection, session_id: str, alias: str) -> Row[Any]:
    match = _ALIAS.match(alias) if isinstance(alias, str) else None
    row = None
    if match:
        row = c.execute(_ARTIFACT_BY_ALIAS, {"session_id": session_id, "alias": match.group(1)}).first()
    if row is None:
        raise _alias_missing(c, session_id, f"@{alias.lstrip('@')}" if isinstance(alias, str) else repr(alias))
    return row


def _record(c: Connection, session_id: str, ref: ArtifactRef, sizes: Mapping[str, int], *, origin: str,
            step_id: int | None = None, turn_id: int | None = None, label: str | None = None,
            parents: Sequence[int] = ()) -> tuple[int, ArtifactRef]:
    """Insert an artifact row with the next alias of its kind (the caller holds the session lock); content
    already in the session keeps its row. Returns the row's id and the ref with its alias."""
    # One round trip for both questions: is the content here already, and which alias number comes next.
    existing_id, number = c.execute(_EXISTING_AND_NEXT_ALIAS, {
        "session_id": session_id, "sha256": ref.sha256, "kind": ref.kind}).one()
    if existing_id is not None:
        existing = c.execute(_ARTIFACT_BY_SHA, {"session_id": session_id, "sha256": ref.sha256}).one()
        if step_id is not None and c.scalar(_IS_OUTPUT, {"step_id": step_id, "artifact_id": existing.id}) is None:
            c.execute(_INSERT_OUTPUT, {"step_id": step_id, "artifact_id": existing.id})  # still this step's output
        return existing.id, _ref(existing)
    alias = f"{ALIAS_PREFIXES[ref.kind]}{number}"
    artifact_id = c.execute(_INSERT_ARTIFACT, {
        "session_id": session_id, "sha256": ref.sha256, "kind": ref.kind, "media_type": ref.media_type,
        "shape": list(ref.shape), "size": sizes.get(ref.sha256), "alias": alias, "alias_number": number,
        "origin": origin, "label": label, "step_id": step_id, "turn_id": turn_id, "created_at": utcnow()}).scalar_one()
    if step_id is not None:
        c.execute(_INSERT_OUTPUT, {"step_id": step_id, "artifact_id": artifact_id})
    links = [{"child_id": artifact_id, "parent_id": parent, "position": position}
             for position, parent in enumerate(dict.fromkeys(parents)) if parent != artifact_id]
    if links:
        c.execute(_INSERT_PARENTS, links)
    return artifact_id, ArtifactRef(sha256=ref.sha256, kind=ref.kind, media_type=ref.media_type,
                                    shape=tuple(ref.shape), alias=alias)


def _parent_ids(c: Connection, session_id: str, parents: Sequence[ArtifactRef | str]) -> list[int]:
    ids = []
    for parent in parents:
        if isinstance(parent, ArtifactRef):
            found = c.scalar(_ARTIFACT_ID_BY_SHA, {"session_id": session_id, "sha256": parent.sha256})
            if found is None:
                raise InvalidInput(f"parent {parent.kind} {parent.short} is not an artifact of session "
                                   f"{session_id}", field="parents", fix="record the parent first")
            ids.append(found)
        else:
            ids.append(_artifact_by_alias(c, session_id, parent).id)
    return ids


def _step_inputs(c: Connection, step_id: int, session_id: str, turn_id: int | None,
                 invocation: Mapping[str, Any]) -> list[int]:
    """The artifacts a step read: refs and aliases in its inputs, its scribble; `@N`: step N's outputs."""
    ids: list[int] = []
    named: list[Any] = list(invocation.get("inputs", {}).values())
    region = invocation.get("region") or {}
    if region.get("kind") == "scribble":
        named.append(region["mask"])
    for value in named:
        if isinstance(value, dict):
            ids.extend(_parent_ids(c, session_id, [ArtifactRef.model_validate(value)]))
        elif (number := step_number(value)) is not None:
            if turn_id is not None:
                outputs = list(c.scalars(_STEP_OUTPUTS, {"session_id": session_id, "turn_id": turn_id,
                                                         "position": number}))
            else:
                producer = select(_steps.c.id).where(_steps.c.session_id == session_id, _steps.c.turn_id.is_(None),
                                                     _steps.c.position == number)
                outputs = list(c.scalars(select(_outputs.c.artifact_id).where(_outputs.c.step_id.in_(producer))
                                         .order_by(_outputs.c.artifact_id)))
            if not outputs:
                raise InvalidInput(f"step {step_id} reads {value}, but step {number} of its turn has recorded "
                                   "no output", field="parents",
                                   fix="record step outputs in plan order, or pass parents explicitly")
            ids.extend(outputs)
        else:
            ids.append(_artifact_by_alias(c, session_id, value).id)
    return ids


def _entries_query(where: Any) -> Any:
    """Artifact rows matching `where`, each joined with its step, its turn and its parents' aliases."""
    return (select(_artifacts, _steps.c.module.label("step_module"), _turns.c.seq.label("turn_seq"),
                   _parent.c.alias.label("parent_alias"))
            .select_from(_artifacts.outerjoin(_steps, _steps.c.id == _artifacts.c.step_id)
                         .outerjoin(_turns, _turns.c.id == _artifacts.c.turn_id)
                         .outerjoin(_parents, _parents.c.child_id == _artifacts.c.id)
                         .outerjoin(_parent, _parent.c.id == _parents.c.parent_id))
            .where(where).order_by(_artifacts.c.id, _parents.c.position))


# The artifact table of a session, read before every plan: built once, like the statements above.
_SESSION_ENTRIES = _entries_query(_artifacts.c.session_id == bindparam("session_id"))


def _entries(c: Connection, query: Any, params: Mapping[str, Any] | None = None, *,
             with_ids: bool = False) -> list[Any]:
    """The artifact-table rows an `_entries_query` finds, in recording order, with their parents' aliases: one
    query, a row per (artifact, parent)."""
    rows: dict[int, Row[Any]] = {}
    parents: dict[int, list[str]] = {}
    for row in c.execute(query, params or {}):
        rows.setdefault(row.id, row)
        if row.parent_alias is not None:
            parents.setdefault(row.id, []).append(row.parent_alias)
    out = []
    for row in rows.values():
        entry = ArtifactEntry(ref=_ref(row), made_by=row.step_module or row.origin,
                              parents=tuple(parents.get(row.id, ())), step_id=row.step_id, turn_seq=row.turn_seq,
                              size=row.size, label=row.label, created_at=row.created_at)
        out.append((row.id, entry) if with_ids else entry)
    return out


def _with_turn_artifacts(c: Connection, rows: list[Row[Any]]) -> list[TurnRecord]:
    by_turn: dict[int, list[ArtifactRef]] = {}
    ids = [r.id for r in rows]
    for chunk in _chunks(ids):
        for art in c.execute(select(_artifacts).where(_artifacts.c.turn_id.in_(chunk)).order_by(_artifacts.c.id)):
            by_turn.setdefault(art.turn_id, []).append(_ref(art))
    return [_turn_record(r, tuple(by_turn.get(r.id, ()))) for r in rows]


# -- helpers ---------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = _BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _json_object(value: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    try:
        data = dict(value or {})
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a JSON object: {exc}", field=name) from None
    return data


def _no_session(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no session {session_id!r}", field="session",
                           fix="use an existing session's id, or create one")


def _ref(row: Any) -> ArtifactRef:
    return ArtifactRef(sha256=row.sha256, kind=row.kind, media_type=row.media_type, shape=tuple(row.shape),
                       alias=row.alias)


def _session_info(row: Any, turns: int, artifacts: int) -> SessionInfo:
    return SessionInfo(id=row.id, title=row.title, owner=row.owner, settings=dict(row.settings or {}),
                       created_at=row.created_at, updated_at=row.updated_at, turns=turns, artifacts=artifacts)


def _turn_record(row: Any, artifacts: tuple[ArtifactRef, ...]) -> TurnRecord:
    return TurnRecord(id=row.id, session_id=row.session_id, seq=row.seq, role=row.role,
                      text=row.text, invocations=tuple(row.invocations or ()), reply=row.reply, tokens=row.tokens,
                      created_at=row.created_at, artifacts=artifacts)


def _step_record(row: Any) -> StepRecord:
    return StepRecord(id=row.id, session_id=row.session_id, turn_id=row.turn_id, position=row.position,
                      module=row.module, command=row.command, invocation=dict(row.invocation or {}),
                      backend=row.backend, status=row.status, progress=row.progress,
                      message=row.message, job_id=row.job_id, error=row.error, created_at=row.created_at,
                      started_at=row.started_at, finished_at=row.finished_at)


def _signal_refs(dumped: Mapping[str, Any]) -> list[ArtifactRef]:
    signal = dumped.get("signal") or {}
    return [ArtifactRef.model_validate(v) for v in signal.values() if isinstance(v, dict) and "sha256" in v]


def _invocation_input_refs(dumped: Mapping[str, Any]) -> list[ArtifactRef]:
    refs = [ArtifactRef.model_validate(v) for v in dumped.get("inputs", {}).values() if isinstance(v, dict)]
    region = dumped.get("region") or {}
    if region.get("kind") == "scribble":
        refs.append(ArtifactRef.model_validate(region["mask"]))
    return refs


def _error_json(error: BaseException | Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(error, VitronError):
        return error.to_dict()
    if isinstance(error, BaseException):
        return {"error": type(error).__name__, "field": None, "problem": str(error), "fix": None}
    if isinstance(error, str):
        return {"error": "Error", "field": None, "problem": error, "fix": None}
    return _json_object(error, "error")


__all__ = [
    "ALIAS_PREFIXES",
    "ANY_OWNER",
    "UNDO",
    "ArtifactEntry",
    "DeletedSession",
    "History",
    "Lineage",
    "Owner",
    "Role",
    "SessionInfo",
    "SessionMemory",
    "StepRecord",
    "StepStatus",
    "TurnRecord",
    "approx_tokens",
    "restored",
    "undo_replaces",
    "undo_target",
]

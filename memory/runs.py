"""Runs of the HTTP server and their events, in SQL, and what each owner uploaded.

A run is one turn of a thread (a session) asked for over HTTP. Its events are numbered 1, 2, 3… and kept, so a
client that reconnects with the last number it saw gets exactly the events it missed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from schemas import ArtifactRef

from .database import Database
from .models import ArtifactRow, RunEventRow, RunRow, SessionRow, UploadRow, utcnow

RunStatus = Literal["pending", "running", "success", "error", "interrupted", "cancelled"]
"""A run's life: `pending` (queued behind another run of its thread) → `running` → `success`, `error`, `cancelled`,
or `interrupted` (waiting for an approval)."""

_runs: Table = RunRow.__table__  # type: ignore[assignment]
_events: Table = RunEventRow.__table__  # type: ignore[assignment]
_uploads: Table = UploadRow.__table__  # type: ignore[assignment]
_artifacts: Table = ArtifactRow.__table__  # type: ignore[assignment]
_sessions: Table = SessionRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class RunRecord:
    id: str
    session_id: str
    owner: str | None
    status: RunStatus
    request: dict[str, Any]
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class RunRecords:
    """Runs, their events, and uploads by owner, on the session database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, run_id: str, session_id: str, *, owner: str | None, request: dict[str, Any],
               status: RunStatus = "pending") -> RunRecord:
        now = utcnow()
        row = {"id": run_id, "session_id": session_id, "owner": owner, "status": status, "request": request,
               "error": None, "created_at": now, "updated_at": now}
        self.db.write(lambda c: c.execute(insert(_runs), row))
        return RunRecord(**row)

    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.read(lambda c: c.execute(select(_runs).where(_runs.c.id == run_id)).first())
        return None if row is None else _run(row)

    def of_session(self, session_id: str) -> list[RunRecord]:
        query = select(_runs).where(_runs.c.session_id == session_id).order_by(_runs.c.created_at)
        return self.db.read(lambda c: [_run(r) for r in c.execute(query)])

    def set_status(self, run_id: str, status: RunStatus, error: dict[str, Any] | None = None) -> None:
        self.db.write(lambda c: c.execute(update(_runs).where(_runs.c.id == run_id).values(
            status=status, error=error, updated_at=utcnow())))

    def add_events(self, run_id: str, events: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        """Events (seq, name, data) in one transaction; those already saved (a retry after a lost answer) are
        skipped."""
        if not events:
            return

        def work(c: Any) -> None:
            saved = set(c.scalars(select(_events.c.seq).where(_events.c.run_id == run_id,
                                                              _events.c.seq >= events[0][0])))
            rows = [{"run_id": run_id, "seq": seq, "event": name, "data": data}
                    for seq, name, data in events if seq not in saved]
            if rows:
                c.execute(insert(_events), rows)

        self.db.write(work)

    def events(self, run_id: str, *, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        query = (select(_events.c.seq, _events.c.event, _events.c.data)
                 .where(_events.c.run_id == run_id, _events.c.seq > after).order_by(_events.c.seq))
        return self.db.read(lambda c: [(r.seq, r.event, r.data) for r in c.execute(query)])

    # -- what an owner may read ---------------------------------------------------------------

    def add_upload(self, owner: str | None, ref: ArtifactRef) -> None:
        """`owner` uploaded (or made) `ref`; None is the one user of a server without keys."""
        key = owner or ""

        def work(c: Any) -> None:
            found = c.execute(select(_uploads.c.sha256).where(_uploads.c.owner == key,
                                                              _uploads.c.sha256 == ref.sha256)).first()
            if found is None:
                c.execute(insert(_uploads), {"owner": key, "sha256": ref.sha256, "kind": ref.kind,
                                             "media_type": ref.media_type, "shape": list(ref.shape),
                                             "created_at": utcnow()})

        with contextlib.suppress(IntegrityError):  # the same upload recorded at once by another request
            self.db.write(work)

    def owned(self, owner: str | None, sha256: str) -> ArtifactRef | None:
        """The artifact `sha256` if `owner` uploaded it or one of their threads holds it; else None (also for
        another owner's artifact, which must look like no artifact at all)."""
        def work(c: Any) -> Any:
            row = c.execute(select(_uploads).where(_uploads.c.owner == (owner or ""),
                                                   _uploads.c.sha256 == sha256)).first()
            if row is not None:
                return row
            owner_match = _sessions.c.owner.is_(None) if owner is None else _sessions.c.owner == owner
            return c.execute(select(_artifacts.c.sha256, _artifacts.c.kind, _artifacts.c.media_type,
                                    _artifacts.c.shape)
                             .select_from(_artifacts.join(_sessions, _sessions.c.id == _artifacts.c.session_id))
                             .where(and_(_artifacts.c.sha256 == sha256, owner_match)).limit(1)).first()

        row = self.db.read(work)
        if row is None:
            return None
        return ArtifactRef(sha256=row.sha256, kind=row.kind, media_type=row.media_type, shape=tuple(row.shape))


def _run(row: Any) -> RunRecord:
    return RunRecord(row.id, row.session_id, row.owner, row.status, row.request, row.error, row.created_at,
                     row.updated_at)

"""One turn at a time per session, across processes: a lease in SQL that the running turn's process renews.

A turn takes its session's lease before it checks for an unfinished turn and records the user's text, and keeps
it, with a heartbeat, until its reply is read. Another process (or thread) that wants the session is refused with
the lease's expiry, or waits for it when asked to. A lease whose holder stopped renewing it expires; one held by a
process that no longer exists on this host is taken over at once, so `vitron run` killed with -9 can be resumed
straight away.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Table, delete, insert, select, update

from schemas import SessionBusy, SessionNotFound

from .database import Database
from .models import SessionRow, TurnLeaseRow, utcnow

_leases: Table = TurnLeaseRow.__table__  # type: ignore[assignment]
_sessions: Table = SessionRow.__table__  # type: ignore[assignment]
_POLL_S = 0.05  # between tries while waiting for a lease


@dataclass(frozen=True)
class Lease:
    session_id: str
    holder: str  # host:pid:nonce
    expires_at: datetime


def new_holder() -> str:
    """A holder name for one turn: this host and process, and a nonce (two turns of one process are two holders)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_gone(holder: str) -> bool:
    """Whether a holder's process has ended: known only for a process on this host (another host's holder is
    trusted until its lease expires)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


class TurnLeases:
    """The turn leases of one session database; `ttl_s`: how long a lease lasts without a heartbeat."""

    def __init__(self, db: Database, ttl_s: float = 30.0) -> None:
        self.db, self.ttl_s = db, ttl_s

    def acquire(self, session_id: str, *, wait_s: float = 0.0) -> Lease:
        """Take the session's lease, waiting up to `wait_s` seconds for its holder to let go; else SessionBusy."""
        holder, deadline = new_holder(), time.monotonic() + wait_s
        while True:
            lease, current = self.db.write(lambda c: self._take(c, session_id, holder))
            if lease is not None:
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                raise _busy(session_id, current)
            time.sleep(min(_POLL_S, left))

    def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry on; False if it is no longer this holder's (it expired and was taken over)."""
        expires = utcnow() + timedelta(seconds=self.ttl_s)
        done = self.db.write(lambda c: c.execute(
            update(_leases).where(_leases.c.session_id == lease.session_id, _leases.c.holder == lease.holder)
            .values(expires_at=expires)).rowcount)
        return bool(done)

    def release(self, lease: Lease) -> None:
        self.db.write(lambda c: c.execute(
            delete(_leases).where(_leases.c.session_id == lease.session_id, _leases.c.holder == lease.holder)))

    def holder(self, session_id: str) -> Lease | None:
        """The session's live lease, if any."""
        row = self.db.read(lambda c: c.execute(select(_leases).where(_leases.c.session_id == session_id)).first())
        if row is None or _expired(row):
            return None
        return Lease(row.session_id, row.holder, row.expires_at)

    @contextmanager
    def kept(self, lease: Lease) -> Iterator[Lease]:
        """Hold the lease while the block runs: renewed every third of its life, released on leaving."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.ttl_s / 3):
                try:
                    if not self.renew(lease):
                        return
                except Exception:  # a database hiccup: the next beat tries again before the lease runs out
                    continue

        beater = threading.Thread(target=beat, name=f"vitron-lease-{lease.session_id[:8]}", daemon=True)
        beater.start()
        try:
            yield lease
        finally:
            stop.set()
            beater.join()
            self.release(lease)

    def _take(self, c: Connection, session_id: str, holder: str) -> tuple[Lease | None, Lease | None]:
        # The session row's lock orders the takers of one session (SQLite's write transaction already does).
        if c.execute(select(_sessions.c.id).where(_sessions.c.id == session_id).with_for_update()).first() is None:
            raise SessionNotFound(f"no session {session_id!r}", field="session",
                                  fix="use an existing session's id, or create one")
        row = c.execute(select(_leases).where(_leases.c.session_id == session_id)).first()
        if row is not None and not _expired(row):
            return None, Lease(row.session_id, row.holder, row.expires_at)
        now = utcnow()
        values = {"holder": holder, "acquired_at": now, "expires_at": now + timedelta(seconds=self.ttl_s)}
        if row is None:
            c.execute(insert(_leases).values(session_id=session_id, **values))
        else:
            c.execute(update(_leases).where(_leases.c.session_id == session_id).values(**values))
        return Lease(session_id, holder, values["expires_at"]), None


def _expired(row: object) -> bool:
    return row.expires_at <= utcnow() or holder_gone(row.holder)  # type: ignore[attr-defined]


def _busy(session_id: str, current: Lease | None) -> SessionBusy:
    host, _, rest = (current.holder if current else "?:?").partition(":")
    pid = rest.partition(":")[0]
    expires = current.expires_at if current else utcnow()
    return SessionBusy(
        f"session {session_id[:8]} has a turn running in another process (pid {pid} on {host}); its lease runs "
        f"until {expires:%H:%M:%S} UTC and is renewed while that turn runs",
        field="session", expires_at=expires.timestamp(),
        fix="wait for it (`vitron run --wait SECONDS`, or `send(…, wait_s=…)`), then send or resume",
    )

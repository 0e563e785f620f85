"""The step signature cache in SQL: a step's outputs under the signature of everything they depend on.

The signature itself is made by `workflows.signature`; this module only keeps and finds what was recorded.
Outputs are refs into the artifact store, so a hit costs one indexed read, whatever the artifacts' size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from .database import Database
from .models import StepCacheRow, utcnow

_cache: Table = StepCacheRow.__table__  # type: ignore[assignment]
_GET = select(_cache.c.output, _cache.c.seconds).where(_cache.c.signature == bindparam("signature"))


@dataclass(frozen=True)
class CachedStep:
    """A recorded step: its tool output JSON and how long the step took when it ran."""

    output: dict[str, Any]
    seconds: float


class StepCache:
    """Finds and records step outputs by signature; shared by every session, run and batch on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, signature: str) -> CachedStep | None:
        row = self.db.read(lambda c: c.execute(_GET, {"signature": signature}).first())
        return None if row is None else CachedStep(row.output, row.seconds)

    def put(self, signature: str, *, module: str, backend: str, output: Mapping[str, Any], seconds: float) -> None:
        """Record a step's output; a signature already recorded keeps its first output (both are the same work)."""
        values = {"signature": signature, "module": module, "backend": backend, "output": dict(output),
                  "seconds": seconds, "created_at": utcnow()}

        def work(c: Any) -> None:
            if c.execute(_GET, {"signature": signature}).first() is None:
                c.execute(insert(_cache), values)

        # Another process may record the same signature between our read and our insert: the same work, kept once.
        with contextlib.suppress(IntegrityError):
            self.db.write(work)

    def forget(self, signature: str) -> None:
        """Drop one entry (its artifacts left the store)."""
        self.db.write(lambda c: c.execute(delete(_cache).where(_cache.c.signature == signature)))

    def clear(self) -> int:
        """Drop every entry; how many there were."""
        return self.db.write(lambda c: c.execute(delete(_cache)).rowcount)

    def size(self) -> int:
        return self.db.read(lambda c: c.execute(select(func.count()).select_from(_cache)).scalar_one())

"""Batches in SQL: a workflow run over many items, each item's status, outputs or error, so a batch that was
stopped (even by kill -9) goes on with only the items not done."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .models import BatchItemRow, BatchRow, utcnow

ItemStatus = Literal["pending", "succeeded", "failed"]
"""An item's life: `pending` until it ends, then `succeeded` or `failed`. An item whose run was stopped mid-way (its
process died) is still pending, and done again. Nothing is written when an item starts: on a batch whose steps come
from the step cache, that write cost as much as the item."""

_batches: Table = BatchRow.__table__  # type: ignore[assignment]
_items: Table = BatchItemRow.__table__  # type: ignore[assignment]
_ITEM = and_(_items.c.batch_id == bindparam("item_batch"), _items.c.position == bindparam("item_position"))
# One statement when an item ends, built once: its row is the only write an item costs.
_END = update(_items).where(_ITEM).values(
    status=bindparam("status"), outputs=bindparam("outputs", type_=_items.c.outputs.type),
    error=bindparam("error", type_=_items.c.error.type), attempts=_items.c.attempts + 1,
    started_at=bindparam("started", type_=_items.c.started_at.type),
    finished_at=bindparam("now", type_=_items.c.finished_at.type))


@dataclass(frozen=True)
class BatchItem:
    batch_id: str
    position: int  # 0-based, in the order the items were given
    inputs: dict[str, Any]
    status: ItemStatus
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "inputs": self.inputs, "status": self.status, "outputs": self.outputs,
                "error": self.error, "attempts": self.attempts}


@dataclass(frozen=True)
class BatchInfo:
    id: str
    name: str
    items: int
    created_at: datetime
    counts: dict[str, int]  # items by status

    @property
    def done(self) -> bool:
        return self.counts.get("pending", 0) == 0


class BatchRecords:
    """Records batches and their items on a database (the session database by default)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self, batch_id: str, *, name: str, workflow: Mapping[str, Any],
             items: Sequence[Mapping[str, Any]]) -> BatchInfo:
        """The batch `batch_id`, recorded with its items (all pending) if it is new; as it stands if not."""

        def work(c: Any) -> None:
            if c.execute(select(_batches.c.id).where(_batches.c.id == batch_id)).first() is not None:
                return
            now = utcnow()
            c.execute(insert(_batches), {"id": batch_id, "name": name, "workflow": dict(workflow),
                                         "items": len(items), "created_at": now})
            if items:
                c.execute(insert(_items), [{"batch_id": batch_id, "position": i, "inputs": dict(inputs),
                                            "status": "pending", "attempts": 0} for i, inputs in enumerate(items)])

        with contextlib.suppress(IntegrityError):  # another process opened it between our read and our insert
            self.db.write(work)
        return self.info(batch_id)

    def info(self, batch_id: str) -> BatchInfo:
        def work(c: Any) -> BatchInfo:
            row = c.execute(select(_batches).where(_batches.c.id == batch_id)).first()
            if row is None:
                raise KeyError(batch_id)
            counts = dict(c.execute(select(_items.c.status, func.count()).where(_items.c.batch_id == batch_id)
                                    .group_by(_items.c.status)).all())
            return BatchInfo(row.id, row.name, row.items, row.created_at, counts)

        return self.db.read(work)

    def items(self, batch_id: str, *, status: Sequence[ItemStatus] | None = None) -> list[BatchItem]:
        query = select(_items).where(_items.c.batch_id == batch_id)
        if status is not None:
            query = query.where(_items.c.status.in_(list(status)))
        return self.db.read(lambda c: [_item(r) for r in c.execute(query.order_by(_items.c.position))])

    def succeed(self, batch_id: str, position: int, outputs: Mapping[str, Any], *, started: datetime) -> None:
        """The item ended well: its outputs by name (its attempts count up)."""
        self._end(batch_id, position, started, status="succeeded", outputs=dict(outputs), error=None)

    def fail(self, batch_id: str, position: int, error: Mapping[str, Any], *, started: datetime) -> None:
        """The item ended with an error (its attempts count up)."""
        self._end(batch_id, position, started, status="failed", outputs=None, error=dict(error))

    def reset(self, batch_id: str) -> None:
        """Every item pending again (a batch run afresh)."""
        self.db.write(lambda c: c.execute(update(_items).where(_items.c.batch_id == batch_id).values(
            status="pending", outputs=None, error=None, started_at=None, finished_at=None)))

    def _end(self, batch_id: str, position: int, started: datetime, **values: Any) -> None:
        self.db.write(lambda c: c.execute(_END, {"item_batch": batch_id, "item_position": position,
                                                 "started": started, "now": utcnow(), **values}))


def _item(row: Any) -> BatchItem:
    return BatchItem(row.batch_id, row.position, row.inputs, row.status, row.outputs, row.error, row.attempts,
                     row.started_at, row.finished_at)

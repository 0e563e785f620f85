"""Batches in SQL: a workflow run over many items, each item's status, outputs or error, so a batch that was
stopped (even by kill -9) goes on with only the items not done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, bindparam, func, insert, select, update

from .database import Database
from .models import BatchItemRow, BatchRow, utcnow

ItemStatus = Literal["pending", "running", "succeeded", "failed"]
"""An item's life: `pending` → `running` → `succeeded` or `failed`. A `running` item found by a later run was
stopped mid-way (its process died): it is done again."""

_batches: Table = BatchRow.__table__  # type: ignore[assignment]
_items: Table = BatchItemRow.__table__  # type: ignore[assignment]
_ITEM = and_(_items.c.batch_id == bindparam("item_batch"), _items.c.position == bindparam("item_position"))


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
        return self.counts.get("pending", 0) == 0 and self.counts.get("running", 0) == 0


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
                                         "items": len(items), "created_at": now, "updated_at": now})
            if items:
                c.execute(insert(_items), [{"batch_id": batch_id, "position": i, "inputs": dict(inputs),
                                            "status": "pending", "attempts": 0} for i, inputs in enumerate(items)])

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

    def start(self, batch_id: str, position: int) -> None:
        """The item is being done (again, after a stop: its attempts count up)."""
        self.db.write(lambda c: c.execute(update(_items).where(_ITEM).values(
            status="running", attempts=_items.c.attempts + 1, started_at=utcnow(), finished_at=None, error=None),
            {"item_batch": batch_id, "item_position": position}))

    def succeed(self, batch_id: str, position: int, outputs: Mapping[str, Any]) -> None:
        self._set(batch_id, position, status="succeeded", outputs=dict(outputs), finished_at=utcnow())

    def fail(self, batch_id: str, position: int, error: Mapping[str, Any]) -> None:
        self._set(batch_id, position, status="failed", error=dict(error), finished_at=utcnow())

    def reset(self, batch_id: str) -> None:
        """Every item pending again (a batch run afresh)."""
        self.db.write(lambda c: c.execute(update(_items).where(_items.c.batch_id == batch_id).values(
            status="pending", outputs=None, error=None, started_at=None, finished_at=None)))

    def _set(self, batch_id: str, position: int, **values: Any) -> None:
        """An item ends: its row, and the batch's time of last change."""

        def work(c: Any) -> None:
            c.execute(update(_items).where(_ITEM).values(**values), {"item_batch": batch_id, "item_position": position})
            c.execute(update(_batches).where(_batches.c.id == batch_id).values(updated_at=utcnow()))

        self.db.write(work)


def _item(row: Any) -> BatchItem:
    return BatchItem(row.batch_id, row.position, row.inputs, row.status, row.outputs, row.error, row.attempts,
                     row.started_at, row.finished_at)

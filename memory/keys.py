"""API keys of the HTTP server, in SQL. A key is shown once, when made; only its SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update

from schemas import InvalidInput

from .database import Database
from .models import ApiKeyRow, utcnow

KEY_PREFIX = "vk_"
_keys: Table = ApiKeyRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never the key itself."""

    id: str
    owner: str
    label: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "label": self.label, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Makes, checks, lists and revokes keys; each key reaches its owner's threads and artifacts only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, owner: str, label: str = "") -> tuple[ApiKey, str]:
        """A new key for `owner`: its record, and the key itself (shown this once)."""
        owner = owner.strip()
        if not owner or len(owner) > 200:
            raise InvalidInput("an owner is a name of 1 to 200 characters", field="owner", fix="give --owner NAME")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {"id": secrets.token_hex(6), "owner": owner, "digest": _digest(key), "label": label,
               "created_at": utcnow(), "revoked_at": None}
        self.db.write(lambda c: c.execute(insert(_keys), row))
        return ApiKey(row["id"], owner, label, row["created_at"], None), key

    def owner_of(self, key: str) -> str | None:
        """Whose key this is, or None for a key unknown or revoked."""
        query = select(_keys.c.owner).where(_keys.c.digest == _digest(key), _keys.c.revoked_at.is_(None))
        return self.db.read(lambda c: c.execute(query).scalar())

    def list(self) -> list[ApiKey]:
        query = select(_keys).order_by(_keys.c.created_at)
        return self.db.read(lambda c: [ApiKey(r.id, r.owner, r.label, r.created_at, r.revoked_at)
                                       for r in c.execute(query)])

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by its id; it stops working at once."""

        def work(c: Any) -> Any:
            return c.execute(update(_keys).where(_keys.c.id == key_id).values(revoked_at=utcnow())
                             .returning(*_keys.c)).first()

        row = self.db.write(work)
        if row is None:
            raise InvalidInput(f"no API key {key_id!r}", field="key_id", fix="give an id the key list shows")
        return ApiKey(row.id, row.owner, row.label, row.created_at, row.revoked_at)

    def any(self, *, include_revoked: bool = False) -> bool:
        """Whether any key that works exists (with `include_revoked`: whether any key was ever made)."""
        query = select(_keys.c.id).limit(1)
        if not include_revoked:
            query = query.where(_keys.c.revoked_at.is_(None))
        return self.db.read(lambda c: c.execute(query).first() is not None)

"""What every route needs, made once when the server starts: the agent, the records, the keys, the URL signer, the
limits; and who is asking (the owner of the request's API key)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from memory import ApiKeys, ArtifactStore, RunRecords, SessionInfo
from schemas import ArtifactRef, InvalidInput, SessionNotFound, VitronSettings

from ..api import VitronAgent

KEYS_RECHECK_S = 2.0  # how long "are any keys configured?" is taken as known


_AGENTS_LOCK = threading.Lock()


def model_ids(settings: VitronSettings) -> list[str]:
    """The planners that can answer, as model ids: the built-in ones, and those configured."""
    ids = ["vitron-mini", "vitron-explicit"]
    if settings.chat_model:
        ids.append("vitron-chat")
    if settings.planner_model:
        ids.append("vitron")
    return ids


def planner_of(model: str | None, settings: VitronSettings, field_name: str = "model") -> str:
    """The planner a model id names; the settings' planner for none."""
    from ..api import PLANNERS

    if not model or model in ("agent", "default"):
        return settings.planner
    name = "vitron" if model == "vitron" else model.removeprefix("vitron-")
    if name not in PLANNERS:
        raise InvalidInput(f"no model {model!r}", field=field_name,
                           fix=f"use one of {', '.join(model_ids(settings))}")
    return name


class Unauthorized(Exception):
    """No key, or a key that does not work, where keys are configured."""


class Signer:
    """Signs artifact download URLs (HMAC-SHA256 with an expiry), so an `<img src>` works without headers."""

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret, self.ttl_s = secret, ttl_s

    @classmethod
    def from_settings(cls, settings: VitronSettings) -> Signer:
        """The secret from VITRON_SECRET_KEY, else a file in the data folder, made once (owner-readable only)."""
        if settings.secret_key:
            return cls(settings.secret_key.encode(), settings.url_ttl_s)
        path = settings.home.expanduser() / "server.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
        return cls(path.read_text().strip().encode(), settings.url_ttl_s)

    def sign(self, sha256: str, expires: int | None = None) -> tuple[int, str]:
        expires = expires or int(time.time()) + self.ttl_s
        return expires, self._mac(sha256, expires)

    def check(self, sha256: str, expires: int, signature: str) -> bool:
        return expires >= time.time() and hmac.compare_digest(self._mac(sha256, expires), signature)

    def _mac(self, sha256: str, expires: int) -> str:
        return hmac.new(self._secret, f"{sha256}.{expires}".encode(), hashlib.sha256).hexdigest()[:40]


@dataclass
class ServerContext:
    """The server's shared parts."""

    agent: VitronAgent
    settings: VitronSettings
    runs: RunRecords
    keys: ApiKeys
    signer: Signer
    manager: Any = None  # the RunManager, made with the context
    agents: dict[str, VitronAgent] = field(default_factory=dict)  # by planner, made on first use (`agent_for`)
    public_url: str | None = None  # the base of signed links; default the request's own
    seen_url: str = ""  # the address the server was last reached at, for links made away from a request
    _keys_known: tuple[float, bool] = field(default=(0.0, False))

    @property
    def store(self) -> ArtifactStore:
        return self.agent.memory.store

    def agent_for(self, model: str | None, field_name: str = "model") -> VitronAgent:
        """The agent whose planner a model id names (`vitron-mini`, `vitron-explicit`, `vitron-chat`, `vitron`, or a
        planner's own name); the server's own planner for none. All of them share the database and the store."""
        planner = planner_of(model, self.settings, field_name)
        if planner == self.settings.planner:
            return self.agent
        with _AGENTS_LOCK:
            if planner not in self.agents:
                self.agents[planner] = VitronAgent.from_settings(self.settings, planner=planner)
            return self.agents[planner]

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()

    def keys_required(self) -> bool:
        checked, required = self._keys_known
        if time.monotonic() - checked > KEYS_RECHECK_S:
            required = self.keys.any()
            self._keys_known = (time.monotonic(), required)
        return required

    def owner_of(self, request: Request) -> str | None:
        """The owner of the request's key (None on a server without keys). `Unauthorized` when keys are configured
        and the request has none that works."""
        if not self.keys_required():
            return None
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        owner = self.keys.owner_of(key) if key else None
        if owner is None:
            raise Unauthorized("a valid API key is needed: Authorization: Bearer <key>" if key else
                               "an API key is needed: Authorization: Bearer <key>")
        return owner

    def thread(self, thread_id: str, owner: str | None) -> SessionInfo:
        """The owner's thread; another owner's answers as if there were none."""
        try:
            info = self.agent.memory.get_session(thread_id)
        except SessionNotFound:
            info = None
        if info is None or info.owner != owner:
            raise SessionNotFound(f"no thread {thread_id!r}", field="thread_id",
                                  fix="use a thread id this key created (POST /threads)")
        return info

    def url(self, ref: ArtifactRef, request: Request | None = None) -> str:
        """A signed download link for an artifact (the caller checked that the owner may read it), on the public
        URL when one is set, else the one the request came to."""
        from schemas import MEDIA_TYPES

        expires, signature = self.signer.sign(ref.sha256)
        base = (self.public_url or (str(request.base_url) if request is not None else self.seen_url)).rstrip("/")
        return f"{base}/files/{ref.sha256}{MEDIA_TYPES.get(ref.media_type, '')}?exp={expires}&sig={signature}"

    def describe(self, ref: ArtifactRef, request: Request | None = None, **extra: Any) -> dict[str, Any]:
        """An artifact as the API shows it: its ref and a signed link."""
        return {"sha256": ref.sha256, "kind": ref.kind, "media_type": ref.media_type, "shape": list(ref.shape),
                **({"alias": ref.alias} if ref.alias else {}), "url": self.url(ref, request), **extra}


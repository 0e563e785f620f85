"""What every route needs, made once when the server starts: the agent, the records, the keys, the URL signer, the
limits; who is asking (the owner of the request's API key); and the artifacts and threads that owner may reach."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from memory import ApiKeys, ArtifactStore, RunRecords, SessionInfo
from schemas import MEDIA_TYPES, ArtifactNotFound, ArtifactRef, InvalidInput, SessionNotFound, VitronSettings

from ..api import VitronAgent

KEYS_RECHECK_S = 2.0  # how long "have keys ever been made?" is taken as known
_HEX = re.compile(r"[0-9a-f]{40}")
_SHA = re.compile(r"[0-9a-f]{64}")


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
        if len(secret) < 16:
            raise InvalidInput("the signing key is shorter than 16 characters", field="VITRON_SECRET_KEY",
                               fix="set a long random key, or unset it to use a generated one")
        self._secret, self.ttl_s = secret, ttl_s

    @classmethod
    def from_settings(cls, settings: VitronSettings) -> Signer:
        """The secret from VITRON_SECRET_KEY, else a file in the data folder, made once (owner-readable only)."""
        if settings.secret_key:
            return cls(settings.secret_key.encode(), settings.url_ttl_s)
        path = settings.home.expanduser() / "server.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made before, or by a process starting beside this one
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
        for _ in range(50):  # another process may be between creating the file and writing it
            secret = path.read_text().strip()
            if secret:
                return cls(secret.encode(), settings.url_ttl_s)
            time.sleep(0.02)
        raise InvalidInput(f"the signing key file {path.name} in the data folder is empty", field="VITRON_SECRET_KEY",
                           fix="remove the empty file (a new key is made), or set VITRON_SECRET_KEY")

    def sign(self, sha256: str, expires: int | None = None) -> tuple[int, str]:
        expires = expires or int(time.time()) + self.ttl_s
        return expires, self._mac(sha256, expires)

    def check(self, sha256: str, expires: int, signature: str) -> bool:
        if not _HEX.fullmatch(signature) or not _SHA.fullmatch(sha256):
            return False
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
    public_url: str | None = None  # the base of signed links; default the one each request came to
    agents: dict[str, VitronAgent] = field(default_factory=dict)  # by planner, made on first use (`agent_for`)
    _keys_known: tuple[float, bool] = field(default=(0.0, False))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> ArtifactStore:
        return self.agent.memory.store

    def agent_for(self, model: str | None, field_name: str = "model") -> VitronAgent:
        """The agent whose planner a model id names (`vitron-mini`, `vitron-explicit`, `vitron-chat`, `vitron`, or a
        planner's own name); the server's own planner for none. All share the server agent's memory, checkpointer
        and executor."""
        planner = planner_of(model, self.settings, field_name)
        if planner == self.settings.planner:
            return self.agent
        with self._lock:
            found = self.agents.get(planner)
        if found is None:
            made = self.agent.with_planner(planner)  # outside the lock: a planner can take a while to load
            with self._lock:
                found = self.agents.setdefault(planner, made)
        return found

    # -- who is asking -------------------------------------------------------------------------

    def keys_required(self) -> bool:
        """Whether requests need a key: once any key was made (revoking them all does not open the server)."""
        checked, required = self._keys_known
        if not required and time.monotonic() - checked > KEYS_RECHECK_S:
            required = self.keys.any(include_revoked=True)
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

    # -- what the owner may reach ----------------------------------------------------------------

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

    def artifact(self, owner: str | None, value: Any, field_name: str, kind: str | None = None,
                 thread_id: str | None = None) -> ArtifactRef:
        """An artifact the owner may read, given by sha256 (or a ref's JSON, or `@alias` in `thread_id`); another
        owner's answers as if there were none."""
        ref = None
        if isinstance(value, str) and value.startswith("@") and thread_id is not None:
            self.thread(thread_id, owner)  # an alias is read only in the owner's own thread
            ref = next((e.ref for e in self.agent.memory.artifact_table(thread_id) if e.alias == value[1:]), None)
        else:
            sha = value.get("sha256") if isinstance(value, dict) else value
            ref = self.runs.owned(owner, sha) if isinstance(sha, str) and _SHA.fullmatch(sha) else None
        if ref is None or (kind is not None and ref.kind != kind):
            shown = str(value)[:20] if isinstance(value, str) else "that artifact"
            raise ArtifactNotFound(f"no {kind or 'artifact'} {shown}", field=field_name,
                                   fix="upload it first (POST /artifacts) and give its sha256, or a thread's alias")
        return ref

    def url(self, ref: ArtifactRef, base: str) -> str:
        """A signed download link for an artifact (the caller checked that the owner may read it)."""
        expires, signature = self.signer.sign(ref.sha256)
        base = (self.public_url or base).rstrip("/")
        return f"{base}/files/{ref.sha256}{MEDIA_TYPES.get(ref.media_type, '')}?exp={expires}&sig={signature}"

    def describe(self, ref: ArtifactRef, base: str | Request, **extra: Any) -> dict[str, Any]:
        """An artifact as the API shows it: its ref and a signed link on `base` (a request: the address it came
        to, so a client's Host header shapes its own links only)."""
        base = str(base.base_url) if isinstance(base, Request) else base
        return {"sha256": ref.sha256, "kind": ref.kind, "media_type": ref.media_type, "shape": list(ref.shape),
                **({"alias": ref.alias} if ref.alias else {}), "url": self.url(ref, base), **extra}

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()


def context(request: Request) -> ServerContext:
    return request.app.state.context


def owner(request: Request) -> str | None:
    """The owner of the request's key (a route's dependency)."""
    return context(request).owner_of(request)

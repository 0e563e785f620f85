"""The HTTP server in process (FastAPI's TestClient: real requests through the whole app, its lifespan included) on a
fresh SQLite database and artifact store, with the explicit planner (the text is the plan)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agent.server import create_app
from memory import ApiKeys, Database
from schemas import VitronSettings


@pytest.fixture
def server_settings(tmp_path) -> VitronSettings:
    return VitronSettings(home=tmp_path / "home", planner="explicit")


@pytest.fixture
def client(server_settings) -> Iterator[TestClient]:
    with TestClient(create_app(server_settings)) as client:
        yield client


@pytest.fixture
def keyed(tmp_path):
    """A server with keys for alice and bob."""
    settings = VitronSettings(home=tmp_path / "home", planner="explicit", max_upload_bytes=2_000_000,
                              max_pixels=4_000_000)
    with Database.open(settings.database) as db:
        keys = ApiKeys(db)
        alice, bob = keys.create("alice")[1], keys.create("bob")[1]
        revoked_record, revoked = keys.create("carol")
        keys.revoke(revoked_record.id)
    with TestClient(create_app(settings)) as client:
        yield client, {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"},
                       "revoked": {"Authorization": f"Bearer {revoked}"}}


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client: TestClient, rgb: np.ndarray, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/artifacts", content=png_bytes(rgb), headers={"content-type": "image/png",
                                                                          **(headers or {})})
    assert response.status_code == 201, response.text
    return response.json()


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events as dicts {id, event, data}, in order, from a response's text lines."""
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "event" in event:
                yield {**event, "data": json.loads(event.get("data", "null"))}
            event = {}
        elif line.startswith(":"):
            continue  # a keep-alive comment
        else:
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value

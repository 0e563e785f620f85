"""The real services on loopback that some tests need; they skip when one is down, unless
VITRON_REQUIRE_SERVICES=1 (CI), where a missing service fails the test instead."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get("VITRON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VITRON_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    """Skip (or, with VITRON_REQUIRE_SERVICES=1, fail) when nothing answers at host:port."""
    if answers(host, port):
        return
    reason = f"{service} does not answer on {host}:{port} (start it with scripts/services.sh)"
    if os.environ.get("VITRON_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + "; VITRON_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)

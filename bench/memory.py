"""Session memory on SQLite and PostgreSQL: append latency, planner-context load time, database bytes per turn.

`bytes_per_turn` is the row data a turn adds (a user turn with a new 0.3 MP upload and an assistant turn with
a two-step plan, averaged), and `bytes_per_turn_8mp_uploads` the same with 8 MP uploads: blobs stay in the store.

Prints one JSON line: {"sqlite": {...}, "postgresql": {...}}. PostgreSQL is the server on loopback
(VITRON_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test); the bench makes a database of
its own there and drops it afterwards. Run: .venv/bin/python bench/memory.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

# This file's own folder comes first on sys.path and holds memory.py: put the project root before it so
# that `import memory` finds the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import psycopg
from skimage import data
from sqlalchemy import text
from sqlalchemy.engine import make_url

from memory import SessionMemory
from schemas import VitronSettings

TURNS = 1000
ADMIN_URL = os.environ.get("VITRON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
INVOCATIONS = [{"module": "B", "command": "segment the cup", "region": {"kind": "box", "box": [72, 52, 484, 392]}},
               {"module": "C", "command": "make it blue", "inputs": {"mask": "@1"}}]


def photo(megapixels: float, seed: int) -> np.ndarray:
    """A real photo tiled to about `megapixels`, made unique per seed (so every upload is a new blob)."""
    base = data.astronaut()
    side = int((megapixels * 1e6) ** 0.5)
    reps = -(-side // base.shape[0])
    image = np.tile(base, (reps, reps, 1))[:side, :side].copy()
    image[0, :8] = np.frombuffer(seed.to_bytes(24, "little"), np.uint8).reshape(8, 3)
    return image


TABLES = ("sessions", "turns", "steps", "artifacts", "artifact_parents")


def database_bytes(memory: SessionMemory) -> int:
    """Bytes of row data in our tables (indexes and free page space left out, so the figure is exact)."""
    with memory.db.connect() as conn:
        if memory.db.backend == "sqlite":
            names = ", ".join(f"'{t}'" for t in TABLES)
            return conn.exec_driver_sql(f"SELECT sum(payload) FROM dbstat WHERE name IN ({names})").scalar() or 0
        return sum(conn.execute(text(f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {t} t")).scalar()
                   for t in TABLES)


def bytes_per_turn(memory: SessionMemory, megapixels: float, turns: int) -> float:
    """Database growth per turn (a user turn with a new upload, an assistant turn with a 2-step plan)."""
    session_id = memory.create_session("bytes").id
    images = [memory.store.put_image(photo(megapixels, seed)) for seed in range(turns)]
    before = database_bytes(memory)
    for ref in images:
        memory.append_turn(session_id, "user", "make the cup blue and blur the background", attachments=[ref])
        memory.append_turn(session_id, "assistant", reply="Done.", invocations=INVOCATIONS)
    return (database_bytes(memory) - before) / (2 * turns)


def measure(settings: VitronSettings) -> dict[str, float]:
    with SessionMemory.from_settings(settings) as memory:
        session_id = memory.create_session("bench").id
        upload = memory.store.put_image(photo(0.3, 0))
        memory.append_turn(session_id, "user", "here is a photo", attachments=[upload])
        times = []
        for n in range(TURNS - 1):
            start = time.perf_counter()
            if n % 2:
                memory.append_turn(session_id, "user", f"turn {n}: make the cup a little bluer")
            else:
                memory.append_turn(session_id, "assistant", reply=f"turn {n}: done", invocations=INVOCATIONS)
            times.append((time.perf_counter() - start) * 1000)
        loads = []
        for _ in range(20):
            start = time.perf_counter()
            history = memory.history(session_id)
            loads.append((time.perf_counter() - start) * 1000)
        assert history.turns[-1].seq == TURNS
        quantiles = statistics.quantiles(times, n=20)
        return {
            "append_p50_ms": round(statistics.median(times), 2),
            "append_p95_ms": round(quantiles[18], 2),
            "context_load_ms": round(statistics.median(loads), 2),
            "context_turns": len(history.turns),
            "bytes_per_turn": round(bytes_per_turn(memory, 0.3, 20)),
            "bytes_per_turn_8mp_uploads": round(bytes_per_turn(memory, 8.0, 10)),
        }


def main() -> None:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(VitronSettings(home=Path(tmp) / "sqlite"))
        admin = make_url(ADMIN_URL)
        name = f"vitron_bench_{uuid.uuid4().hex[:8]}"
        admin_dsn = admin.render_as_string(hide_password=False)
        try:
            with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            results["postgresql"] = {"skipped": f"no PostgreSQL at {admin.host}:{admin.port}: {exc}".splitlines()[0]}
        else:
            try:
                url = admin.set(database=name).render_as_string(hide_password=False)
                results["postgresql"] = measure(VitronSettings(home=Path(tmp) / "pg", database_url=url))
            finally:
                with psycopg.connect(admin_dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(results))


if __name__ == "__main__":
    main()

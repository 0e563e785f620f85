"""Faults as a user or an attacker meets them (issue 21), on real processes. Prints one JSON line:

- `worker_kill_recovery_s` (goal ≤ 60): a long job's whole worker (main process and pool) killed with -9, with the
  default settings on a Redis broker: seconds until another live worker runs the job;
- `same_session_concurrent_turns_max` (goal 1): 20 `vitron run --session ID` started at once on one session (SQLite,
  then PostgreSQL): the most turns that ran at once, read from the order of the recorded turns;
- `same_session_wrong_replies` (goal 0): processes that printed a reply other than their own turn's;
- `bomb_peak_rss_mb` (goal ≤ 500): the peak memory of `vitron invoke C` given a 1.2 MB PNG of 20000×20000;
- `plan_10000_refused_s` (goal ≤ 2): a 10,000-step plan sent to a session, until it is refused (nothing recorded);
- `dead_broker_error_s` (goal ≤ 5): `vitron run` with VITRON_BROKER_URL at a closed port, until it exits with its
  one clear line;
- `store_tamper_detected` (goal true): a stored photo with one byte changed, read into a job.

Run: .venv/bin/python bench/faults.py  (Redis on 127.0.0.1:6379, database 9; PostgreSQL on 127.0.0.1:5432)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import cv2
import psycopg
import redis
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import VitronAgent
from memory import ArtifactStore
from schemas import VitronError, VitronSettings
from tests.scenes import render_scene, render_video
from tests.workers import start_worker, stop_worker
from tools.celery_app import make_celery
from tools.executors import CeleryExecutor, LocalExecutor
from tools.jobs import job_spec

VITRON = str(Path(sys.executable).with_name("vitron"))
REDIS = "redis://127.0.0.1:6379/9"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WORDS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown", "white", "black",
         "gray", "grey", "violet", "teal", "crimson", "navy", "lime", "gold"]


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    return env | {"VITRON_HOME": str(home)} | {f"VITRON_{k}": v for k, v in settings.items()}


def worker_kill_recovery(folder: Path) -> float:
    settings = VitronSettings(home=folder / "workers", broker_url=REDIS)  # the default visibility timeout
    redis.Redis.from_url(REDIS).flushdb()
    app = make_celery(settings)
    store = ArtifactStore.from_settings(settings)
    workers = [start_worker(app, settings.home, REDIS, log_path=folder / f"worker{i}.log") for i in range(2)]
    try:
        v = render_video(4, frames=600, width=640, height=480)
        spec = job_spec("F", {"video": store.put_video(v.frames, v.fps), "command": "make it a cartoon",
                              "masks": store.put_video(v.masks, v.fps, kind="masks")}, store)
        handle = CeleryExecutor(app).submit(spec.model_copy(update={"chunk_frames": 0}))
        owner = running_on(app, spec.job_id)
        victim = next(w for w in workers if owner == f"vitron-{w.pid}@{socket.gethostname()}")
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        killed = time.perf_counter()
        running_on(app, spec.job_id, not_on=owner)
        recovered = time.perf_counter() - killed
        handle.result(timeout=600)
        return recovered
    finally:
        for worker in workers:
            stop_worker(worker)


def running_on(app, job_id: str, not_on: str | None = None) -> str:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        meta = app.backend.get_task_meta(job_id)
        node = meta["result"].get("hostname") if isinstance(meta["result"], dict) else None
        if meta["status"] in ("STARTED", "PROGRESS") and node and node != not_on:
            return node
        if meta["status"] in ("SUCCESS", "FAILURE"):
            raise SystemExit(f"the job ended ({meta['status']}) before it was seen running")
        time.sleep(0.05)
    raise SystemExit("the job was never seen running")


def concurrent_turns(folder: Path, database_url: str | None) -> tuple[int, int]:
    """(the most turns running at once, replies that were not their process's own) for 20 runs at once."""
    env = clean_env(folder / f"home-{uuid.uuid4().hex[:6]}", **({"DATABASE_URL": database_url} if database_url else {}))
    scene = render_scene(3)
    photo = folder / "scene.png"
    cv2.imwrite(str(photo), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    edit = "<module>C</module><instruction>make it {}</instruction><region>({})</region>"
    box = ", ".join(map(str, scene.box))
    first = subprocess.run([VITRON, "run", "--planner", "explicit", "--json", "--image", str(photo),
                            edit.format("red", box)], env=env, capture_output=True, text=True, check=True)
    session = json.loads(first.stdout)["session"]
    procs = [subprocess.Popen([VITRON, "run", "--planner", "explicit", "--json", "--session", session,
                               edit.format(word, box)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for word in WORDS]
    wrong = 0
    for word, proc in zip(WORDS, procs, strict=True):
        out, _ = proc.communicate(timeout=600)
        if proc.returncode == 0 and [s["command"] for s in json.loads(out)["steps"]] != [f"make it {word}"]:
            wrong += 1
    shown = subprocess.run([VITRON, "sessions", "show", "--json", session], env=env, capture_output=True, text=True,
                           check=True)
    depth = most = 0
    for turn in json.loads(shown.stdout)["turns"]:
        depth += 1 if turn["role"] == "user" else -1
        most = max(most, depth)
    return most, wrong


def fresh_postgres() -> str:
    name = f"vitron_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(url: str) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A black RGB PNG of side×side, written row by row (never held whole): about 1.2 MB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer, row = zlib.compressobj(9), b"\0" * (1 + 3 * side)
    compressed = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", compressed) + chunk(b"IEND", b""))
    return path


def bomb_peak_rss_mb(folder: Path) -> float:
    bomb = bomb_png(folder / "bomb.png")
    # Measured by a small wrapper process: a child forked from this big one would count this one's pages as its own.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    printed = subprocess.run([sys.executable, "-c", wrapper, VITRON, "invoke", "C", "--image", str(bomb),
                              "--command", "blur it"], env=clean_env(folder / "bomb-home"), capture_output=True,
                             text=True, check=True).stdout
    return int(printed) / 1024  # kilobytes on Linux


def plan_10000_refused_s(folder: Path) -> float:
    settings = VitronSettings(home=folder / "plan-home", max_turn_chars=10**7)  # the plan's own limit refuses it
    with VitronAgent.from_settings(settings, planner="explicit") as agent:
        session = agent.session()
        image = render_scene(0).image
        started = time.perf_counter()
        reply = session.send("<module>C</module><instruction>make it blue</instruction>" * 10_000, image=image)
        seconds = time.perf_counter() - started
        assert reply.refused and not agent.memory.steps(session.id), reply.text
    return seconds


def dead_broker_error_s(folder: Path) -> float:
    env = clean_env(folder / "broker-home", BROKER_URL="redis://127.0.0.1:1/0")
    started = time.perf_counter()
    proc = subprocess.run([VITRON, "run", "--planner", "explicit", "<module>C</module><instruction>blur it"
                           "</instruction>"], env=env, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert proc.returncode == 2 and "VITRON_BROKER_URL" in proc.stderr, proc.stderr
    return seconds


def store_tamper_detected(folder: Path) -> bool:
    settings = VitronSettings(home=folder / "tamper-home")
    store = ArtifactStore.from_settings(settings)
    ref = store.put_image(data.coffee())
    path = store.path(ref)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(blob))
    executor = LocalExecutor(store, settings)
    try:
        executor.submit(job_spec("C", {"image": ref, "command": "blur it"}, store)).result(timeout=120)
    except VitronError as exc:
        return "damaged" in str(exc) or "corrupt" in str(exc).lower()
    finally:
        executor.close()
    return False


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        most_sqlite, wrong_sqlite = concurrent_turns(folder, None)
        url = fresh_postgres()
        try:
            most_pg, wrong_pg = concurrent_turns(folder, url)
        finally:
            drop_postgres(url)
        print(json.dumps({
            "worker_kill_recovery_s": round(worker_kill_recovery(folder), 1),
            "same_session_concurrent_turns_max": max(most_sqlite, most_pg),
            "same_session_wrong_replies": wrong_sqlite + wrong_pg,
            "bomb_peak_rss_mb": round(bomb_peak_rss_mb(folder), 1),
            "plan_10000_refused_s": round(plan_10000_refused_s(folder), 3),
            "dead_broker_error_s": round(dead_broker_error_s(folder), 2),
            "store_tamper_detected": store_tamper_detected(folder),
        }))


if __name__ == "__main__":
    main()

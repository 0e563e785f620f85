"""`vitron sessions list|show|delete|migrate` as a user runs them, on the default SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory import SessionMemory
from schemas import VitronSettings

VITRON = str(Path(sys.executable).with_name("vitron"))


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home):
    env = {**os.environ, "VITRON_HOME": str(home)}
    for name in ("VITRON_DEBUG", "VITRON_DATABASE_URL"):
        env.pop(name, None)

    def call(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([VITRON, "sessions", *args], capture_output=True, text=True,
                              env={**env, **extra_env}, timeout=120)

    return call


def one_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    return json.loads(line)


@pytest.fixture
def session(home) -> str:
    with SessionMemory.from_settings(VitronSettings(home=home)) as memory:
        s = memory.create_session("cup edit", owner="ann")
        photo = memory.store.put_image(np.zeros((4, 4, 3), np.uint8))
        turn = memory.append_turn(s.id, "user", "segment the cup", attachments=[photo])
        step = memory.record_step(s.id, {"module": "B", "command": "segment the cup", "inputs": {"image": "@img1"}},
                                  turn_id=turn.id, position=1)
        memory.update_step(step.id, status="succeeded")
        memory.record_artifact(s.id, memory.store.put_mask(np.eye(4, dtype=bool)), step_id=step.id)
        memory.append_turn(s.id, "assistant", reply="Here is the cup.")
        return s.id


def test_list_show_and_delete(run, session):
    listed = one_json(run("list", "--json"))["sessions"]
    assert [(s["id"], s["title"], s["turns"], s["artifacts"]) for s in listed] == [(session, "cup edit", 2, 2)]

    shown = one_json(run("show", session[:6], "--json"))
    assert [t["seq"] for t in shown["turns"]] == [1, 2]
    assert [(s["module"], s["status"]) for s in shown["steps"]] == [("image_segmentation", "succeeded")]
    assert [(a["alias"], a["made_by"], a["parents"]) for a in shown["artifacts"]] == [
        ("img1", "upload", []), ("mask1", "image_segmentation", ["img1"])]
    assert all(Path(a["path"]).is_file() for a in shown["artifacts"])

    text = run("show", session)
    assert text.returncode == 0 and "@mask1 mask [4, 4]: image_segmentation of @img1" in text.stdout

    deleted = one_json(run("delete", session, "--json", VITRON_STORE_DELETE_GRACE_S="0"))  # no grace: remove at once
    assert (deleted["turns"], deleted["steps"], deleted["artifacts"], deleted["files_removed"]) == (2, 1, 2, 2)
    again = run("delete", session)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "no session" in again.stderr
    assert "`vitron sessions list` shows the sessions" in again.stderr  # the command line adds its own advice
    assert "Traceback" not in again.stderr
    assert one_json(run("list", "--json"))["sessions"] == []


def test_an_old_database_without_auto_upgrade_names_the_command(run, home):
    refused = run("list", VITRON_DATABASE_AUTO_UPGRADE="0")
    assert refused.returncode == 2 and "vitron sessions migrate" in refused.stderr
    migrated = one_json(run("migrate", "--json"))
    assert migrated["from"] is None and migrated["to"] == migrated["head"]
    assert run("list", "--json", VITRON_DATABASE_AUTO_UPGRADE="0").returncode == 0


def test_a_bad_database_url_is_one_clear_line(run):
    proc = run("list", VITRON_DATABASE_URL="mysql://x@localhost/db")
    assert proc.returncode == 2 and "VITRON_DATABASE_URL" in proc.stderr and "Traceback" not in proc.stderr

"""One turn at a time per session, across processes: the SQL turn lease, and 20 `vitron run` at once on one session.

Before the lease, the one-turn guard checked for an unfinished turn and then appended the turn with nothing between:
20 concurrent `vitron run --session ID` let up to 6 turns through, and on PostgreSQL 4 of 7 printed another
process's reply."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from memory import TurnLeases
from memory.leases import holder_gone
from memory.models import TurnLeaseRow
from schemas import SessionBusy
from tests.cli import VITRON, cli_env, one_json, png, vitron
from tests.scenes import render_scene

WORDS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown", "white", "black",
         "gray", "grey", "violet", "teal", "crimson", "navy", "lime", "gold"]


def test_a_second_taker_is_refused_with_the_expiry_until_the_first_lets_go(memory):
    leases = TurnLeases(memory.db, ttl_s=30)
    sid = memory.create_session().id
    first = leases.acquire(sid)
    with pytest.raises(SessionBusy, match="running in another process") as refused:
        leases.acquire(sid)
    assert refused.value.expires_at == pytest.approx(first.expires_at.timestamp())
    assert refused.value.field == "session" and "--wait" in refused.value.fix
    leases.release(first)
    second = leases.acquire(sid)
    assert second.holder != first.holder and not leases.renew(first) and leases.renew(second)


def test_an_expired_lease_or_a_dead_holder_is_taken_over(memory):
    leases = TurnLeases(memory.db, ttl_s=30)
    sid = memory.create_session().id
    stale = leases.acquire(sid)
    table = TurnLeaseRow.__table__
    memory.db.write(lambda c: c.execute(update(table).values(expires_at=stale.expires_at - timedelta(seconds=60))))
    taker = leases.acquire(sid)  # expired: taken over, and the old holder can no longer renew it
    assert not leases.renew(stale) and leases.holder(sid) == taker
    dead = subprocess.Popen(["true"])
    dead.wait()
    ghost = taker.holder.split(":", 1)[0] + f":{dead.pid}:ghost"
    memory.db.write(lambda c: c.execute(update(table).values(holder=ghost)))
    assert holder_gone(ghost) and leases.holder(sid) is None
    assert leases.acquire(sid).holder != ghost  # its process has ended: no need to wait for the expiry


def test_a_waiting_taker_gets_the_lease_when_it_is_let_go(memory):
    leases = TurnLeases(memory.db, ttl_s=30)
    sid = memory.create_session().id
    first = leases.acquire(sid)
    got = threading.Event()
    threading.Thread(target=lambda: (leases.acquire(sid, wait_s=60), got.set()), daemon=True).start()
    assert not got.wait(0.3)
    leases.release(first)
    assert got.wait(30)


def test_a_kept_lease_outlives_its_ttl_while_held_and_is_let_go_after(memory):
    leases = TurnLeases(memory.db, ttl_s=2)
    sid = memory.create_session().id
    with leases.kept(leases.acquire(sid)) as lease:
        threading.Event().wait(2.5)  # past the ttl: the heartbeat renewed it
        assert leases.holder(sid).holder == lease.holder
    assert leases.holder(sid) is None


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_twenty_concurrent_runs_on_one_session_take_turns_and_print_their_own_replies(database, home, tmp_path,
                                                                                        request):
    env = cli_env(home)
    if database == "postgresql":
        from tests.memory.conftest import _empty

        url = request.getfixturevalue("postgres_database")
        _empty(url)
        env["VITRON_DATABASE_URL"] = url
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    first = one_json(vitron(env, "run", "--planner", "explicit", "--json", "--image",
                            str(png(tmp_path / "in.png", scene.image)),
                            f"<module>C</module><instruction>make it red</instruction><region>({box})</region>"))
    session = first["session"]
    procs = [subprocess.Popen([VITRON, "run", "--planner", "explicit", "--json", "--session", session,
                               f"<module>C</module><instruction>make it {word}</instruction><region>({box})</region>"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for word in WORDS]
    ran = refused = 0
    for word, proc in zip(WORDS, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        if proc.returncode == 2:
            assert "running in another process" in err and "Traceback" not in err, err
            refused += 1
            continue
        assert proc.returncode == 0, err
        reply = json.loads(out)
        assert [s["command"] for s in reply["steps"]] == [f"make it {word}"], "another process's reply was printed"
        ran += 1
    assert ran >= 1 and ran + refused == len(WORDS)
    history = one_json(vitron(env, "sessions", "show", "--json", session))
    roles = [t["role"] for t in history["turns"]]
    # One at a time: every user turn is answered before the next one starts, and each ran turn is there once.
    assert roles == ["user", "assistant"] * (ran + 1)

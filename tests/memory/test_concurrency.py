"""Many writers at once: no lost turn, order kept, no "database is locked" reaching the caller."""

from __future__ import annotations

import threading

from memory import SessionMemory

TURNS = 15


def run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # collected: the test reports them all
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_twenty_threads_writing_twenty_sessions(memory_settings):
    with SessionMemory.from_settings(memory_settings) as memory:
        sessions = [memory.create_session(f"s{i}").id for i in range(20)]

        def write(i: int) -> None:
            for n in range(TURNS):
                memory.append_turn(sessions[i], "user", f"thread {i} turn {n}")

        assert run_threads(write, 20) == []
        for i, session_id in enumerate(sessions):
            turns = memory.turns(session_id)
            assert [t.seq for t in turns] == list(range(1, TURNS + 1))
            assert [t.text for t in turns] == [f"thread {i} turn {n}" for n in range(TURNS)]


def test_five_threads_writing_one_session(memory_settings):
    with SessionMemory.from_settings(memory_settings) as memory:
        session_id = memory.create_session("shared").id

        def write(i: int) -> None:
            for n in range(TURNS):
                memory.append_turn(session_id, "user", f"{i}:{n}")

        assert run_threads(write, 5) == []
        turns = memory.turns(session_id)
        assert [t.seq for t in turns] == list(range(1, 5 * TURNS + 1))  # no gap, no number used twice
        for i in range(5):  # each writer's turns appear in the order it wrote them
            mine = [int(t.text.split(":")[1]) for t in turns if t.text.startswith(f"{i}:")]
            assert mine == list(range(TURNS))


def test_separate_processes_share_one_sqlite_file(memory_settings, tmp_path):
    """Two SessionMemory objects (as two processes would have) writing the same session."""
    with SessionMemory.from_settings(memory_settings) as a, SessionMemory.from_settings(memory_settings) as b:
        session_id = a.create_session().id
        errors = run_threads(lambda i: [(a if i % 2 else b).append_turn(session_id, "user", f"{i}:{n}")
                                        for n in range(TURNS)], 4)
        assert errors == []
        assert [t.seq for t in a.turns(session_id)] == list(range(1, 4 * TURNS + 1))

"""SessionMemory on SQLite and PostgreSQL: sessions, turns, steps, the artifact table, lineage, history."""

from __future__ import annotations

import numpy as np
import pytest

from memory import SessionMemory
from memory.sessions import ANY_OWNER
from schemas import AliasNotFound, ArtifactNotFound, ArtifactRef, InvalidInput, SessionNotFound, StepNotFound


def image(memory: SessionMemory, value: int) -> ArtifactRef:
    return memory.store.put_image(np.full((6, 8, 3), value, np.uint8))


def mask(memory: SessionMemory, value: int) -> ArtifactRef:
    m = np.zeros((6, 8), bool)
    m[: value % 6 + 1] = True
    return memory.store.put_mask(m)


def segment_then_edit(memory: SessionMemory, session_id: str) -> dict[str, ArtifactRef]:
    """Upload a photo, segment it (step 1), edit it inside the mask (step 2, reading @1): the usual plan."""
    photo = image(memory, 10)
    turn = memory.append_turn(session_id, "user", "make the cup blue", attachments=[photo])
    seg = memory.record_step(session_id, {"module": "B", "command": "segment the cup", "inputs": {"image": "@img1"}},
                             turn_id=turn.id, position=1)
    cut = mask(memory, 1)
    memory.record_artifact(session_id, cut, step_id=seg.id)
    edit = memory.record_step(session_id, {"module": "C", "command": "make it blue",
                                           "inputs": {"image": "@img1", "mask": "@1"}}, turn_id=turn.id, position=2)
    blue = image(memory, 200)
    memory.record_artifact(session_id, blue, step_id=edit.id)
    memory.append_turn(session_id, "assistant", reply="Done: the cup is blue.",
                       invocations=[{"module": "B", "command": "segment the cup"},
                                    {"module": "C", "command": "make it blue", "inputs": {"mask": "@1"}}])
    return {"photo": photo, "mask": cut, "blue": blue}


def test_sessions_are_created_listed_renamed_and_deleted(memory):
    a = memory.create_session("first", owner="ann", settings={"planner": "explicit"})
    b = memory.create_session("second", owner="bob")
    assert len(a.id) == 32 and a.id != b.id
    assert memory.get_session(a.id).settings == {"planner": "explicit"}
    memory.append_turn(a.id, "user", "hello")  # a is now the most recently active
    assert [s.id for s in memory.list_sessions(owner=ANY_OWNER)] == [a.id, b.id]
    assert [s.id for s in memory.list_sessions(owner="bob")] == [b.id]
    assert memory.list_sessions() == []  # the local user's: none of them has an owner
    assert memory.rename_session(b.id, "renamed").title == "renamed"
    assert memory.resolve_session_id(a.id[:8], owner="ann") == a.id

    deleted = memory.delete_session(a.id)
    assert (deleted.turns, deleted.steps, deleted.artifacts) == (1, 0, 0)
    with pytest.raises(SessionNotFound, match="use an existing session's id"):
        memory.delete_session(a.id)  # twice: a clear error …
    assert [s.id for s in memory.list_sessions(owner=ANY_OWNER)] == [b.id]  # … and the other session is untouched
    assert memory.get_session(b.id).title == "renamed"


def test_unknown_session_is_a_clear_error_everywhere(memory):
    for call in (lambda: memory.get_session("nope"), lambda: memory.append_turn("nope", "user", "hi"),
                 lambda: memory.turns("nope"), lambda: memory.history("nope"),
                 lambda: memory.artifact_table("nope"), lambda: memory.rename_session("nope", "x"),
                 lambda: memory.resolve_session_id("abcd1234")):
        with pytest.raises(SessionNotFound, match="no session"):
            call()
    assert memory.list_sessions() == []


def test_turns_keep_their_order_and_content(memory):
    s = memory.create_session()
    for i in range(5):
        memory.append_turn(s.id, "user" if i % 2 == 0 else "assistant", f"turn {i}", reply=f"reply {i}")
    turns = memory.turns(s.id)
    assert [t.seq for t in turns] == [1, 2, 3, 4, 5]
    assert [t.text for t in turns] == [f"turn {i}" for i in range(5)]
    assert [t.seq for t in memory.turns(s.id, after_seq=3)] == [4, 5]
    with pytest.raises(InvalidInput, match="unknown role"):
        memory.append_turn(s.id, "robot", "hi")
    assert len(memory.turns(s.id)) == 5


def test_artifact_table_gives_stable_aliases_and_what_made_each(memory):
    s = memory.create_session()
    refs = segment_then_edit(memory, s.id)
    table = memory.artifact_table(s.id)
    assert [(a.alias, a.ref.kind, a.made_by, a.parents) for a in table] == [
        ("img1", "image", "upload", ()),
        ("mask1", "mask", "image_segmentation", ("img1",)),
        ("img2", "image", "image_editing", ("img1", "mask1")),
    ]
    assert table[2].describe() == "@img2 image [6, 8, 3]: image_editing of @img1, @mask1 (turn 1)"
    assert memory.resolve_alias(s.id, "@mask1").sha256 == refs["mask"].sha256
    assert memory.resolve_alias(s.id, "img2").sha256 == refs["blue"].sha256
    # The same content recorded again keeps its first alias.
    assert memory.record_artifact(s.id, refs["photo"]).alias == "img1"
    with pytest.raises(AliasNotFound, match="@img1, @mask1, @img2"):
        memory.resolve_alias(s.id, "@mask7")


def test_lineage_goes_back_to_the_uploads(memory):
    s = memory.create_session()
    refs = segment_then_edit(memory, s.id)
    memory.append_turn(s.id, "user", "now pixelate it")
    step = memory.record_step(s.id, {"module": "C", "command": "pixelate it", "inputs": {"image": "@img2"}})
    final = memory.record_artifact(s.id, image(memory, 99), step_id=step.id)
    lineage = memory.lineage(s.id, "@" + final.alias)
    assert lineage.artifact.alias == "img3"
    assert [p.artifact.alias for p in lineage.parents] == ["img2"]
    assert [p.artifact.alias for p in lineage.parents[0].parents] == ["img1", "mask1"]
    assert [a.alias for a in lineage.sources()] == ["img1"]
    assert memory.lineage(s.id, refs["mask"]).describe().splitlines()[1].strip().startswith("@img1 image")


def test_steps_record_jobs_progress_timings_and_errors(memory):
    s = memory.create_session()
    step = memory.record_step(s.id, {"module": "E", "command": "track the car"})
    assert step.status == "pending" and step.module == "video_segmentation"
    assert memory.record_job(step.id, "job-123", backend="opencv").status == "queued"
    memory.update_step(step.id, status="running", progress=0.5, message="frame 15/30")
    done = memory.update_step(step.id, status="failed", error=InvalidInput("bad box", field="region", fix="redraw"))
    assert done.status == "failed" and done.duration_s is not None and done.duration_s >= 0
    assert done.error == {"error": "InvalidInput", "field": "region", "problem": "bad box", "fix": "redraw"}
    assert memory.step_for_job("job-123").id == step.id
    with pytest.raises(InvalidInput, match="outside"):
        memory.update_step(step.id, progress=1.5)
    with pytest.raises(StepNotFound):
        memory.update_step(10**9, status="running")
    with pytest.raises(InvalidInput, match="invocation"):
        memory.record_step(s.id, {"module": "Z", "command": "x"})
    with pytest.raises(AliasNotFound):
        memory.record_step(s.id, {"module": "C", "command": "x", "inputs": {"image": "@img9"}})
    assert [st.id for st in memory.steps(s.id)] == [step.id]  # the bad ones left nothing behind


def test_a_step_finished_again_keeps_its_first_finish_and_its_outputs(memory):
    # A resumed turn takes a finished step's outputs back when its graph checkpoint was lost to a kill.
    s = memory.create_session()
    photo = image(memory, 10)
    memory.append_turn(s.id, "user", "segment it", attachments=[photo])
    step = memory.record_step(s.id, {"module": "B", "command": "segment it", "inputs": {"image": "@img1"}})
    memory.update_step(step.id, status="running")
    cut = mask(memory, 2)
    first = memory.finish_step(step.id, [cut])
    finished = memory.steps(s.id)[0]
    again = memory.finish_step(step.id, [cut])
    (row,) = memory.steps(s.id)
    assert [r.alias for r in again] == [r.alias for r in first] == ["mask1"]
    assert (row.status, row.started_at, row.finished_at) == ("succeeded", finished.started_at, finished.finished_at)
    retried = memory.record_step(s.id, {"module": "B", "command": "segment it", "inputs": {"image": "@img1"}})
    memory.update_step(retried.id, status="failed", error="no object")
    failed_at = memory.steps(s.id)[1].finished_at
    memory.finish_step(retried.id, [mask(memory, 3)])
    assert memory.steps(s.id)[1].finished_at >= failed_at  # a failed step that succeeds later is stamped anew


def test_a_ref_missing_from_the_store_is_refused_before_anything_is_written(memory):
    s = memory.create_session()
    ghost = ArtifactRef(sha256="0" * 64, kind="image", media_type="image/png")
    with pytest.raises(ArtifactNotFound):
        memory.append_turn(s.id, "user", "look", attachments=[ghost])
    with pytest.raises(ArtifactNotFound):
        memory.record_artifact(s.id, ghost)
    assert memory.turns(s.id) == [] and memory.artifact_table(s.id) == []


def test_history_keeps_the_newest_turns_within_the_budget_and_sums_up_the_rest(memory):
    s = memory.create_session()
    for i in range(30):
        memory.append_turn(s.id, "user", f"turn {i:02d} " + "word " * 30, attachments=[image(memory, i)])
    history = memory.history(s.id, token_budget=200)
    assert 0 < len(history.turns) < 30 and history.tokens <= 200
    assert [t.seq for t in history.turns] == list(range(31 - len(history.turns), 31))  # the newest, in order
    assert history.earlier_turns == 30 - len(history.turns)
    assert history.earlier_artifact_count == history.earlier_turns  # one upload per earlier turn
    text = history.render()
    assert text.startswith(f"(earlier: {history.earlier_turns} turns") and "@img1 image" in text
    assert "turn 29" in text and "turn 00" not in text
    one = memory.history(s.id, token_budget=0)
    assert [t.seq for t in one.turns] == [30]  # the newest turn always fits


def test_delete_removes_only_the_files_no_other_session_uses(memory):
    memory.store.delete_grace_s = 0  # no recording in flight here: remove at once
    a, b = memory.create_session(), memory.create_session()
    shared, own = image(memory, 1), image(memory, 2)
    memory.append_turn(a.id, "user", "x", attachments=[shared, own])
    memory.append_turn(b.id, "user", "y", attachments=[shared])
    deleted = memory.delete_session(a.id)
    assert deleted.blobs_removed == (own.sha256,)
    assert memory.store.exists(shared) and not memory.store.exists(own)
    assert memory.resolve_alias(b.id, "@img1").sha256 == shared.sha256


def test_sessions_outlive_the_process(memory_settings):
    with SessionMemory.from_settings(memory_settings) as first:
        s = first.create_session("long edit")
        segment_then_edit(first, s.id)
    with SessionMemory.from_settings(memory_settings) as second:  # a new process would do the same
        assert second.get_session(s.id).turns == 2
        assert [a.alias for a in second.artifact_table(s.id)] == ["img1", "mask1", "img2"]
        assert second.turns(s.id)[1].reply == "Done: the cup is blue."

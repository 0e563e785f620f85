"""Sessions stay their owner's: a plan reads only its own session's artifacts (an artifact given by ref must be in the
session's table or one of the turn's uploads, and becomes the ref recorded for it: its kind and shape are the
store's, never the caller's); session ids and prefixes resolve, and sessions list, within one owner's only; over
HTTP, one key cannot read or run on another key's threads or artifacts. On SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from agent.api import VitronAgent
from agent.server import create_app
from memory import ApiKeys, Database, SessionMemory
from memory.models import SessionRow
from memory.sessions import ANY_OWNER
from schemas import ArtifactRef, InvalidInput, Invocation, Plan, PlanStep, ScribbleRegion, SessionNotFound
from tests.scenes import render_scene
from tests.server.conftest import upload
from workflows import compile_invocations

SEPIA = "<module>C</module><instruction>make it sepia</instruction>"
ANIMATE = "<module>G</module><instruction>pan left</instruction>"  # heavy: it waits for approval


class FixedPlanner:
    """A planner whose plan is given (as a chat model's JSON would give it): refs and all."""

    name, replans, corrects = "fixed", False, False

    def __init__(self) -> None:
        self.steps: list[Invocation] = []

    def plan(self, request) -> Plan:
        return Plan(steps=[PlanStep(invocation=step) for step in self.steps])


@pytest.fixture
def agent(memory_settings):
    with VitronAgent.from_settings(memory_settings.model_copy(update={"planner": "explicit"})) as agent:
        yield agent


def forged(ref: ArtifactRef, **changes) -> ArtifactRef:
    """The ref as a caller might hand it over: no alias, its fields as the caller says."""
    return ArtifactRef(**{**ref.model_dump(exclude={"alias"}), **changes})


def shas(memory: SessionMemory, session_id: str) -> set[str]:
    return {e.ref.sha256 for e in memory.artifact_table(session_id)}


# -- plans -------------------------------------------------------------------------------------------


def test_a_plan_giving_another_sessions_artifact_by_ref_is_refused_and_nothing_is_recorded(agent):
    theirs = agent.session()
    photo = theirs.send(SEPIA, image=render_scene(1, 96, 72).image).artifacts[0].ref
    mine = agent.session()
    own = mine.send(SEPIA, image=render_scene(2, 96, 72).image)
    before_steps, before_table = agent.memory.steps(mine.id), agent.memory.artifact_table(mine.id)

    planner = FixedPlanner()
    planner.steps = [Invocation(module="C", command="make it blue", inputs={"image": forged(photo)})]
    reply = agent.with_planner(planner).session(mine.id).send("make it blue")
    assert reply.refused is not None and "inputs.image" in reply.refused
    assert f"gives image {photo.short} by ref, which is not an artifact of this session" in reply.refused
    assert "name it by its alias (@img2), or upload it in this session" in reply.refused
    assert agent.memory.steps(mine.id) == before_steps  # nothing ran, nothing was recorded
    assert agent.memory.artifact_table(mine.id) == before_table and photo.sha256 not in shas(agent.memory, mine.id)

    # The same plan on the session's own content runs, with the ref as recorded (its alias and shape).
    edited = own.artifacts[0]
    planner.steps = [Invocation(module="C", command="make it sepia", inputs={"image": forged(edited.ref, shape=(1,))})]
    done = agent.with_planner(planner).session(mine.id).send("make it sepia")
    assert done.refused is None and [s.status for s in done.steps] == ["succeeded"]
    recorded = done.steps[0].invocation["inputs"]["image"]
    assert recorded["alias"] == edited.alias and recorded["shape"] == [72, 96, 3]


def test_the_compiler_takes_kinds_and_shapes_from_the_session_never_from_the_plan(agent):
    memory, store = agent.memory, agent.memory.store
    session = memory.create_session()
    photo = store.put_image(render_scene(3, 64, 48).image)
    scribble = store.put_mask(np.eye(48, 64, dtype=bool))
    memory.append_turn(session.id, "user", "hi", attachments=[photo, scribble])
    table = memory.artifact_table(session.id)

    plan = compile_invocations([Invocation(
        module="B", command="segment it", inputs={"image": forged(photo, shape=(2, 2, 3))},
        region=ScribbleRegion(mask=forged(scribble, shape=()))), Invocation(
        module="C", command="make it blue", params={"region": {"kind": "scribble", "mask": forged(
            scribble, shape=(9, 9)).model_dump(mode="json")}})], table, store)
    segment, edit = plan.steps
    assert segment.inputs["image"] == photo.model_copy(update={"alias": "img1"})
    drawn_mask = segment.params["region"]["mask"]
    assert drawn_mask["shape"] == [48, 64] and drawn_mask["alias"] == "mask1"
    assert edit.params["region"]["mask"]["shape"] == [48, 64]

    # A kind the plan says is not the kind recorded: the recorded one is read, and does not fit the field.
    with pytest.raises(InvalidInput, match=r"reads image .* as its mask, but that is a image"):
        compile_invocations([Invocation(module="C", command="make it blue",
                                        inputs={"image": "@img1", "mask": forged(photo, kind="mask")})], table, store)
    # Another session's content anywhere in a plan: an input, a scribble, a ref inside params.
    other = store.put_mask(np.ones((48, 64), bool))
    for invocation, field in [
        (Invocation(module="C", command="x", inputs={"image": "@img1", "mask": other}), "inputs.mask"),
        (Invocation(module="B", command="x", region=ScribbleRegion(mask=other)), "region.mask"),
        (Invocation(module="C", command="x", params={"region": {"kind": "scribble", "mask": other.model_dump(
            mode="json")}}), "params.region.mask"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            compile_invocations([invocation], table, store)
        assert refused.value.field == field and "upload it in this session" in refused.value.fix
    # … unless it is one of this turn's uploads not recorded yet (a scribble drawn for the turn): its shape is read.
    drawn = compile_invocations([Invocation(module="B", command="x", region=ScribbleRegion(
        mask=forged(other, shape=(1, 1))))], table, store, uploads=[forged(other, shape=(1, 1))])
    assert drawn.steps[0].params["region"]["mask"]["shape"] == [48, 64]


def test_an_edited_plan_at_an_approval_pause_cannot_read_another_sessions_artifact(memory_settings):
    settings = memory_settings.model_copy(update={"planner": "explicit", "approval": True})
    with VitronAgent.from_settings(settings) as agent:
        theirs = agent.session()
        photo = theirs.send(SEPIA, image=render_scene(4, 64, 48).image).artifacts[0].ref
        mine = agent.session()
        paused = mine.send(ANIMATE, image=render_scene(5, 64, 48).image)
        assert paused.waiting
        reply = mine.approve("edit", [{"module": "C", "command": "make it sepia",
                                       "inputs": {"image": forged(photo).model_dump(mode="json")}}])
        assert reply.refused is not None and "not an artifact of this session" in reply.refused
        assert [s.module for s in agent.memory.steps(mine.id)] == ["image_to_video"]  # the edit recorded no step
        assert photo.sha256 not in shas(agent.memory, mine.id)


def test_an_upload_given_by_ref_is_recorded_as_stored(agent):
    store = agent.memory.store
    photo = store.put_image(render_scene(6, 64, 48).image)
    session = agent.session()
    session.send(SEPIA, image=forged(photo, shape=(1, 1, 3)))
    (upload_entry,) = [e for e in agent.memory.artifact_table(session.id) if e.made_by == "upload"]
    assert upload_entry.ref.shape == (48, 64, 3)
    mask = store.put_mask(np.ones((48, 64), bool))
    with pytest.raises(InvalidInput, match=r"one-channel .*not an image"):
        agent.session().send(SEPIA, image=forged(mask, kind="image"))
    with pytest.raises(InvalidInput, match="the image given is mask"):
        agent.session().send(SEPIA, image=mask)


# -- session ids and listings ------------------------------------------------------------------------


def _set_id(memory: SessionMemory, old: str, new: str) -> str:
    memory.db.write(lambda c: c.execute(update(SessionRow.__table__).where(SessionRow.__table__.c.id == old)
                                        .values(id=new)))
    return new


def test_ids_and_prefixes_resolve_within_their_owners_sessions_only(memory):
    ann = _set_id(memory, memory.create_session("ann's", owner="ann").id, "abcd" + "0" * 28)
    bob = _set_id(memory, memory.create_session("bob's", owner="bob").id, "abcd" + "1" * 28)
    local = _set_id(memory, memory.create_session("local").id, "abce" + "2" * 28)

    assert memory.resolve_session_id("abcd", owner="ann") == ann  # bob's prefix-mate is not ann's to see
    assert memory.resolve_session_id("abcd", owner="bob") == bob
    assert memory.resolve_session_id("abce") == local
    for text, owner in [("abcd", None), (ann, "bob"), (ann, None), (local, "ann"), ("abce", "ann"), (bob, "carol")]:
        with pytest.raises(SessionNotFound):
            memory.resolve_session_id(text, owner=owner)
    with pytest.raises(InvalidInput, match="matches several sessions"):
        memory.resolve_session_id("abcd", owner=ANY_OWNER)  # the operator's look-up reaches both
    assert memory.resolve_session_id(bob, owner=ANY_OWNER) == bob

    assert [s.id for s in memory.list_sessions(owner="ann")] == [ann]
    assert [s.id for s in memory.list_sessions(owner="bob")] == [bob]
    assert [s.id for s in memory.list_sessions()] == [local]  # the local user's: no owner
    assert memory.list_sessions(owner="carol") == []
    assert {s.id for s in memory.list_sessions(owner=ANY_OWNER)} == {ann, bob, local}


def test_an_agents_session_is_looked_up_within_its_owner(agent):
    ann = agent.session(owner="ann")
    assert agent.session(ann.id[:6], owner="ann").id == ann.id
    for owner in ("bob", None):
        with pytest.raises(SessionNotFound):
            agent.session(ann.id[:6], owner=owner)
    local = agent.session()
    assert agent.session(local.id).id == local.id
    with pytest.raises(SessionNotFound):
        agent.session(local.id, owner="ann")


# -- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def keyed(tmp_path):
    """A server with keys for alice and bob, whose heavy steps wait for approval."""
    from schemas import VitronSettings

    settings = VitronSettings(home=tmp_path / "home", planner="explicit", approval=True)
    with Database.open(settings.database) as db:
        keys = ApiKeys(db)
        alice, bob = keys.create("alice")[1], keys.create("bob")[1]
    with TestClient(create_app(settings)) as client:
        yield client, {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"}}


def test_one_key_cannot_read_or_run_on_another_keys_threads_or_artifacts(keyed):
    client, keys = keyed
    alice, bob = keys["alice"], keys["bob"]
    photo = upload(client, render_scene(7, 64, 48).image, alice)
    thread = client.post("/threads", headers=alice).json()["thread_id"]
    made = client.post(f"/threads/{thread}/runs/wait", headers=alice, json={"input": {
        "text": SEPIA, "image": photo["sha256"]}}).json()["reply"]["artifacts"][0]

    for method, path in [("GET", f"/threads/{thread}"), ("GET", f"/threads/{thread}/history"),
                         ("POST", f"/threads/{thread}/runs/wait"), ("POST", f"/threads/{thread}/jobs/x/cancel"),
                         ("GET", f"/artifacts/{made['sha256']}")]:
        response = client.request(method, path, headers=bob, json={"input": {"text": SEPIA}})
        assert response.status_code == 404, (path, response.text)
    chat = client.post("/v1/chat/completions", headers={**bob, "X-Vitron-Thread": thread},
                       json={"model": "vitron-explicit", "messages": [{"role": "user", "content": SEPIA}]})
    assert chat.status_code == 404

    # Bob's own thread: alice's alias means nothing there, and an edited plan cannot name her artifact by ref.
    own = client.post("/threads", headers=bob).json()["thread_id"]
    by_alias = client.post(f"/threads/{own}/runs/wait", headers=bob, json={"input": {"text": SEPIA,
                                                                                     "image": "@img2"}})
    assert by_alias.status_code == 404 and by_alias.json()["error"]["field"] == "input.image"
    mine = upload(client, render_scene(8, 64, 48).image, bob)
    paused = client.post(f"/threads/{own}/runs/wait", headers=bob, json={"input": {"text": ANIMATE,
                                                                                   "image": mine["sha256"]}})
    assert paused.json()["status"] == "interrupted"
    stolen = {key: made[key] for key in ("sha256", "kind", "media_type")}
    edit = client.post(f"/threads/{own}/runs/wait", headers=bob, json={"command": {"resume": {
        "action": "edit", "invocations": [{"module": "C", "command": "make it sepia", "inputs": {"image": stolen}}]}}})
    assert edit.status_code == 200
    assert "not an artifact of this session" in edit.json()["reply"]["text"]
    history = client.get(f"/threads/{own}/history", headers=bob).json()
    assert made["sha256"] not in {a["sha256"] for a in history["artifacts"]}
    assert [t["thread_id"] for t in client.get("/threads", headers=bob).json()] == [own]

"""A turn another process runs cannot be resumed from under it; a 10,000-step plan is refused before it costs
anything.

Before: resuming, as the refusal advised, while the turn ran in another process ran the in-flight step again and
recorded two replies to one user turn; 2,000 invocations took 34 s and wrote 923 MB of checkpoints."""

from __future__ import annotations

import pytest

from agent.api import VitronAgent
from memory import TurnLeases
from schemas import InvalidInput, SessionBusy, VitronSettings
from tests.scenes import render_scene

BLOCK = "<module>C</module><instruction>make it blue</instruction>"


def test_resuming_a_turn_that_another_process_runs_is_refused_and_records_nothing(tmp_path):
    with VitronAgent.from_settings(VitronSettings(home=tmp_path / "home"), planner="explicit") as agent:
        session = agent.session()
        scene = render_scene(1)
        session.send(f"<module>B</module><instruction>segment it</instruction><region>{scene.box}</region>",
                     image=scene.image)
        before = (agent.memory.turns(session.id), agent.memory.steps(session.id))
        elsewhere = TurnLeases(agent.memory.db, ttl_s=30).acquire(session.id)  # as another process's turn holds it
        for attempt in (session.resume, lambda: session.send("make it red"), lambda: session.approve("approve")):
            with pytest.raises(SessionBusy, match="running in another process"):
                attempt()
        assert (agent.memory.turns(session.id), agent.memory.steps(session.id)) == before
        agent.leases.release(elsewhere)
        assert session.send(f"<module>C</module><instruction>make it red</instruction><region>{scene.box}</region>"
                            ).steps[0].status == "succeeded"


def test_a_ten_thousand_step_plan_is_refused_before_anything_is_recorded(tmp_path):
    settings = VitronSettings(home=tmp_path / "home", max_turn_chars=10**7)  # so the plan's own limit is what refuses
    with VitronAgent.from_settings(settings, planner="explicit") as agent:
        session = agent.session()
        reply = session.send(BLOCK * 10_000, image=render_scene(0).image)
        assert reply.refused is not None and "10,000 steps, more than the 64 allowed" in reply.refused
        assert "VITRON_MAX_PLAN_STEPS" in reply.refused and agent.memory.steps(session.id) == []
        checkpoints = sum(p.stat().st_size for p in (tmp_path / "home").rglob("*.db*"))
        assert checkpoints < 20_000_000  # the text is kept once, not once per step per superstep


def test_text_that_was_not_utf8_is_refused_by_the_python_api_and_records_nothing(tmp_path):
    with VitronAgent.from_settings(VitronSettings(home=tmp_path / "home"), planner="explicit") as agent:
        session = agent.session()
        with pytest.raises(InvalidInput, match="not valid UTF-8") as refused:
            session.send(b"make it \xff red".decode("utf-8", "surrogateescape"))
        assert refused.value.field == "text" and agent.memory.turns(session.id) == []

"""The agent with the other two planners: a chat model that plans again after seeing results, and the VITRON
model whose signal embeddings travel with the steps (by reference) into session memory."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from agent.api import VitronAgent
from agent.planners.chat import ChatModelPlanner
from agent.planners.tiny_vitron import build_tiny_vitron
from agent.planners.vitron import VitronPlanner, load_planner_model
from tests.agent.test_chat_planner import call, calls, fake
from tests.scenes import iou, render_scene


def test_chat_planner_runs_a_plan_then_answers_from_the_results(agent_settings):
    scene = render_scene(3)
    box = list(scene.box)
    model = fake(
        calls(call("image_segmentation", "a", image="@img1", command="segment the object",
                   region={"kind": "box", "box": box}),
              call("image_editing", "b", image="@img1", mask="@1", command="make it blue"), text="On it."),
        AIMessage(content="The object is now blue: @img2."),
    )
    with VitronAgent.from_settings(agent_settings, planner=ChatModelPlanner(model)) as agent:
        session = agent.session()
        reply = session.send("make the object blue", image=scene.image)
        assert [(s.module, s.status) for s in reply.steps] == [("image_segmentation", "succeeded"),
                                                              ("image_editing", "succeeded")]
        assert iou(agent.memory.store.get_mask(reply.artifacts[0].ref), scene.mask) >= 0.9
        assert reply.text.startswith("On it. The object is now blue: @img2.")
        second_prompt = "\n".join(str(m.content) for m in model.prompts[1])
        assert "mask1" in second_prompt and "img2" in second_prompt  # round 2 saw what round 1 made


def test_a_refused_plan_goes_back_to_the_chat_model(agent_settings):
    scene = render_scene(1)
    model = fake(
        calls(call("image_editing", "a", image="@img1", command="make it blue",  # outside the image: refused
                   region={"kind": "box", "box": [0, 0, 5000, 20]})),
        calls(call("image_editing", "b", image="@img1", command="make it blue",
                   region={"kind": "box", "box": list(scene.box)})),
        AIMessage(content="Done."),
    )
    with VitronAgent.from_settings(agent_settings, planner=ChatModelPlanner(model)) as agent:
        reply = agent.session().send("make it blue", image=scene.image)
    assert [s.status for s in reply.steps] == ["succeeded"]  # the refused plan never ran
    feedback = "\n".join(str(m.content) for m in model.prompts[1])
    assert "refused" in feedback and "5000" in feedback, feedback


def test_vitron_planner_signals_reach_the_steps_by_reference(agent_settings, tmp_path):
    folder = build_tiny_vitron(tmp_path / "tiny")
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    forced = (f"Sure. <module>B</module><instruction>segment it</instruction><region>({box})</region>[SIG]"
              "<module>C</module><instruction>make it blue</instruction><input>@1</input>[SIG]")
    planner = VitronPlanner(load_planner_model(folder), force_sequence=forced, max_new_tokens=200)
    with VitronAgent.from_settings(agent_settings, planner=planner) as agent:
        session = agent.session()
        reply = session.send("make the object blue", image=scene.image)
        assert [s.status for s in reply.steps] == ["succeeded", "succeeded"]
        steps = agent.memory.steps(session.id)
        signal = steps[0].invocation["signal"]
        assert signal["task_specific"]["kind"] == "embedding" and signal["task_specific"]["shape"] == [1, 256]
        assert steps[1].invocation["signal"]["task_specific"]["shape"] == [1, 768]
        table = agent.memory.artifact_table(session.id)
        assert [a.ref.kind for a in table].count("embedding") == 4  # two steps × (specific, invariant)
        assert iou(agent.memory.store.get_mask(reply.artifacts[0].ref), scene.mask) >= 0.9


def test_a_region_drawn_on_a_later_frame_keeps_its_frame_through_any_planner(agent_settings):
    from tests.scenes import render_video

    video = render_video(3, frames=60, width=160, height=120)
    drawn = {"kind": "box", "box": list(video.box(40)), "frame": 40}
    model = fake(calls(call("video_segmentation", "a", video="@video1", command="track the object",
                            region={"kind": "box", "box": list(video.box(40))})),  # copied without its frame
                 AIMessage(content="Tracked."))
    mini = agent_settings.model_copy(update={"planner": "mini"})
    for settings, planner in ((agent_settings, ChatModelPlanner(model)), (mini, None)):
        with VitronAgent.from_settings(settings, planner=planner) as agent:
            session = agent.session()
            reply = session.send("track the object", video=agent.memory.store.put_video(video.frames, video.fps),
                                 region=drawn)
            assert len(reply.steps) == 1, reply.text
            (step,) = reply.steps
            assert step.status == "succeeded"
            invocation = agent.memory.turns(session.id)[1].invocations[0]
            assert invocation["region"]["frame"] == 40
            masks = list(agent.memory.store.iter_frames(reply.artifacts[0].ref))
            assert min(iou(m, truth) for m, truth in zip(masks, video.masks, strict=True)) >= 0.85


def test_blur_everything_else_blurs_around_the_object_not_the_object(agent_settings):
    """The planner issue's first report: "segment the rocket and blur everything else" blurred the rocket."""
    import numpy as np

    from tests.measure import grow, shrink

    scene = render_scene(3, 240, 160)
    mini = agent_settings.model_copy(update={"planner": "mini"})
    with VitronAgent.from_settings(mini) as agent:
        session = agent.session()
        reply = session.send("segment the rocket and blur everything else", image=scene.image,
                             region={"kind": "box", "box": list(scene.box)})
        assert [(s.module, s.status) for s in reply.steps] == [("image_segmentation", "succeeded"),
                                                              ("image_editing", "succeeded")]
        edit = agent.memory.turns(session.id)[1].invocations[1]
        assert edit["params"] == {"area": "background"}  # an explicit field, not a phrase the tool guesses from
        edited = agent.memory.store.get_image(reply.artifacts[1].ref).astype(int)
    diff = np.abs(edited - scene.image.astype(int)).max(axis=-1)
    assert diff[shrink(scene.mask, 3)].max() <= 2  # the rocket: as it was
    assert diff[~grow(scene.mask, 4)].mean() > 5  # everything else: blurred


def test_a_chat_model_says_where_an_edit_acts_with_the_area_field(agent_settings):
    import numpy as np

    from tests.measure import grow, shrink

    scene = render_scene(3, 240, 160)
    model = fake(calls(call("image_segmentation", "a", image="@img1", command="the object",
                            region={"kind": "box", "box": list(scene.box)}),
                       call("image_editing", "b", image="@img1", mask="@1", command="blur it", area="background")),
                 AIMessage(content="Blurred around it."))
    with VitronAgent.from_settings(agent_settings, planner=ChatModelPlanner(model)) as agent:
        session = agent.session()
        reply = session.send("blur everything except the object", image=scene.image)
        assert agent.memory.turns(session.id)[1].invocations[1]["params"] == {"area": "background"}
        edited = agent.memory.store.get_image(reply.artifacts[1].ref).astype(int)
    diff = np.abs(edited - scene.image.astype(int)).max(axis=-1)
    assert diff[shrink(scene.mask, 3)].max() <= 2 and diff[~grow(scene.mask, 4)].mean() > 5

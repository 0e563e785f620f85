"""Saved workflows are tools too: a plan calls one by name, in the grammar or as a chat model's tool call; it runs
as the workflow's own steps, its outputs feed later steps, and what it lacks is said clearly."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from agent.api import VitronAgent
from agent.planners.chat import ChatModelPlanner
from agent.planners.grammar import format_plan, parse_plan
from schemas import PlanSyntaxError, VitronSettings
from tests.agent.test_chat_planner import call, calls, fake
from tests.measure import shrink
from tests.scenes import iou, render_scene
from tools.embedded.colours import COLOURS
from workflows import saved_workflow, saved_workflows

SEPIA_CUTOUT = {
    "version": 1, "description": "Cut the object out onto white, then give it a sepia look.",
    "inputs": {"photo": "image", "box": "region"},
    "steps": [{"name": "seg", "type": "B", "image": "$inputs.photo", "region": "$inputs.box"},
              {"name": "cut", "type": "C", "image": "$inputs.photo", "mask": "$steps.seg.mask",
               "command": "make the background white"}],
    "outputs": {"cutout": "$steps.cut.image", "mask": "$steps.seg.mask"},
}


BOXED_BLUR = {  # a region passed from one step to the next: the box segmentation found
    "version": 1, "inputs": {"photo": "image", "box": "region"},
    "steps": [{"name": "seg", "type": "B", "image": "$inputs.photo", "region": "$inputs.box"},
              {"name": "blur", "type": "C", "image": "$inputs.photo", "region": "$steps.seg.box",
               "command": "pixelate it"}],
    "outputs": {"image": "$steps.blur.image"},
}


@pytest.fixture
def settings(tmp_path) -> VitronSettings:
    folder = tmp_path / "home" / "workflows"
    folder.mkdir(parents=True)
    (folder / "white_cutout.yaml").write_text(yaml.safe_dump(SEPIA_CUTOUT))
    (folder / "Not A Name.yaml").write_text(yaml.safe_dump(SEPIA_CUTOUT))  # cannot be called: not listed
    (folder / "image_editing.yaml").write_text(yaml.safe_dump(SEPIA_CUTOUT))  # a module's name: not listed
    (folder / "boxed_blur.yaml").write_text(yaml.safe_dump(BOXED_BLUR))
    return VitronSettings(home=tmp_path / "home")


def test_saved_workflows_are_found_by_name(settings):
    names = saved_workflows(settings)
    assert {"white_cutout", "product_cutout", "video_privacy", "photo_to_clip"} <= set(names)
    assert "Not A Name" not in names and "image_editing" not in names
    assert saved_workflow("white_cutout", settings).output_kinds() == {"cutout": "image", "mask": "mask"}
    assert saved_workflow("nothing", settings) is None


def test_the_grammar_takes_a_saved_workflows_name():
    text = "<module>white_cutout</module><instruction>cut it out</instruction><region>(1, 2, 30, 40)</region>"
    plan = parse_plan(text, workflows={"white_cutout"})
    assert plan.steps[0].invocation.module == "white_cutout"
    assert parse_plan(format_plan(plan), workflows={"white_cutout"}) == plan
    with pytest.raises(PlanSyntaxError, match="unknown module 'white_cutout'"):
        parse_plan(text)  # a name nobody saved is still a mistake


def test_a_plan_calls_a_workflow_and_reads_its_outputs(settings):
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    with VitronAgent.from_settings(settings, planner="explicit") as agent:
        session = agent.session()
        reply = session.send(f"<module>white_cutout</module><instruction>cut it out</instruction><region>({box})"
                             "</region><module>C</module><instruction>make it sepia</instruction><input>@1</input>",
                             image=scene.image)
        store = agent.memory.store
        assert [(s.position, s.module, s.status) for s in reply.steps] == [
            (1, "image_segmentation", "succeeded"), (2, "image_editing", "succeeded"),
            (3, "image_editing", "succeeded")]
        made = {a.alias: a for a in reply.artifacts}
        assert iou(store.get_mask(made["mask1"].ref), scene.mask) > 0.95
        cutout = store.get_image(made["img2"].ref)
        outside = shrink(~scene.mask, 3)
        assert (cutout[outside] == COLOURS["white"]).all(axis=-1).mean() > 0.99
        assert made["img3"].parents == ("img2",)  # the sepia step read the workflow's cutout
        sepia = store.get_image(made["img3"].ref).astype(int)
        assert np.abs(sepia[..., 0] - sepia[..., 2]).mean() > 10  # warm, not grey

        missing = session.send("<module>white_cutout</module><instruction>again</instruction>")
        assert "needs its input 'box' (region)" in missing.text and "draw a region" in missing.text


def test_a_chat_model_calls_a_saved_workflow_as_a_tool(settings, tmp_path):
    scene = render_scene(4)
    flows = {"white_cutout": saved_workflow("white_cutout", settings)}
    model = fake(calls(call("white_cutout", "c1", photo="@img1", region={"kind": "box", "box": list(scene.box)})),
                 calls(text="Done: the object is on white."))
    planner = ChatModelPlanner(model, workflows=flows)
    assert "white_cutout" in [t.__name__ for t in model.tools]
    with VitronAgent.from_settings(settings, planner=planner) as agent:
        reply = agent.session().send("put the object on a white background", image=scene.image)
    assert [s.module for s in reply.steps] == ["image_segmentation", "image_editing"]
    assert all(s.status == "succeeded" for s in reply.steps) and "Done" in reply.text


def test_a_called_workflow_passes_a_region_between_its_steps(settings):
    scene = render_scene(5)
    box = ", ".join(map(str, scene.box))
    with VitronAgent.from_settings(settings, planner="explicit") as agent:
        reply = agent.session().send(f"<module>boxed_blur</module><instruction>hide it</instruction>"
                                     f"<region>({box})</region>", image=scene.image)
        assert [s.status for s in reply.steps] == ["succeeded", "succeeded"], reply.text
        edited = agent.memory.store.get_image(reply.artifacts[-1].ref)
    inside = shrink(scene.mask, 3)
    assert np.abs(edited[inside].astype(int) - scene.image[inside]).mean() > 1  # pixelated where the object was

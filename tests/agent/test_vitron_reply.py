"""Replies written the way a trained VITRON writes them (our own strings in its forms), read as its released demo
dispatches them: task prefixes off, markers out of the reply, video editing's two instructions, a block with no
instruction falling back to the reply, a model's region with unordered corners left out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as photos

from agent.planners.vitron import VitronPlanner
from agent.planners.vitron_reply import read_vitron_reply
from schemas import BoxRegion, PlanSyntaxError
from tests.agent.test_vitron_planner import llava, llava_folder, memory, photo_request  # noqa: F401 (fixtures)

SIG = {"[SIG]"}


def steps(text: str) -> list[tuple]:
    plan = read_vitron_reply(text, signal_tokens=SIG).plan
    return [(s.invocation.module, s.invocation.command, s.invocation.inputs, s.invocation.params) for s in plan.steps]


def test_a_module_gets_the_words_after_its_task_prefix_and_markers_leave_the_reply():
    reading = read_vitron_reply("Of course! I'll find the kite flying highest. <module>B</module> <instruction>"
                                "segmentation: kite flying highest</instruction> [SIG] <SP>None</SP>",
                                signal_tokens=SIG)
    assert reading.plan.reply == "Of course! I'll find the kite flying highest."
    assert steps("<module>B</module><instruction>segmentation: kite flying highest</instruction>") == [
        ("image_segmentation", "kite flying highest", {}, {})]
    # only a task prefix comes off: a colon in the words stays (the demo's split(':')[-1] would keep "open")
    assert steps("<module>A</module><instruction>generation: a shop sign that says: open</instruction>") == [
        ("image_generation", "a shop sign that says: open", {}, {})]
    assert steps("<module>C</module><instruction>make it blue</instruction>") == [
        ("image_editing", "make it blue", {}, {})]  # no prefix: as written


def test_video_editing_reads_its_foreground_and_background_instructions():
    keep = ("Here is the clip with a red car. <module>F</module> <instruction> foreground: paint the car red "
            "</instruction> <instruction> background: keep </instruction> [SIG] <SP>None</SP>")
    assert steps(keep) == [("video_editing", "paint the car red", {}, {})]
    both = ("<module>E</module><instruction>segmentation: the car</instruction>"
            "<module>F</module><instruction>foreground: paint the car red</instruction>"
            "<instruction>background: turn the street snowy</instruction><input>@1</input>"
            "<module>G</module><instruction>generation: the car drives away</instruction><input>@2</input>")
    assert steps(both) == [
        ("video_segmentation", "the car", {}, {}),
        ("video_editing", "paint the car red", {"input": "@1"}, {}),
        ("video_editing", "turn the street snowy", {"video": "@2"}, {"area": "background"}),  # on the red car's video
        ("image_to_video", "the car drives away", {"input": "@3"}, {}),  # reads the finished video, moved along
    ]


def test_a_block_without_an_instruction_is_only_words():
    reading = read_vitron_reply("I can do that, but tell me the colour first. <module>C</module> [SIG]",
                                signal_tokens=SIG)
    assert reading.plan.steps == [] and reading.plan.reply == "I can do that, but tell me the colour first."
    assert (reading.signals_written, reading.signal_rows) == (1, [])
    mixed = read_vitron_reply("<module>B</module>[SIG]<module>B</module><instruction>segmentation: the dog"
                              "</instruction>[SIG][SIG]", signal_tokens=SIG)
    assert [s.signal_tokens for s in mixed.plan.steps] == [2] and mixed.signal_rows == [1, 2]


def test_a_region_with_unordered_corners_is_left_out_and_an_ordered_one_kept():
    [(step)] = read_vitron_reply("<module>B</module><instruction>segmentation: the dog</instruction>"
                                 "<region>(120, 90, 30, 20)</region>", signal_tokens=SIG).plan.steps
    assert step.invocation.region is None
    [(step)] = read_vitron_reply("<module>B</module><instruction>segmentation: the dog</instruction>"
                                 "<region>(30, 20, 120, 90)</region>", signal_tokens=SIG).plan.steps
    assert step.invocation.region == BoxRegion(box=(30, 20, 120, 90))


def test_other_mistakes_are_the_grammars_errors():
    with pytest.raises(PlanSyntaxError, match="never closed"):
        read_vitron_reply("<module>B</module><instruction>segmentation: the dog", signal_tokens=SIG)
    with pytest.raises(PlanSyntaxError, match="unknown module"):
        read_vitron_reply("<module>Z</module><instruction>segmentation: the dog</instruction>", signal_tokens=SIG)


PIECES = [*"<>/ :abfgimnortuSP[]GI@1", "<module>", "</module>", "<instruction>", "</instruction>", "[SIG]", "<SP>",
          "</SP>", "foreground:", "background:", "F", "<region>", "</region>", "(9, 9, 1, 1)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_any_text_reads_or_fails_with_the_grammars_error_only(text):
    try:
        reading = read_vitron_reply(text, signal_tokens=SIG)
    except PlanSyntaxError:
        return
    assert len(reading.signal_rows) == sum(s.signal_tokens for s in reading.plan.steps)
    assert all(0 <= row < reading.signals_written for row in reading.signal_rows)


def test_the_planner_matches_each_kept_step_with_its_own_signal_tokens(llava, memory):  # noqa: F811
    reply = ("Sure. <module>C</module> [SIG] <module>B</module><instruction>segmentation: the cup</instruction>"
             "[SIG]<SP>x</SP>")
    plan = VitronPlanner(llava, force_sequence=reply).plan(photo_request(memory, photos.coffee()))
    (step,) = plan.steps
    assert step.invocation.command == "the cup" and step.invocation.signal is not None
    # the block left out owned the first [SIG]: the step's signal is its own token's, through B's head
    assert np.asarray(step.invocation.signal.task_specific).shape == (1, llava.heads.config["task_specific_sizes"]["B"])

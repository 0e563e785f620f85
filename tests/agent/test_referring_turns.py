"""Referring segmentation in turns: a phrase that picks one object segments it; one that fits several equally makes
the agent ask which, naming each with its box, as it asks about two artifacts that fit equally."""

from __future__ import annotations

import numpy as np
import pytest

from agent.api import VitronAgent
from tests.scenes import grey_photo, iou, paint, shape_mask, two_of_a_colour


@pytest.fixture
def explicit(agent_settings):
    with VitronAgent.from_settings(agent_settings, planner="explicit") as agent:
        yield agent


def two_red_squares():
    rng = np.random.default_rng(0)
    image = grey_photo("chelsea", 320, 240)
    masks = [shape_mask("rectangle", 320, 240, centre, 60) for centre in ((60, 80), (260, 90))]
    for mask in masks:
        image = paint(image, mask, "red", rng)
    return image, masks


def test_a_phrase_that_fits_two_objects_is_a_question(explicit):
    image, (_, right) = two_red_squares()
    session = explicit.session()
    reply = session.send("<module>B</module><instruction>segment the red object</instruction>"
                         "<module>C</module><instruction>make it blue</instruction><input>@1</input>", image=image)
    assert [s.status for s in reply.steps] == ["failed", "skipped"]
    assert reply.text.startswith("2 candidates fit 'the red object'. Which do you mean: the red object on the left at "
                                 "(30, 59, 91, 102) or the red object on the right at (230, 69, 291, 112)?")
    assert "skipped" not in reply.text and reply.artifacts == ()
    assert explicit.memory.history(session.id).turns[-1].reply == reply.text

    reply = session.send("<module>B</module><instruction>segment the red object on the right</instruction>"
                         "<module>C</module><instruction>make it blue</instruction><input>@1</input>")
    assert [s.status for s in reply.steps] == ["succeeded", "succeeded"]
    mask = explicit.memory.store.get_mask(reply.artifacts[0].ref)
    assert iou(mask, right) >= 0.95


def test_the_mini_planner_keeps_the_phrase(agent):
    image, (left, _) = two_red_squares()
    reply = agent.session().send("segment the red object on the left", image=image)
    (step,) = reply.steps
    assert step.status == "succeeded" and "left" in step.invocation["command"]
    assert iou(agent.memory.store.get_mask(reply.artifacts[0].ref), left) >= 0.95


def test_an_answer_that_picks_one_runs_the_plan_again_on_it(explicit):
    """"Which do you mean?" answered with "the one on the right": the asked step's command is refined with the
    answer and the whole plan runs, with no planner call; an answer that asks something new goes to the planner."""
    image, (_, right) = two_red_squares()
    session = explicit.session()
    session.send("<module>B</module><instruction>segment the red object</instruction>"
                 "<module>C</module><instruction>make it blue</instruction><input>@1</input>", image=image)
    reply = session.send("oh, the one on the right please")
    assert [s.status for s in reply.steps] == ["succeeded", "succeeded"]
    assert reply.steps[0].invocation["command"] == "segment the red object, oh, the one on the right please"
    mask = explicit.memory.store.get_mask(reply.artifacts[0].ref)
    assert iou(mask, right) >= 0.95
    edited = explicit.memory.store.get_image(reply.artifacts[1].ref)
    assert edited[right][:, 2].mean() > edited[right][:, 0].mean()  # the right square is blue now

    session.send("<module>B</module><instruction>segment the red object</instruction>", image=image)
    reply = session.send("<module>B</module><instruction>segment the grey cat on the left</instruction>")
    assert reply.steps[0].invocation["command"] == "segment the grey cat on the left"  # a new request, planned


def test_the_mini_planner_turn_asks_then_takes_the_answer(agent):
    image, (left, _) = two_red_squares()
    session = agent.session()
    asked = session.send("segment the red object", image=image)
    assert "Which do you mean" in asked.text
    reply = session.send("the left one")
    (step,) = reply.steps
    assert step.status == "succeeded" and "left one" in step.invocation["command"]
    assert iou(agent.memory.store.get_mask(reply.artifacts[0].ref), left) >= 0.95


def test_a_relation_that_fits_two_objects_asks_and_the_answer_picks_one_of_them(explicit):
    image, (_, right, _) = two_of_a_colour()  # a blue circle midway between two red squares
    session = explicit.session()
    asked = session.send("<module>B</module><instruction>segment the red object next to the blue one</instruction>",
                         image=image)
    assert asked.text.startswith("2 candidates fit 'the red object next to the blue object'. Which do you mean: the "
                                 "red object on the left next to the blue object at ")
    reply = session.send("the right one")
    assert reply.steps[0].invocation["command"] == "segment the red object next to the blue one, the right one"
    assert iou(explicit.memory.store.get_mask(reply.artifacts[0].ref), right) >= 0.95

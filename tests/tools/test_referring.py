"""Referring phrases: what a command names and which candidate it picks (`tools.referring`), with a fuzz test that
the reader and the picker never raise anything but the project's typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import AmbiguousTarget, InvalidInput, LabelledBox, VitronError
from tools.referring import Selector, parse_phrase, pick, picks

SIZE = (300, 200)  # width, height of the pictures the candidates are in


@pytest.mark.parametrize(("command", "subject", "colours", "selector", "frame"), [
    ("the cat on the left", "cat", (), Selector("left"), None),
    ("the largest red object", "red object", ("red",), Selector("largest"), None),
    ("the person in the middle", "person", (), Selector("middle"), None),
    ("the second dog from the left", "dog", (), Selector("left", 2), None),
    ("segment the blue object on the left", "blue object", ("blue",), Selector("left"), None),
    ("segment the red object", "red object", ("red",), None, None),
    ("the object nearest the centre", "object", (), Selector("centre"), None),
    ("closest to the middle of the picture", "", (), Selector("centre"), None),
    ("the top left green square", "green square", ("green",), Selector("top left"), None),
    ("the second largest blue one on the right", "blue", ("blue",), Selector("largest", 2, "right"), None),
    ("the 3rd from the bottom", "", (), Selector("bottom", 3), None),
    ("the second red thing", "red thing", ("red",), Selector("left", 2), None),
    ("the last one", "", (), Selector("left", -1), None),
    ("the second to last grey car", "grey car", ("gray",), Selector("left", -2), None),
    ("the smallest cup at the top", "cup", (), Selector("smallest", 1, "top"), None),
    ("the left-hand cup", "cup", (), Selector("left"), None),
    ("the red car in frame 12", "red car", ("red",), None, 12),
    ("track the dog on the first frame", "dog", (), None, 0),
    ("the cat on the left in the last frame", "cat", (), Selector("left"), -1),
    ("the dog in the 4th frame", "dog", (), None, 3),
    ("track the red car moving from left to right", "red car moving", ("red",), None, None),
    ("segment it", "", (), None, None),
])
def test_a_phrase_is_read(command, subject, colours, selector, frame):
    phrase = parse_phrase(command)
    assert (phrase.subject, phrase.colours, phrase.selector, phrase.frame) == (subject, colours, selector, frame)


def test_what_a_phrase_names():
    assert parse_phrase("the cat on the left").noun == "cat"
    assert parse_phrase("the red one on the left").noun is None  # generic: any red object
    assert parse_phrase("the red car").what == "red car"
    assert parse_phrase("the object on the left").what == "object"
    assert not parse_phrase("track the object").names_something
    assert not parse_phrase("segment it").names_something
    assert parse_phrase("the second largest blue one on the right").described() == \
        "the second largest blue object on the right"
    assert parse_phrase("the last red one").described() == "the red object on the right"
    assert parse_phrase("the 3rd dog from the bottom").described() == "the third dog from the bottom"


@pytest.mark.parametrize("command", ["the left one on the right", "the largest of the smallest", "frame 2 or frame 3",
                                     "the second from the left on the right", "the 0th dog", "the second last third"])
def test_a_phrase_that_contradicts_itself_is_a_clear_error(command):
    with pytest.raises(InvalidInput) as info:
        parse_phrase(command)
    assert info.value.field == "command" and "region" in info.value.fix


@pytest.mark.parametrize(("command", "subject", "selector", "relation", "anchor", "anchor_selector"), [
    ("the cup next to the plate", "cup", None, "near", "plate", None),
    ("segment the red object beside the blue one", "red object", None, "near", "blue", None),
    ("the dog close to the red car", "dog", None, "near", "red car", None),
    ("the cup to the left of the plate", "cup", None, "left", "plate", None),
    ("the cup right of the large plate", "cup", None, "right", "plate", Selector("largest")),
    ("the cat under the table", "cat", None, "below", "table", None),
    ("the cup on top of the box", "cup", None, "above", "box", None),
    ("the second cup from the left next to the plate", "cup", Selector("left", 2), "near", "plate", None),
    ("the cup next to the plate, the left one", "cup", Selector("left"), "near", "plate", None),  # an answer joined
    # not relations: an ordinal, the picture's centre, a part of the picture
    ("the next to last dog", "dog", Selector("left", -2), None, None, None),
    ("the dog nearest the centre", "dog", Selector("centre"), None, None, None),
    ("the cup on the left of the picture", "cup", Selector("left"), None, None, None),
])
def test_a_relation_to_another_object_is_read(command, subject, selector, relation, anchor, anchor_selector):
    phrase = parse_phrase(command)
    assert (phrase.subject, phrase.selector, phrase.relation) == (subject, selector, relation)
    assert (phrase.anchor.subject, phrase.anchor.selector) == (anchor, anchor_selector) if anchor else \
        phrase.anchor is None
    if relation:  # as it is said back (in a question), it reads the same
        again = parse_phrase(phrase.described())
        assert (again.what, again.selector, again.relation, again.anchor.what, again.anchor.selector) == \
            (phrase.what, phrase.selector, relation, phrase.anchor.what, phrase.anchor.selector)


def box(x: float, y: float, side: float = 20, score: float | None = None, area: int | None = None) -> LabelledBox:
    """A candidate centred at (x, y)."""
    return LabelledBox(label="thing", score=score, area=area, box=(x - side / 2, y - side / 2, x + side / 2,
                                                                   y + side / 2))


ROW = [box(150, 100), box(40, 100), box(260, 100)]  # middle, left, right


@pytest.mark.parametrize(("command", "index"), [
    ("the one on the left", 1), ("the one on the right", 2), ("the one in the middle", 0),
    ("the second from the left", 0), ("the second from the right", 0), ("the third from the left", 2),
    ("the last one", 2), ("the second to last", 0), ("the first one", 1), ("the one nearest the centre", 0),
])
def test_a_row_by_place_and_order(command, index):
    assert pick(parse_phrase(command), ROW, SIZE) == index


def test_corners_sizes_and_a_part_of_the_picture():
    grid = [box(40, 40), box(260, 40), box(40, 160), box(260, 160, side=40)]
    assert [pick(parse_phrase(f"the one at the {c}"), grid, SIZE) for c in
            ("top left", "top right", "bottom left", "bottom right")] == [0, 1, 2, 3]
    sized = [box(40, 40, side=30), box(260, 40, side=10), box(40, 160, side=20), box(260, 160, side=40)]
    assert pick(parse_phrase("the largest"), sized, SIZE) == 3
    assert pick(parse_phrase("the smallest"), sized, SIZE) == 1
    assert pick(parse_phrase("the second biggest"), sized, SIZE) == 0
    assert pick(parse_phrase("the largest on the left"), sized, SIZE) == 0
    assert pick(parse_phrase("the smallest one at the bottom"), sized, SIZE) == 2
    assert pick(parse_phrase("the second from the left at the bottom"), sized, SIZE) == 3
    measured = [box(40, 40, area=50), box(260, 40, area=400)]  # a region's own pixels count, not its box
    assert pick(parse_phrase("the largest"), measured, SIZE) == 1


def test_with_no_selector_the_clear_best_score_wins():
    assert pick(parse_phrase("the dog"), [box(40, 40, score=0.9), box(200, 40, score=0.3)], SIZE) == 0
    assert pick(parse_phrase("the dog"), [box(40, 40)], SIZE) == 0


def test_candidates_that_fit_equally_make_a_question_naming_their_boxes():
    with pytest.raises(AmbiguousTarget) as info:
        pick(parse_phrase("the red object"), [box(40, 100, score=1.0), box(250, 100, score=0.8)], SIZE)
    question = info.value.question
    assert question == ("2 candidates fit 'the red object'. Which do you mean: the red object on the left at "
                        "(30, 90, 50, 110) or the red object on the right at (240, 90, 260, 110)?")
    assert info.value.boxes == [(30, 90, 50, 110), (240, 90, 260, 110)]
    assert info.value.field == "command" and "'the red object on the left'" in info.value.fix
    stacked = [box(100, 40), box(104, 160), box(250, 100)]  # one above the other: 'left' cannot tell them apart
    with pytest.raises(AmbiguousTarget) as info:
        pick(parse_phrase("the cup on the left"), stacked, SIZE)
    assert "the cup at the top at (90, 30, 110, 50) or the cup at the bottom at (94, 150, 114, 170)?" in \
        info.value.question
    assert pick(parse_phrase("the cup at the top on the left"), stacked, SIZE) == 0
    alike = [box(40, 40, side=20), box(250, 150, side=20.5)]
    with pytest.raises(AmbiguousTarget):
        pick(parse_phrase("the largest"), alike, SIZE)
    with pytest.raises(AmbiguousTarget):  # an even row has two in the middle
        pick(parse_phrase("the one in the middle"), [*ROW, box(290, 100)], SIZE)


def test_too_few_or_none_in_the_part_named_is_a_clear_error():
    with pytest.raises(InvalidInput, match="asks for the fourth, but there are only 3"):
        pick(parse_phrase("the fourth from the left"), ROW, SIZE)
    with pytest.raises(InvalidInput, match="none of the 3 object candidates is at the top"):
        pick(parse_phrase("the largest at the top"), ROW, SIZE)
    with pytest.raises(InvalidInput, match="no dog was found"):
        pick(parse_phrase("the dog on the left"), [], SIZE)


PLATE = box(150, 100, side=60)  # spans 120..180 by 70..130
CUPS = [box(100, 100), box(260, 100), box(150, 40), box(150, 175)]  # left of it and touching, far right, above, below


def test_the_object_nearest_the_anchor_on_the_side_named():
    assert pick(parse_phrase("the cup next to the plate"), CUPS, SIZE, [PLATE]) == 0
    assert pick(parse_phrase("the cup right of the plate"), CUPS, SIZE, [PLATE]) == 1
    assert pick(parse_phrase("the cup above the plate"), CUPS, SIZE, [PLATE]) == 2
    assert pick(parse_phrase("the cup under the plate"), CUPS, SIZE, [PLATE]) == 3
    assert pick(parse_phrase("the cup left of the plate"), CUPS, SIZE, [PLATE]) == 0
    assert pick(parse_phrase("the largest cup next to the plate"), [*CUPS[:3], box(150, 175, 24)], SIZE, [PLATE]) == 3
    # the anchor is among the candidates (no colour named: every coloured object), but is not beside itself
    assert pick(parse_phrase("the object next to the blue one"), [PLATE, *CUPS], SIZE, [PLATE]) == 1


def test_an_anchor_several_objects_fit_is_any_of_them():
    plates = [box(60, 100, side=40), box(240, 100, side=40)]
    cups = [box(95, 100), box(150, 30)]  # the first touches the left plate; the second is far from both
    assert pick(parse_phrase("the cup next to the plate"), cups, SIZE, plates) == 0


def test_a_relation_that_does_not_tell_two_apart_is_a_question_that_keeps_it():
    cups = [box(100, 100), box(200, 100)]  # either side of the plate, as close
    with pytest.raises(AmbiguousTarget) as info:
        pick(parse_phrase("the cup next to the plate"), cups, SIZE, [PLATE])
    assert info.value.question == ("2 candidates fit 'the cup next to the plate'. Which do you mean: the cup on the "
                                   "left next to the plate at (90, 90, 110, 110) or the cup on the right next to the "
                                   "plate at (190, 90, 210, 110)?")
    assert picks("the right one", "the cup next to the plate")
    assert pick(parse_phrase("the cup next to the plate, the right one"), cups, SIZE, [PLATE]) == 1


def test_no_anchor_or_none_on_its_side_is_a_clear_error():
    with pytest.raises(InvalidInput, match="no plate was found"):
        pick(parse_phrase("the cup next to the plate"), CUPS, SIZE, [])
    with pytest.raises(InvalidInput, match="no cup is left of the plate"):
        pick(parse_phrase("the cup left of the plate"), CUPS[1:], SIZE, [PLATE])
    with pytest.raises(InvalidInput, match="no object was found apart from the plate itself"):
        pick(parse_phrase("the one next to the plate"), [PLATE], SIZE, [PLATE])


WORDS = ["the", "a", "one", "object", "dog", "red", "blue", "grey", "left", "right", "top", "bottom", "upper", "middle",
         "centre", "nearest", "closest", "to", "largest", "smallest", "big", "second", "third", "3rd", "0th", "last",
         "from", "on", "in", "at", "frame", "frames", "12", "99999999", "first", "next", "penultimate", "left-hand",
         "segment", "track", "moving", ":", "-", "of", "and", "beside", "under", "above", "plate", ",", "close"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)),
       st.lists(st.tuples(st.floats(0, 300), st.floats(0, 200), st.floats(0, 60), st.one_of(st.none(), st.floats(0, 1)),
                          st.one_of(st.none(), st.integers(0, 5000))), max_size=6))
def test_reading_and_picking_raise_only_typed_errors(text, raw):
    try:
        phrase = parse_phrase(text)
    except VitronError as exc:
        assert isinstance(exc, InvalidInput) and exc.field == "command"
        return
    assert phrase.described()
    candidates = [LabelledBox(label="thing", score=score, area=area, box=(x, y, x + side, y + side))
                  for x, y, side, score, area in raw]
    try:
        index = pick(phrase, candidates, SIZE, candidates[::-1])
    except AmbiguousTarget as exc:
        assert len(exc.boxes) >= 2 and exc.question.endswith("?")
    except InvalidInput as exc:
        assert exc.field == "command"
    else:
        assert 0 <= index < len(candidates)

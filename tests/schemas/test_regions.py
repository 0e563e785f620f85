"""Regions: parsing, validation against the image size, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas import BoxRegion, InvalidInput, PointsRegion, Region, parse_box, parse_points


def test_parse_box_forms():
    assert parse_box("23, 35, 110, 126").box == (23, 35, 110, 126)
    assert parse_box("(23,35,110,126)").box == (23, 35, 110, 126)
    assert parse_box("[1.5, 2, 3, 4e1]").box == (1.5, 2, 3, 40)


@pytest.mark.parametrize("text", ["", "1,2,3", "a,b,c,d", "5,5,1,1", "-1,0,4,4", "1,2,3,4,5", "nan,0,1,1"])
def test_parse_box_refuses_with_the_field(text):
    with pytest.raises(InvalidInput) as info:
        parse_box(text)
    assert info.value.field == "region"


def test_parse_points_with_labels():
    region = parse_points("10,20,1; 30,40,0;50,60")
    assert region.points == ((10, 20), (30, 40), (50, 60))
    assert region.labels == (1, 0, 1)


@pytest.mark.parametrize("text", ["", "1", "1,2,7", "x,y", "1,2,0"])
def test_parse_points_refuses(text):
    with pytest.raises(InvalidInput):
        parse_points(text)


def test_regions_checked_against_the_image():
    BoxRegion(box=(0, 0, 640, 480)).check_within(640, 480)
    with pytest.raises(InvalidInput, match="leaves the 640x480 image"):
        BoxRegion(box=(600, 400, 700, 480)).check_within(640, 480)
    with pytest.raises(InvalidInput, match="outside"):
        PointsRegion(points=((640, 10),)).check_within(640, 480)


def test_region_union_by_kind():
    adapter = TypeAdapter(Region)
    assert isinstance(adapter.validate_python({"kind": "box", "box": [1, 2, 3, 4]}), BoxRegion)
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "lasso"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789,.;-+eE ()[]xyabn", max_size=40))
def test_fuzz_parsers_raise_only_invalid_input(text):
    for parse in (parse_box, parse_points):
        with contextlib.suppress(InvalidInput):
            parse(text)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["kind", "box", "points", "labels", "mask"]),
                       st.one_of(st.sampled_from(["box", "points", "scribble"]), st.floats(), st.integers(),
                                 st.lists(st.one_of(st.floats(), st.integers(), st.lists(st.floats(), max_size=3)),
                                          max_size=5), st.none())))
def test_fuzz_region_schema_raises_only_validation_errors(data):
    with contextlib.suppress(ValidationError):
        TypeAdapter(Region).validate_python(data)

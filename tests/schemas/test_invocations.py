"""Invocations and artifact refs: module spellings, input references, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import MODULES, ArtifactRef, Invocation, UnknownModule, resolve_module


@pytest.mark.parametrize("spelling", ["B", "b", "image_segmentation", "Image Segmentation", "IMAGE-SEGMENTATION"])
def test_module_spellings(spelling):
    assert resolve_module(spelling).name == "image_segmentation"
    assert Invocation(module=spelling, command="segment").module == "image_segmentation"


def test_every_module_has_letter_name_title():
    assert [m.code for m in MODULES] == list("ABCDEFGH")
    for m in MODULES:
        assert resolve_module(m.title) == resolve_module(m.code) == m


def test_unknown_module_lists_the_known_ones():
    with pytest.raises(UnknownModule) as info:
        resolve_module("Z")
    assert "B=image_segmentation" in info.value.message
    with pytest.raises(ValidationError):
        Invocation(module="Z", command="x")


def test_input_references():
    inv = Invocation(module="C", command="make it blue", inputs={"image": "@1", "mask": "@mask2"})
    assert inv.inputs == {"image": "@1", "mask": "@mask2"}
    with pytest.raises(ValidationError):
        Invocation(module="C", command="x", inputs={"image": "../etc/passwd"})


def test_artifact_ref_is_strict():
    good = {"sha256": "a" * 64, "kind": "image", "media_type": "image/png", "shape": [4, 4, 3]}
    assert ArtifactRef(**good).shape == (4, 4, 3)
    for bad in ({"sha256": "../../x"}, {"kind": "photo"}, {"media_type": "image/gif"}, {"shape": [-1]}):
        with pytest.raises(ValidationError):
            ArtifactRef(**{**good, **bad})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["module", "command", "region", "inputs", "signal", "other"]),
    st.one_of(st.text(max_size=20), st.integers(), st.none(), st.floats(),
              st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers()), max_size=3),
              st.lists(st.integers(), max_size=4))))
def test_fuzz_invocation_raises_only_validation_errors(data):
    with contextlib.suppress(ValidationError):
        Invocation.model_validate(data)

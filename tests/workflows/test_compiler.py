"""The compiler checks a workflow against the tools' own contracts before anything runs: every mistake is one typed
error naming the step and field, and nothing else ever escapes (fuzzed)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import InvalidInput, StepOutput, VitronError
from workflows import compile_workflow, saved_workflows
from workflows.kinds import blocks

from .conftest import CUTOUT


def with_steps(*changes: dict) -> dict:
    doc = copy.deepcopy(CUTOUT)
    for index, change in enumerate(changes):
        doc["steps"][index].update(change)
    return doc


def test_the_issues_example_compiles_in_dependency_order():
    compiled = compile_workflow(CUTOUT)
    assert [s.name for s in compiled.steps] == ["seg", "paint"]
    paint = compiled.steps[1]
    assert paint.module == "image_editing" and paint.version == 1 and paint.depends_on() == ("seg",)
    assert paint.inputs["mask"] == StepOutput(step="seg", field="mask")
    assert compiled.templates == {("paint", "command"): "make it {colour}"}
    assert compiled.output_kinds() == {"result": "image", "mask": "mask"}


def test_steps_written_out_of_order_run_after_what_they_read():
    doc = copy.deepcopy(CUTOUT)
    doc["steps"].reverse()
    assert [s.name for s in compile_workflow(doc).steps] == ["seg", "paint"]


@pytest.mark.parametrize("name", ["product_cutout", "video_privacy", "photo_to_clip"])
def test_the_examples_that_ship_compile(name):
    path = saved_workflows()[name]
    compiled = compile_workflow(yaml.safe_load(path.read_text()))
    assert compiled.outputs


@pytest.mark.parametrize(("doc", "field", "needle"), [
    (with_steps({}, {"mask": "$steps.seg.box"}), "steps[1].mask", "expected mask, got region from $steps.seg.box"),
    (with_steps({}, {"mask": "$steps.nope.mask"}), "steps[1].mask", "names no step"),
    (with_steps({}, {"mask": "$steps.seg.nothing"}), "steps[1].mask", "has no output 'nothing'"),
    (with_steps({"image": "$inputs.nope"}), "steps[0].image", "names no input"),
    (with_steps({"image": "$inputs.colour"}), "steps[0].image", "expected image, got text from $inputs.colour"),
    (with_steps({"image": "$steps.paint.image"}), "steps[0]", "in a circle: seg → paint → seg"),
    (with_steps({}, {"image": "$steps.paint.image"}), "steps[1].image", "this step's own output"),
    (with_steps({"type": "Z"}), "steps[0].type", "unknown module 'Z'"),
    (with_steps({"type": "B@v2"}), "steps[0].type", "image_segmentation@v2 is not a contract"),
    (with_steps({"colour": "red"}), "steps[0].colour", "has no field 'colour'"),
    (with_steps({}, {"command": "make it {shade}"}), "steps[1].command", "{shade} names no input"),
    (with_steps({"region": {"kind": "box", "box": [5, 5, 1, 1]}}), "steps[0].region", "x1 < x2"),
    (with_steps({"image": "@img1"}), "steps[0].image", "a workflow names its own"),
    (with_steps({"image": {"not": "a ref"}}), "steps[0].image", "given by a reference"),
    (with_steps({"backend": "magic"}), "steps[0].backend", "has no backend 'magic'"),
    ({**CUTOUT, "inputs": {"photo": "image", "colour": {"type": "text", "default": 3}}}, "inputs.colour.default",
     "expected text"),
    ({**CUTOUT, "outputs": {"result": "$steps.paint.mask"}}, "outputs.result", "has no output 'mask'"),
    ({**CUTOUT, "outputs": {"result": "$inputs.photo"}}, "outputs.result", "not a step's output"),
    ({**CUTOUT, "version": 2}, "version", "1"),
    ({**CUTOUT, "steps": []}, "steps", "at least 1"),
])
def test_every_mistake_names_the_step_and_field_before_anything_runs(doc, field, needle):
    with pytest.raises(InvalidInput) as caught:
        compile_workflow(doc)
    assert caught.value.field == field and needle in caught.value.message, caught.value.message


def test_a_required_field_left_out_is_named():
    doc = copy.deepcopy(CUTOUT)
    del doc["steps"][1]["image"]
    with pytest.raises(InvalidInput, match=r"steps\[1\]\.image: image_editing needs 'image' \(image\)"):
        compile_workflow(doc)


def test_a_default_that_breaks_the_field_it_feeds_is_refused():
    doc = {"version": 1, "inputs": {"photo": "image", "frames": {"type": "number", "default": 1}},
           "steps": [{"name": "clip", "type": "G", "image": "$inputs.photo", "num_frames": "$inputs.frames"}],
           "outputs": {"clip": "$steps.clip.video"}}
    with pytest.raises(InvalidInput) as caught:
        compile_workflow(doc)
    assert caught.value.field == "steps[0].num_frames" and "default of $inputs.frames" in caught.value.problem


def test_text_fields_fill_in_inputs_and_keep_doubled_braces():
    doc = copy.deepcopy(CUTOUT)
    doc["steps"][0]["command"] = "the {{cup}}"
    doc["steps"][1]["command"] = "make it {{{colour}}}"
    compiled = compile_workflow(doc)
    plan = compiled.bind({"photo": {"sha256": "a" * 64, "kind": "image", "media_type": "image/png"}})
    assert [s.params["command"] for s in plan.steps] == ["the {cup}", "make it {blue}"]
    doc["steps"][1]["command"] = "make it {photo}"
    with pytest.raises(InvalidInput, match=r"\{photo\} is an image; only text and number inputs fill in text"):
        compile_workflow(doc)


def test_binding_checks_each_input(store):
    compiled = compile_workflow(CUTOUT)
    with pytest.raises(InvalidInput, match="needs its input 'photo'"):
        compiled.bind({})
    with pytest.raises(InvalidInput, match="has no input 'photos'"):
        compiled.bind({"photos": 1})
    mask = store.put_mask(__import__("numpy").zeros((4, 4), bool))
    with pytest.raises(InvalidInput, match="expected image, got mask"):
        compiled.bind({"photo": mask})
    with pytest.raises(InvalidInput, match="not an artifact ref: sha256") as caught:
        compiled.bind({"photo": {"sha256": "abc"}})
    assert caught.value.field == "inputs.photo"


def test_blocks_say_which_outputs_feed_which_inputs():
    described = {b["type"]: b for b in blocks()}
    assert set(described) == {f"{m}@v1" for m in ("image_generation", "image_segmentation", "image_editing",
                                                 "video_generation", "video_segmentation", "video_editing",
                                                 "image_to_video", "visual_understanding")}
    seg = described["image_segmentation@v1"]
    assert {f["name"]: f["kind"] for f in seg["outputs"]} == {"mask": "mask", "box": "region", "area": "number"}
    assert "image_editing@v1.mask" in seg["feeds"]["mask"] and "image_editing@v1.region" in seg["feeds"]["box"]
    track = described["video_segmentation@v1"]
    assert track["feeds"]["masks"] == ["video_editing@v1.masks"]


# -- fuzzing ---------------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True),
                     st.text(max_size=12),
                     st.sampled_from(["$inputs.photo", "$inputs.colour", "$steps.seg.mask", "$steps.seg",
                                      "$steps.paint.image", "@1", "@img1", "$steps.", "$inputs", "{colour}",
                                      "make it {colour}", "B", "C@v1", "E@v9", "image_editing", "x@v"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_keys = st.sampled_from(["name", "type", "image", "mask", "command", "region", "seed", "video", "masks",
                         "num_frames", "backend", "options", "signal", "zzz"])


@st.composite
def mutated(draw) -> dict:
    """The example with a few of its parts replaced by anything."""
    doc = copy.deepcopy(CUTOUT)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["step", "top", "input", "output"]))
        if where == "top":
            doc[draw(st.sampled_from(["version", "inputs", "steps", "outputs", "name", "extra"]))] = draw(_values)
            continue
        part = {"step": doc.get("steps"), "input": doc.get("inputs"), "output": doc.get("outputs")}[where]
        if where == "step" and isinstance(part, list) and len(part) == 2 and isinstance(part[1], dict):
            part = part[draw(st.integers(0, 1))]
        if isinstance(part, dict):  # a part already replaced by something else is left as it is
            part[draw(_keys if where == "step" else st.sampled_from(["photo", "colour", "result", "x"]))] = draw(
                _values)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzzed_definitions_compile_or_get_a_typed_error(doc):
    try:
        compiled = compile_workflow(doc)
    except VitronError as exc:
        assert exc.message and (exc.field is None or isinstance(exc.field, str))
        return
    json.dumps([s.model_dump(mode="json") for s in compiled.steps])  # what compiles is plain JSON


@settings(max_examples=200, deadline=None)
@given(_values)
def test_any_document_at_all_gets_a_typed_error_or_compiles(doc):
    try:
        compiled = compile_workflow(doc)
    except VitronError as exc:  # and nothing else: no KeyError, no TypeError, no pydantic error
        assert exc.message
        return
    assert compiled.steps

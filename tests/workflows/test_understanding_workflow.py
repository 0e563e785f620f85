"""Module H in a workflow: its answer and best box are outputs, its box a later step's region."""

from __future__ import annotations

import pytest

from schemas import InvalidInput
from tests.scenes import iou, render_objects
from workflows import Workflow, compile_workflow
from workflows.kinds import blocks

FIND_AND_PAINT = {
    "version": 1,
    "inputs": {"photo": "image", "colour": {"type": "text", "default": "red"}},
    "steps": [
        {"name": "find", "type": "H@v1", "image": "$inputs.photo", "command": "find the {colour} object"},
        {"name": "seg", "type": "B", "image": "$inputs.photo", "region": "$steps.find.region"},
        {"name": "paint", "type": "C", "image": "$inputs.photo", "mask": "$steps.seg.mask", "command": "make it blue"},
    ],
    "outputs": {"answer": "$steps.find.text", "box": "$steps.find.region", "boxes": "$steps.find.boxes",
                "mask": "$steps.seg.mask", "result": "$steps.paint.image"},
}


def test_the_found_box_becomes_the_region_of_the_next_step(runtime):
    scene = render_objects(6)
    with Workflow(FIND_AND_PAINT, runtime=runtime) as flow:
        result = flow.run({"photo": scene.image, "colour": "green"}).raise_for_status()
    assert result.outputs["answer"].startswith("1 green region of connected pixels: ")
    assert result.outputs["box"] == {"kind": "box", "box": list(scene.box("green"))}
    assert [b["label"] for b in runtime.store.get_json(result.outputs["boxes"])] == ["green"]
    assert iou(runtime.store.get_mask(result.outputs["mask"]), scene.masks["green"]) >= 0.95


def test_kinds_are_checked_before_anything_runs():
    wrong = {**FIND_AND_PAINT, "steps": [FIND_AND_PAINT["steps"][0],
                                         {"name": "seg", "type": "B", "image": "$inputs.photo",
                                          "region": "$steps.find.boxes"}], "outputs": {}}
    with pytest.raises(InvalidInput) as info:
        compile_workflow(wrong)
    assert info.value.field == "steps[1].region" and "expected region, got boxes" in info.value.problem

def test_the_blocks_say_h_feeds_regions():
    (block,) = [b for b in blocks() if b["code"] == "H"]
    assert block["type"] == "visual_understanding@v1" and block["backends"] == ["opencv", "transformers"]
    assert "image_segmentation@v1.region" in block["feeds"]["region"]
    assert {f["name"] for f in block["inputs"]} >= {"image", "video", "command", "region", "num_frames"}

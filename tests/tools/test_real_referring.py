"""Referring segmentation with real weights (the Grounded-SAM recipe): tiny random OWLv2 / Grounding DINO and SAM
saved in code and loaded through a models file. The detector finds the phrase's subject, the phrase picks one box,
SAM segments from it (on a video: from the named frame, then propagated).

The tiny models' boxes and masks mean nothing; these tests check the wiring a user relies on: the box picked is the
one the phrase names among the detector's own, SAM's mask is the one a drawn box gives, a video is grounded on the
named frame and followed back to the first, and the detector may come from B's entry or from H's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from schemas import AmbiguousTarget, InvalidInput, ModelsFile
from tests.tools.tiny_sam import TINY_OPTIONS, save_tiny_sam
from tests.tools.tiny_vlm import save_grounding_dino, save_owlv2
from tools import ToolContext, get_tool
from tools.real.grounding import candidates
from tools.referring import parse_phrase, pick

H, W = 48, 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("referring")
    return {"sam": save_tiny_sam(root / "sam"), "owlv2": save_owlv2(root / "owlv2"),
            "grounding_dino": save_grounding_dino(root / "grounding-dino")}


pytestmark = pytest.mark.usefixtures("fresh_model_cache")  # each test loads its models anew


def configure(ctx: ToolContext, tmp_path: Path, weights: dict[str, Path], detector: str | None = "owlv2", *,
              shared: bool = False, threshold: float = 0.9) -> ToolContext:
    """`ctx` with a models file: SAM for B and E, with the detector on their own entries (or on H's, `shared`)."""
    sam = {"backend": "sam", "weights": {"main": str(weights["sam"])}, "variant": "custom", "device": "cpu",
           "options": {**TINY_OPTIONS, "box_threshold": threshold}}
    entries: dict = {"image_segmentation": sam, "video_segmentation": sam}
    if detector is not None and not shared:
        entries = {name: {**entry, "weights": {**entry["weights"], "grounding": str(weights[detector])}}
                   for name, entry in entries.items()}
    if detector is not None and shared:
        entries["visual_understanding"] = {"backend": "transformers", "grounding": str(weights[detector]),
                                           "device": "cpu", "options": {"box_threshold": threshold}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(entries))
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def expected_box(ctx: ToolContext, module: str, image: np.ndarray, command: str, frame: int = 0):
    """The box the phrase picks among the detector's own boxes for its subject (`AmbiguousTarget` if it asks)."""
    phrase = parse_phrase(command)
    boxes = candidates(ctx, module, image, phrase.what, frame)
    assert boxes, "the tiny detector should find something"
    return boxes[pick(phrase, boxes, (image.shape[1], image.shape[0]))].box


COMMANDS = ("segment the dog on the left", "the largest cat", "the second dog from the right", "the cat at the top",
            "the dog nearest the centre", "the smallest cat on the right")


@pytest.mark.parametrize("detector", ["owlv2", "grounding_dino"])
def test_sam_segments_from_the_box_the_phrase_picks(ctx, tmp_path, weights, detector):
    ctx = configure(ctx, tmp_path, weights, detector)
    segmented = 0
    for seed in range(3):
        image = picture(seed)
        ref = ctx.store.put_image(image)
        for command in COMMANDS:
            try:
                box = expected_box(ctx, "image_segmentation", image, command)
            except AmbiguousTarget as asked:  # the detector's boxes tie for this phrase: B asks the same
                with pytest.raises(AmbiguousTarget) as info:
                    get_tool("B").run({"image": ref, "command": command}, ctx)
                assert info.value.question == asked.question
                continue
            out = get_tool("B").run({"image": ref, "command": command}, ctx)
            drawn = get_tool("B").run({"image": ref, "region": {"kind": "box", "box": list(box)}}, ctx)
            assert out.backend == "sam" and out.mask == drawn.mask and out.box == drawn.box
            if command == COMMANDS[0]:  # independently: the dog whose centre is furthest left
                dogs = candidates(ctx, "image_segmentation", image, "dog")
                assert box == min(dogs, key=lambda b: b.box[0] + b.box[2]).box
            segmented += 1
    assert segmented >= 4


@pytest.mark.parametrize("detector", ["owlv2", "grounding_dino"])
def test_a_relation_grounds_both_objects_and_segments_the_one_nearest(ctx, tmp_path, weights, detector):
    ctx = configure(ctx, tmp_path, weights, detector, threshold=0.5)
    command, segmented = "the dog next to the cat", 0
    for seed in range(4):
        image = picture(seed)
        ref = ctx.store.put_image(image)
        dogs = candidates(ctx, "image_segmentation", image, "dog")
        cats = candidates(ctx, "image_segmentation", image, "cat")
        try:
            box = dogs[pick(parse_phrase(command), dogs, (W, H), cats)].box
        except (AmbiguousTarget, InvalidInput) as expected:  # B asks or refuses the same
            with pytest.raises(type(expected)) as info:
                get_tool("B").run({"image": ref, "command": command}, ctx)
            assert info.value.message == expected.message
            continue
        out = get_tool("B").run({"image": ref, "command": command}, ctx)
        drawn = get_tool("B").run({"image": ref, "region": {"kind": "box", "box": list(box)}}, ctx)
        assert out.backend == "sam" and out.mask == drawn.mask
        assert box not in [c.box for c in cats]  # a dog beside a cat, not the cat
        segmented += 1
    assert segmented >= 1


def test_the_detector_may_be_hs(ctx, tmp_path, weights):
    image = picture(1)
    own = configure(ctx, tmp_path / "own", weights, "owlv2")
    shared = configure(ctx, tmp_path / "shared", weights, "owlv2", shared=True)
    ref = own.store.put_image(image)
    command = next(c for c in COMMANDS if _picks(own, image, c))
    a = get_tool("B").run({"image": ref, "command": command}, own)
    b = get_tool("B").run({"image": ref, "command": command}, shared)
    assert a.mask == b.mask and a.box == b.box


def _picks(ctx: ToolContext, image: np.ndarray, command: str) -> bool:
    try:
        expected_box(ctx, "image_segmentation", image, command)
    except AmbiguousTarget:
        return False
    return True


def test_a_phrase_that_fits_several_boxes_equally_is_a_question(ctx, tmp_path, weights):
    ctx = configure(ctx, tmp_path, weights, "owlv2")
    image = picture(2)
    boxes = candidates(ctx, "image_segmentation", image, "dog")
    assert len(boxes) >= 2 and boxes[1].score >= 0.5 * boxes[0].score  # random weights: scores alike
    with pytest.raises(AmbiguousTarget) as info:
        get_tool("B").run({"image": ctx.store.put_image(image), "command": "segment the dog"}, ctx)
    question = info.value.question
    assert question.startswith(f"{len(info.value.boxes)} candidates fit 'the dog'. Which do you mean: ")
    assert all(f"({', '.join(str(round(v)) for v in box)})" in question for box in info.value.boxes)
    assert info.value.field == "command" and "e.g. 'the dog" in info.value.fix


def test_without_a_detector_sam_still_needs_a_prompt(ctx, tmp_path, weights):
    ctx = configure(ctx, tmp_path, weights, None)
    with pytest.raises(InvalidInput, match="SAM needs a prompt") as info:
        get_tool("B").run({"image": ctx.store.put_image(picture(3)), "command": "the dog on the left"}, ctx)
    assert "grounding:" in info.value.fix


def test_nothing_found_is_a_clear_error(ctx, tmp_path, weights):
    ctx = configure(ctx, tmp_path, weights, "owlv2", threshold=1.0)
    with pytest.raises(InvalidInput, match="found no 'dog'") as info:
        get_tool("B").run({"image": ctx.store.put_image(picture(4)), "command": "the dog on the left"}, ctx)
    assert "box_threshold" in info.value.fix


def test_a_video_is_grounded_on_the_named_frame_and_propagated(ctx, tmp_path, weights):
    ctx = configure(ctx, tmp_path, weights, "owlv2")
    frames = [picture(10 + i) for i in range(6)]
    video = ctx.store.put_video(frames, 6.0)
    decoded = list(ctx.store.iter_frames(video))
    for named, frame in (("", 0), (" in frame 3", 3), (" on the last frame", 5)):
        for base in COMMANDS:
            command = base + named
            try:
                box = expected_box(ctx, "video_segmentation", decoded[frame], command, frame)
            except AmbiguousTarget:
                continue
            break
        else:
            pytest.fail(f"every phrase ties on frame {frame}")
        out = get_tool("E").run({"video": video, "command": command}, ctx)
        drawn = get_tool("E").run({"video": video, "region": {"kind": "box", "box": list(box), "frame": frame}}, ctx)
        assert out.backend == "sam"
        assert [m.tolist() for m in ctx.store.iter_frames(out.masks)] == [
            m.tolist() for m in ctx.store.iter_frames(drawn.masks)]
    with pytest.raises(InvalidInput, match="past the video's last frame, 5"):
        get_tool("E").run({"video": video, "command": "the dog in frame 9"}, ctx)

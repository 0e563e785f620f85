"""Module H with transformers: tiny random LLaVA, Qwen2-VL, OWLv2 and Grounding DINO folders saved with
save_pretrained and loaded back through a models file, as a user configures real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from schemas import (
    MODELS_SETTING,
    BackendUnavailable,
    InvalidInput,
    JobCancelled,
    LabelledBox,
    ModelsFile,
    VitronSettings,
)
from tests.tools.tiny_gligen import write_models_file
from tests.tools.tiny_vlm import (
    save_grounding_dino,
    save_idefics3,
    save_llava,
    save_llava_onevision,
    save_owlv2,
    save_qwen2_vl,
)
from tools import ToolContext, get_tool
from tools.model_cache import model_cache

TOKENS = 6


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"llava": save_llava(root / "llava"), "qwen2_vl": save_qwen2_vl(root / "qwen2-vl"),
            "llava_onevision": save_llava_onevision(root / "llava-onevision"),
            "idefics3": save_idefics3(root / "idefics3"),
            "llava_plain": save_llava(root / "llava-plain", chat_template=False), "owlv2": save_owlv2(root / "owlv2"),
            "grounding_dino": save_grounding_dino(root / "grounding-dino")}


def context(tmp_path: Path, ctx: ToolContext, **entry) -> ToolContext:
    """`ctx` reading a models file that configures visual understanding with `entry`."""
    entry.setdefault("backend", "transformers")
    entry.setdefault("device", "cpu")
    entry.setdefault("options", {"max_new_tokens": TOKENS})
    path = write_models_file(tmp_path / "models.yaml", "visual_understanding", **entry)
    return ToolContext(ctx.store, ctx.settings, ctx.progress, models_file=ModelsFile.load(path))


def picture(seed: int, width: int = 80, height: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def own_answer(folder: Path, images: list[np.ndarray], question: str) -> str:
    """What the model answers by itself, used as its model card says: the chat template with one image entry per
    picture, greedy decoding."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=prompt, images=[Image.fromarray(i) for i in images], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=TOKENS, do_sample=False)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


def run(ctx: ToolContext, command: str, **data):
    out = get_tool("H").run({"command": command, **data}, ctx)
    assert out.backend == "transformers" and out.answered
    boxes = [LabelledBox.model_validate(b) for b in ctx.store.get_json(out.boxes)] if out.boxes else []
    return out, boxes


@pytest.mark.parametrize("model", ["llava", "llava_onevision", "qwen2_vl", "idefics3"])  # idefics3: SmolVLM's
def test_captions_and_answers_are_the_models_own(tmp_path, ctx, weights, model):
    ctx = context(tmp_path, ctx, weights=weights[model], grounding=weights["owlv2"])
    image = picture(0)
    ref = ctx.store.put_image(image)
    caption, _ = run(ctx, "caption", image=ref)
    assert caption.task == "caption" and caption.boxes is None and caption.region is None
    assert caption.text == own_answer(weights[model], [image], "Describe this image in one or two sentences.")
    answer, _ = run(ctx, "question: what colour is the car?", image=ref)
    assert answer.task == "question"
    assert answer.text == own_answer(weights[model], [image], "what colour is the car?")
    assert run(ctx, "what colour is the car?", image=ref)[0].text == answer.text  # greedy: the same again


@pytest.mark.parametrize("model", ["qwen2_vl", "llava_onevision", "idefics3"])
def test_a_video_is_shown_as_evenly_spaced_frames(tmp_path, ctx, weights, model):
    ctx = context(tmp_path, ctx, weights=weights[model])
    frames = [picture(i, 64, 48) for i in range(9)]
    video = ctx.store.put_video(frames, 3.0)
    decoded = list(ctx.store.iter_frames(video))  # what the store gives back of the H.264 video
    out, _ = run(ctx, "what happens?", video=video, num_frames=3)
    question = "These are 3 frames of a video, in order (frames 0, 4, 8). what happens?"
    assert out.text == own_answer(weights[model], [decoded[0], decoded[4], decoded[8]], question)


def test_a_region_shows_the_model_only_that_part(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["llava"])
    image = picture(1)
    out, _ = run(ctx, "what is this?", image=ctx.store.put_image(image), region={"kind": "box", "box": [8, 4, 48, 36]})
    assert out.text == own_answer(weights["llava"], [image[4:36, 8:48]], "what is this?")


def test_a_folder_without_a_chat_template_gets_llavas_prompt(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["llava_plain"])
    out, _ = run(ctx, "caption", image=ctx.store.put_image(picture(2)))
    assert isinstance(out.text, str) and out.text


def test_each_token_is_progress_and_a_cancel_stops_the_answer(tmp_path, ctx, weights, progress_log):
    ctx = context(tmp_path, ctx, weights=weights["llava"])
    image = ctx.store.put_image(picture(3))
    run(ctx, "caption", image=image)
    tokens = [m for _, m in progress_log if "token" in m]
    assert tokens and tokens[-1].endswith(f"/{TOKENS}") and len(tokens) <= TOKENS

    def cancel(fraction: float, message: str) -> None:
        if "token" in message:
            raise JobCancelled("cancelled by the user", field="job")

    with pytest.raises(JobCancelled):
        get_tool("H").run({"image": image, "command": "caption"}, ToolContext(ctx.store, ctx.settings, cancel,
                                                                                 models_file=ctx.models))


def test_the_model_loads_once(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["llava"])
    image = ctx.store.put_image(picture(4))
    run(ctx, "caption", image=image)
    loads = model_cache().stats()["loads"]
    run(ctx, "what is it?", image=image)
    assert model_cache().stats()["loads"] == loads


@pytest.mark.parametrize("detector", ["owlv2", "grounding_dino"])
def test_grounding_boxes_best_first_inside_the_picture(tmp_path, ctx, weights, detector):
    ctx = context(tmp_path, ctx, weights=weights["llava"], grounding=weights[detector],
                  options={"box_threshold": 0.3})
    image = ctx.store.put_image(picture(5))  # 80 wide, 60 high: OWLv2 pads it to a square
    out, boxes = run(ctx, "find: a cat; a dog", image=image)
    assert out.task == "grounding" and boxes
    assert all(b.label in ("a cat", "a dog") and b.score >= 0.3 and b.frame == 0 for b in boxes)
    assert all(0 <= b.box[0] < b.box[2] <= 80 and 0 <= b.box[1] < b.box[3] <= 60 for b in boxes)
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    assert out.region == boxes[0].region()
    assert out.text.startswith("Found 'a cat' or 'a dog': ")
    _, same = run(ctx, "find: a cat; a dog", image=image)
    assert same == boxes
    strict = context(tmp_path, ctx, weights=weights["llava"], grounding=weights[detector],
                     options={"box_threshold": 0.99})
    _, fewer = run(strict, "find: a cat; a dog", image=image)
    assert len(fewer) < len(boxes) and all(b.score >= 0.99 for b in fewer)


def test_owlv2_boxes_are_its_own_mapped_back_from_the_square(tmp_path, ctx, weights):
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    ctx = context(tmp_path, ctx, grounding=weights["owlv2"], options={"box_threshold": 0.3})
    image = picture(6, 90, 50)
    _, boxes = run(ctx, "find the cat", image=ctx.store.put_image(image))
    processor = AutoProcessor.from_pretrained(weights["owlv2"])
    model = AutoModelForZeroShotObjectDetection.from_pretrained(weights["owlv2"]).eval()
    with torch.inference_mode():
        outputs = model(**processor(images=Image.fromarray(image), text=[["the cat"]], return_tensors="pt"))
    found = processor.post_process_grounded_object_detection(outputs, threshold=0.3, target_sizes=[(90, 90)])[0]
    best = int(found["scores"].argmax())
    x1, y1, x2, y2 = found["boxes"][best].tolist()
    expected = (max(0, x1), max(0, y1), min(90, x2), min(50, y2))
    assert boxes[0].box == pytest.approx(expected, abs=0.01)
    assert boxes[0].score == pytest.approx(float(found["scores"][best]), abs=1e-4)


def test_grounding_on_a_video_and_in_a_region(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, grounding=weights["grounding_dino"])
    video = ctx.store.put_video([picture(i, 64, 48) for i in range(6)], 6.0)
    out, boxes = run(ctx, "where is the dog?", video=video, num_frames=2)
    assert {b.frame for b in boxes} <= {0, 5} and out.region.frame == boxes[0].frame
    assert [b.frame for b in boxes] == sorted(b.frame for b in boxes)
    image = ctx.store.put_image(picture(7))
    _, inside = run(ctx, "find the dog", image=image, region={"kind": "box", "box": [20, 10, 70, 50]})
    assert inside and all(b.box[0] >= 20 and b.box[1] >= 10 and b.box[2] <= 70 and b.box[3] <= 50 for b in inside)


def test_a_missing_model_names_the_setting_and_the_role(tmp_path, ctx, weights):
    image = ctx.store.put_image(picture(8))
    only_vlm = context(tmp_path, ctx, weights=weights["llava"])
    with pytest.raises(BackendUnavailable) as info:
        get_tool("H").run({"image": image, "command": "find the cat"}, only_vlm)
    assert info.value.field == MODELS_SETTING and "grounding:" in info.value.fix
    only_detector = context(tmp_path, ctx, grounding=weights["owlv2"])
    with pytest.raises(BackendUnavailable) as info:
        get_tool("H").run({"image": image, "command": "caption"}, only_detector)
    assert info.value.field == MODELS_SETTING and "weights:" in info.value.fix
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendUnavailable) as info:
        get_tool("H").run({"image": image, "command": "caption"}, context(tmp_path, ctx, weights=missing))
    assert str(missing) in str(info.value)
    not_a_vlm = context(tmp_path, ctx, weights=weights["owlv2"])
    with pytest.raises(BackendUnavailable, match="cannot load a vision-language model"):
        get_tool("H").run({"image": image, "command": "caption"}, not_a_vlm)


def test_a_bad_option_names_it(tmp_path, ctx, weights):
    ctx = context(tmp_path, ctx, weights=weights["llava"], options={"max_new_tokens": 0})
    with pytest.raises(InvalidInput) as info:
        get_tool("H").run({"image": ctx.store.put_image(picture(9)), "command": "caption"}, ctx)
    assert info.value.field == "options.max_new_tokens"


def test_settings_pointing_at_a_models_file_select_the_backend(tmp_path, weights):
    path = write_models_file(tmp_path / "my-models.yaml", "H", backend="transformers", weights=weights["llava"],
                             device="cpu", options={"max_new_tokens": 2})
    ctx = ToolContext.from_settings(VitronSettings(home=tmp_path / "home", models_file=path))
    out, _ = run(ctx, "caption", image=ctx.store.put_image(picture(10)))
    assert out.text

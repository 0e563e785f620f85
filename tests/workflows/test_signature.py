"""A step's signature covers exactly what its outputs depend on: a random backend without a seed has none, and the
weights, options, inputs' content and parameters each change it; aliases and job ids do not."""

from __future__ import annotations

import copy
import os

import numpy as np
import yaml

from schemas import ModelsFile
from tests.scenes import render_scene
from workflows import StepRunner, Workflow, compile_workflow
from workflows.signature import step_signature

REF = {"sha256": "a" * 64, "kind": "image", "media_type": "image/png", "shape": [4, 4, 3], "alias": "img1"}


def sd_models(tmp_path, **entry) -> ModelsFile:
    weights = tmp_path / "sd"
    weights.mkdir(exist_ok=True)
    return ModelsFile.parse({"image_editing": {"backend": "stable_diffusion", "weights": str(weights), **entry}})


def test_a_random_backend_without_a_seed_has_no_signature(tmp_path):
    models = sd_models(tmp_path)
    data = {"image": REF, "command": "make it blue"}
    assert step_signature("image_editing", data, "stable_diffusion", models) is None
    seeded = step_signature("image_editing", {**data, "seed": 1}, "stable_diffusion", models)
    assert seeded is not None
    assert step_signature("image_editing", {**data, "seed": 2}, "stable_diffusion", models) != seeded
    assert step_signature("image_editing", data, "opencv", ModelsFile()) is not None  # deterministic


def test_what_changes_a_signature_and_what_does_not(tmp_path):
    models = sd_models(tmp_path)
    data = {"image": REF, "command": "make it blue", "seed": 3}
    base = step_signature("image_editing", data, "stable_diffusion", models)
    renamed = {**data, "image": {**REF, "alias": "img7"}}
    assert step_signature("image_editing", renamed, "stable_diffusion", models) == base  # a name is not content
    other_content = {**data, "image": {**REF, "sha256": "b" * 64}}
    assert step_signature("image_editing", other_content, "stable_diffusion", models) != base
    assert step_signature("image_editing", {**data, "command": "make it red"}, "stable_diffusion", models) != base
    assert step_signature("image_editing", data, "stable_diffusion", models, {"guidance_scale": 9}) != base
    assert step_signature("image_editing", data, "stable_diffusion",
                          sd_models(tmp_path, options={"num_inference_steps": 5})) != base
    (tmp_path / "sd" / "model.bin").write_bytes(b"new weights")  # the folder changed: other weights
    os.utime(tmp_path / "sd", ns=(1, 1))
    assert step_signature("image_editing", data, "stable_diffusion", models) != base



def test_a_detector_shared_from_h_is_part_of_bs_signature(tmp_path):
    sam, detector = tmp_path / "sam.pth", tmp_path / "detector"
    sam.write_bytes(b"sam")
    detector.mkdir()
    b = {"backend": "sam", "weights": str(sam), "variant": "vit_b"}
    data = {"image": REF, "command": "the cat on the left"}
    alone = step_signature("B", data, "sam", ModelsFile.parse({"image_segmentation": b}))
    h = {"backend": "transformers", "grounding": str(detector)}
    shared = ModelsFile.parse({"image_segmentation": b, "visual_understanding": h})
    assert step_signature("B", data, "sam", shared) != alone
    strict = {**h, "options": {"box_threshold": 0.5}}
    stricter = ModelsFile.parse({"image_segmentation": b, "visual_understanding": strict})
    assert step_signature("B", data, "sam", stricter) != step_signature("B", data, "sam", shared)
    own = ModelsFile.parse({"image_segmentation": {**b, "grounding": str(detector)}, "visual_understanding": h})
    assert step_signature("B", data, "sam", own) == step_signature(
        "B", data, "sam", ModelsFile.parse({"image_segmentation": {**b, "grounding": str(detector)}}))

def test_the_runner_does_not_cache_an_unseeded_random_step(runtime, tmp_path):
    models_file = runtime.settings.home / "models.yaml"
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text(yaml.safe_dump({"image_editing": {"backend": "stable_diffusion",
                                                             "weights": str(tmp_path / "missing")}}))
    photo = runtime.store.put_image(render_scene(0).image)
    doc = {"version": 1, "inputs": {"photo": "image", "seed": {"type": "number", "default": 0}},
           "steps": [{"name": "edit", "type": "C", "image": "$inputs.photo", "command": "make it blue"}],
           "outputs": {"image": "$steps.edit.image"}}
    runner = StepRunner(runtime.executor, runtime.store, runtime.settings, cache=runtime.cache)
    (step,) = compile_workflow(doc).bind({"photo": photo}).steps
    started = runner.start(step, {})
    assert started.signature is None and started.handle is not None  # runs, never looked up nor recorded
    assert runner.finish(started).status == "failed"  # no weights on disk: a clear failure, not a hit
    seeded = compile_workflow({**doc, "steps": [{**doc["steps"][0], "seed": 5}]}).bind({"photo": photo}).steps[0]
    assert runner.start(seeded, {}).signature is not None


def test_step_options_reach_the_job_and_need_a_real_backend(runtime):
    doc = {"version": 1, "inputs": {"photo": "image"},
           "steps": [{"name": "edit", "type": "C", "image": "$inputs.photo", "command": "make it sepia",
                      "options": {"guidance_scale": 9}}],
           "outputs": {"image": "$steps.edit.image"}}
    photo = runtime.store.put_image(np.zeros((8, 8, 3), np.uint8))
    (step,) = compile_workflow(doc).bind({"photo": photo}).steps
    spec = StepRunner(runtime.executor, runtime.store).spec(step, {})
    assert spec.options == {"guidance_scale": 9}
    with Workflow(copy.deepcopy(doc), runtime=runtime) as flow:
        result = flow.run({"photo": photo})
    error = result.steps["edit"].error
    assert result.steps["edit"].status == "failed" and error.startswith("options:") and "models file" in error


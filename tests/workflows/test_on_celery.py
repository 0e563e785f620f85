"""A workflow on real Celery workers over the real Redis: the executor the settings choose, the same files as
in-process; independent steps both sent to the workers before either ends."""

from __future__ import annotations

import pytest

from schemas import VitronSettings
from tests.scenes import render_scene
from tests.services import REDIS_URL
from tests.workers import celery_worker
from tools.executors import CeleryExecutor
from workflows import Runtime, Workflow, load_workflow

TWO_EDITS = {
    "version": 1, "inputs": {"photo": "image"},
    "steps": [{"name": "sketch", "type": "C", "image": "$inputs.photo", "command": "make it a pencil sketch"},
              {"name": "cartoon", "type": "C", "image": "$inputs.photo", "command": "make it look like a cartoon"}],
    "outputs": {"sketch": "$steps.sketch.image", "cartoon": "$steps.cartoon.image"},
}


@pytest.fixture(scope="module")
def celery_settings(tmp_path_factory) -> VitronSettings:
    return VitronSettings(home=tmp_path_factory.mktemp("flows") / "home", broker_url=REDIS_URL)


@pytest.fixture(scope="module")
def runtime(celery_settings):
    with celery_worker(celery_settings, concurrency=2):
        runtime = Runtime(celery_settings)
        yield runtime
        runtime.close()


def test_a_workflow_runs_on_the_workers_to_the_same_files(runtime, celery_settings):
    scene = render_scene(7)
    inputs = {"photo": scene.image, "box": ",".join(map(str, scene.box))}
    assert isinstance(runtime.executor, CeleryExecutor)
    with load_workflow("product_cutout", runtime=runtime) as flow:
        on_workers = flow.run(inputs, cache=False).raise_for_status()
    local = Runtime(celery_settings.model_copy(update={"broker_url": None}))
    with load_workflow("product_cutout", runtime=local) as flow:
        here = flow.run(inputs, cache=False).raise_for_status()
    local.close()
    assert on_workers.outputs == here.outputs


def test_independent_steps_are_both_queued_before_either_ends(runtime):
    photo = runtime.store.put_image(render_scene(8, 640, 480).image)
    events: list[dict] = []
    with Workflow(TWO_EDITS, runtime=runtime) as flow:
        flow.run({"photo": photo}, cache=False, on_event=events.append).raise_for_status()
    order = [e["event"] for e in events if e["event"] in ("step_started", "step_finished")]
    assert order[:2] == ["step_started", "step_started"], order

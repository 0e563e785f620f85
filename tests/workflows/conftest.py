"""Workflows on a fresh artifact store and session database under tmp_path, run in-process."""

from __future__ import annotations

import pytest

from workflows import Runtime


@pytest.fixture
def runtime(settings):
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


CUTOUT = {
    "version": 1,
    "inputs": {"photo": "image", "colour": {"type": "text", "default": "blue"}},
    "steps": [
        {"name": "seg", "type": "image_segmentation@v1", "image": "$inputs.photo", "command": "the cup",
         "region": {"kind": "box", "box": [72, 52, 484, 392]}},
        {"name": "paint", "type": "C@v1", "image": "$inputs.photo", "mask": "$steps.seg.mask",
         "command": "make it {colour}"},
    ],
    "outputs": {"result": "$steps.paint.image", "mask": "$steps.seg.mask"},
}

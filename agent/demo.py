"""The main job on a fresh machine: segment the cup in scikit-image's coffee photo, then edit it."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import ArtifactRef, BoxRegion
from tools import ToolContext, get_tool

# The cup and saucer in skimage.data.coffee() (600x400), in pixels.
CUP_BOX = BoxRegion(box=(72, 52, 484, 392))


@dataclass
class DemoResult:
    photo: ArtifactRef
    mask: ArtifactRef
    edits: dict[str, ArtifactRef]


def run_demo(ctx: ToolContext) -> DemoResult:
    """Segment the cup with a box prompt, then recolour the cup and blur the background around it."""
    from skimage import data  # the photo ships with scikit-image; nothing is downloaded

    photo = ctx.store.put_image(data.coffee())
    seg = get_tool("image_segmentation").run({"image": photo, "region": CUP_BOX, "command": "the cup and saucer"}, ctx)
    edits = {}
    for command in ("make it blue", "blur the background"):
        out = get_tool("image_editing").run({"image": photo, "mask": seg.mask, "command": command}, ctx)
        edits[command] = out.image
    return DemoResult(photo=photo, mask=seg.mask, edits=edits)

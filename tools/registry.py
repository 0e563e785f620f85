"""Find a tool by letter, canonical name or the paper's title."""

from __future__ import annotations

from functools import cache

from schemas import MODULES, resolve_module

from .base import VisionTool
from .specialists import (
    ImageEditing,
    ImageGeneration,
    ImageSegmentation,
    ImageToVideo,
    VideoEditing,
    VideoGeneration,
    VideoSegmentation,
    VisualUnderstanding,
)

_TOOLS: dict[str, type[VisionTool]] = {
    cls.name: cls
    for cls in (ImageGeneration, ImageSegmentation, ImageEditing, VideoGeneration, VideoSegmentation,
                VideoEditing, ImageToVideo, VisualUnderstanding)
}


def get_tool(spelling: str) -> VisionTool:
    """The tool for a module letter ("B"), name ("image_segmentation") or title ("Image Segmentation")."""
    return _instance(resolve_module(spelling).name)


@cache
def _instance(name: str) -> VisionTool:
    return _TOOLS[name]()


def all_tools() -> list[VisionTool]:
    """Every registered tool, in module-letter order."""
    return [get_tool(info.name) for info in MODULES]

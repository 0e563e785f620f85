"""The specialist tools, their backends and the contract they share."""

from .base import ProgressCallback, ToolContext, VisionTool
from .registry import all_tools, get_tool
from .specialists import (
    EditImageInput,
    EditImageOutput,
    EditVideoInput,
    EditVideoOutput,
    GenerateImageInput,
    GenerateVideoInput,
    ImageOutput,
    ImageToVideoInput,
    SegmentImageInput,
    SegmentImageOutput,
    SegmentVideoInput,
    SegmentVideoOutput,
    UnderstandInput,
    UnderstandOutput,
    VideoOutput,
)

__all__ = [
    "EditImageInput",
    "EditImageOutput",
    "EditVideoInput",
    "EditVideoOutput",
    "GenerateImageInput",
    "GenerateVideoInput",
    "ImageOutput",
    "ImageToVideoInput",
    "ProgressCallback",
    "SegmentImageInput",
    "SegmentImageOutput",
    "SegmentVideoInput",
    "SegmentVideoOutput",
    "ToolContext",
    "UnderstandInput",
    "UnderstandOutput",
    "VideoOutput",
    "VisionTool",
    "all_tools",
    "get_tool",
]

"""The eight specialist modules: canonical names, VITRON letters and the paper's titles."""

from __future__ import annotations

from typing import Literal, NamedTuple

from .errors import UnknownModule

ModuleName = Literal[
    "image_generation",
    "image_segmentation",
    "image_editing",
    "video_generation",
    "video_segmentation",
    "video_editing",
    "image_to_video",
    "visual_understanding",
]
"""Canonical module name; the spelling every plan, job and database row uses."""


class ModuleInfo(NamedTuple):
    name: ModuleName
    code: str
    title: str


MODULES: tuple[ModuleInfo, ...] = (
    ModuleInfo("image_generation", "A", "Image Generation"),
    ModuleInfo("image_segmentation", "B", "Image Segmentation"),
    ModuleInfo("image_editing", "C", "Image Editing"),
    ModuleInfo("video_generation", "D", "Video Generation"),
    ModuleInfo("video_segmentation", "E", "Video Segmentation"),
    ModuleInfo("video_editing", "F", "Video Editing"),
    ModuleInfo("image_to_video", "G", "Image to Video"),
    ModuleInfo("visual_understanding", "H", "Visual Understanding"),
)


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


_LOOKUP: dict[str, ModuleInfo] = {}
for _info in MODULES:
    for _spelling in (_info.name, _info.code, _info.title):
        _LOOKUP[_key(_spelling)] = _LOOKUP[_spelling] = _info


def resolve_module(spelling: str) -> ModuleInfo:
    """Find a module by letter, canonical name or title, in any case and spacing."""
    # Exact spellings first: every job resolves its module several times, and nearly always by canonical name.
    info = _LOOKUP.get(spelling) or _LOOKUP.get(_key(spelling)) if isinstance(spelling, str) else None
    if info is None:
        known = ", ".join(f"{m.code}={m.name}" for m in MODULES)
        raise UnknownModule(
            f"unknown module {spelling!r}",
            field="module",
            fix=f"use a letter, canonical name or title: {known}",
        )
    return info

"""A step's signature: the SHA-256 of everything its outputs depend on, the key of the step cache.

That is: the tool and its contract version, the backend, the models-file entry of a real backend with the size
and modification time of its weights (and of H's detector, where B's or E's SAM grounds with it), the step's backend
options, the content (sha256) of every input artifact and every parameter (the seed among them). Job ids, sessions,
aliases and media types are left out, so the same work in another run, session or batch finds the result. A backend
with randomness and no seed has no signature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from schemas import ModelsFile
from tools import get_tool

_GROUNDED = ("image_segmentation", "video_segmentation")  # their SAM backend may ground with H's detector

SIGNATURE_VERSION = 1  # bump when what a signature covers changes, or an embedded backend's output does


def step_signature(module: str, tool_input: dict[str, Any], backend: str, models: ModelsFile,
                   options: dict[str, Any] | None = None) -> str | None:
    """The signature of one tool call, or None when its output is not reproducible (random, unseeded)."""
    tool = get_tool(module)
    if not tool.reproducible(backend, tool_input):
        return None
    entry = models.spec(tool.name)
    model = None
    if entry is not None and entry.backend == backend:
        model = {"entry": entry.model_dump(mode="json"),
                 "weights": {role: _file_identity(path) for role, path in sorted(entry.weights.items())}}
        shared = models.spec("visual_understanding")
        if (tool.name in _GROUNDED and "grounding" not in entry.weights and shared is not None
                and "grounding" in shared.weights):  # B and E ground with H's detector (tools.real.grounding)
            model["grounding"] = {"options": shared.options, "weights": _file_identity(shared.weights["grounding"])}
    doc = {"v": SIGNATURE_VERSION, "tool": f"{tool.name}@v{tool.version}", "backend": backend, "model": model,
           "options": options or {}, "input": _content(tool_input)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _content(value: Any) -> Any:
    """JSON with every artifact ref reduced to its content hash."""
    if isinstance(value, dict):
        if "sha256" in value and "kind" in value:
            return {"sha256": value["sha256"]}
        return {k: _content(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_content(v) for v in value]
    return value


def _file_identity(path: Path) -> list[Any]:
    """What tells one weights file (or folder) from another without reading it: its path, size and mtime."""
    try:
        stat = Path(path).stat()
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]

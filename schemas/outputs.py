"""The common shape of tool outputs."""

from __future__ import annotations

from pydantic import BaseModel

from .artifacts import ArtifactRef


class ToolOutput(BaseModel):
    """Base of every tool's output model; its artifact fields are what the step produced."""

    backend: str

    def artifacts(self) -> list[ArtifactRef]:
        """The artifact refs among the fields, in field order."""
        found: list[ArtifactRef] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, ArtifactRef):
                found.append(value)
            elif isinstance(value, list | tuple):
                found.extend(v for v in value if isinstance(v, ArtifactRef))
        return found

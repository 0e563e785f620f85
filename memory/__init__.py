"""Everything the system remembers: the artifact store (and, later, session memory)."""

from .artifacts import ArtifactStore, VideoInfo, VideoWriter

__all__ = ["ArtifactStore", "VideoInfo", "VideoWriter"]

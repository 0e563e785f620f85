"""Everything the system remembers: the artifact store, session memory in SQL, the LangGraph checkpointer."""

from .artifacts import ArtifactStore, VideoInfo, VideoWriter
from .checkpoints import delete_thread_checkpoints, open_checkpointer
from .database import Database
from .sessions import (
    ArtifactEntry,
    DeletedSession,
    History,
    Lineage,
    SessionInfo,
    SessionMemory,
    StepRecord,
    TurnRecord,
)

__all__ = [
    "ArtifactEntry",
    "ArtifactStore",
    "Database",
    "DeletedSession",
    "History",
    "Lineage",
    "SessionInfo",
    "SessionMemory",
    "StepRecord",
    "TurnRecord",
    "VideoInfo",
    "VideoWriter",
    "delete_thread_checkpoints",
    "open_checkpointer",
]

"""Everything the system remembers: the artifact store, session memory in SQL, the LangGraph checkpointer."""

from .artifacts import ArtifactStore, VideoInfo, VideoWriter
from .batches import BatchInfo, BatchItem, BatchRecords
from .checkpoints import delete_thread_checkpoints, open_checkpointer
from .database import Database
from .keys import ApiKey, ApiKeys
from .leases import Lease, TurnLeases
from .runs import RunRecord, RunRecords, RunStatus
from .sessions import (
    UNDO,
    ArtifactEntry,
    DeletedSession,
    History,
    Lineage,
    SessionInfo,
    SessionMemory,
    StepRecord,
    TurnRecord,
    restored,
    undo_replaces,
    undo_target,
)
from .step_cache import CachedStep, StepCache

__all__ = [
    "UNDO",
    "ApiKey",
    "ApiKeys",
    "ArtifactEntry",
    "ArtifactStore",
    "BatchInfo",
    "BatchItem",
    "BatchRecords",
    "CachedStep",
    "Database",
    "DeletedSession",
    "History",
    "Lease",
    "Lineage",
    "RunRecord",
    "RunRecords",
    "RunStatus",
    "SessionInfo",
    "SessionMemory",
    "StepCache",
    "StepRecord",
    "TurnLeases",
    "TurnRecord",
    "VideoInfo",
    "VideoWriter",
    "delete_thread_checkpoints",
    "open_checkpointer",
    "restored",
    "undo_replaces",
    "undo_target",
]

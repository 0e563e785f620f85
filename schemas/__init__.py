"""Pure data shared by every package: refs, regions, invocations, tensors, errors, settings."""

from .artifacts import MEDIA_TYPES, ArtifactKind, ArtifactRef
from .errors import (
    AliasNotFound,
    ArtifactNotFound,
    BackendUnavailable,
    CorruptArtifact,
    DatabaseOutOfDate,
    DatabaseUnavailable,
    InvalidInput,
    PlanSyntaxError,
    SessionNotFound,
    StepNotFound,
    UnknownModule,
    UnsafePath,
    UnsupportedOperation,
    VitronError,
)
from .invocations import INPUT_REF_PATTERN, InputRef, Invocation, SignalEmbedding
from .jobs import JobCancelled, JobFailed, JobQueue, JobResult, JobSpec, JobStatus
from .models_file import MODELS_SETTING, ModelsFile, ModelSpec
from .modules import MODULES, ModuleInfo, ModuleName, resolve_module
from .outputs import ToolOutput
from .plans import Plan, PlanStep
from .regions import BoxRegion, PointsRegion, Region, ScribbleRegion, parse_box, parse_points
from .settings import VitronSettings
from .tensors import DTypeFamily, TensorSpec, TensorStore, tensor_shape_dtype

__all__ = [
    "INPUT_REF_PATTERN",
    "MEDIA_TYPES",
    "MODELS_SETTING",
    "MODULES",
    "AliasNotFound",
    "ArtifactKind",
    "ArtifactNotFound",
    "ArtifactRef",
    "BackendUnavailable",
    "BoxRegion",
    "CorruptArtifact",
    "DTypeFamily",
    "DatabaseOutOfDate",
    "DatabaseUnavailable",
    "InputRef",
    "InvalidInput",
    "Invocation",
    "JobCancelled",
    "JobFailed",
    "JobQueue",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "ModelSpec",
    "ModelsFile",
    "ModuleInfo",
    "ModuleName",
    "Plan",
    "PlanStep",
    "PlanSyntaxError",
    "PointsRegion",
    "Region",
    "ScribbleRegion",
    "SessionNotFound",
    "SignalEmbedding",
    "StepNotFound",
    "TensorSpec",
    "TensorStore",
    "ToolOutput",
    "UnknownModule",
    "UnsafePath",
    "UnsupportedOperation",
    "VitronError",
    "VitronSettings",
    "parse_box",
    "parse_points",
    "resolve_module",
    "tensor_shape_dtype",
]

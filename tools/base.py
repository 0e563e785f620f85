"""The `VisionTool` contract: typed input, typed output, backends chosen by name."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from memory import ArtifactStore
from schemas import (
    ArtifactRef,
    BackendUnavailable,
    InvalidInput,
    ModelsFile,
    ModuleName,
    ToolOutput,
    VitronError,
    VitronSettings,
    resolve_module,
)

ProgressCallback = Callable[[float, str], None]
"""Called with a fraction in [0, 1] and a short message as a job advances."""


def _ignore_progress(fraction: float, message: str) -> None:
    return None


@dataclass
class ToolContext:
    """What a backend needs beside its input: where artifacts live, settings, where progress goes."""

    store: ArtifactStore
    settings: VitronSettings = field(default_factory=VitronSettings)
    progress: ProgressCallback = _ignore_progress
    models_file: ModelsFile | None = None  # None: read from settings on first use
    notes: list[str] = field(default_factory=list)  # see `note`

    def note(self, message: str) -> None:
        """Tell the user something about a job that goes on anyway (a signal left out): the job's result carries
        it, and the runner puts it in the step's `step_finished` event."""
        if message not in self.notes:
            self.notes.append(message)

    @cached_property
    def models(self) -> ModelsFile:
        """Which real backend each module uses (the models file); embedded backends for the rest."""
        return self.models_file or read_models_file(self.settings.models_path)

    @classmethod
    def from_settings(
        cls, settings: VitronSettings | None = None, progress: ProgressCallback | None = None
    ) -> ToolContext:
        settings = settings or VitronSettings()
        return cls(ArtifactStore.from_settings(settings), settings, progress or _ignore_progress)


In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=ToolOutput)
Backend = Callable[[Any, ToolContext], Any]


class VisionTool(Generic[In, Out]):
    """One specialist module. Subclasses set the class attributes; `run` validates and dispatches.

    `backends` maps a backend name to "module:function"; the function takes `(input, ctx)` and returns
    the output model. Import strings keep heavy libraries out of import time until a backend is used.
    """

    name: ClassVar[ModuleName]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    output_model: ClassVar[type[ToolOutput]]
    backends: ClassVar[dict[str, str]] = {}
    queue: ClassVar[Literal["cpu", "gpu"]] = "cpu"  # where its jobs run; "gpu" for the generation modules (A, D, G)
    heavy: ClassVar[bool] = False
    unavailable_fix: ClassVar[str] = ""
    # The contract's version: a change to the input or output models that breaks a caller makes a new one, so a
    # workflow written for `image_editing@v1` keeps its meaning or is refused with a clear message.
    version: ClassVar[int] = 1
    # Backends whose output depends on random noise: the same input gives the same output only with a seed.
    random_backends: ClassVar[frozenset[str]] = frozenset()
    # "module:function" that readies an input for every backend (see `prepare`), loaded when used, like a backend.
    preparer: ClassVar[str | None] = None
    # Optional artifact inputs of which a call gives exactly one (H reads an image or a video): a plan that names
    # none of them gets the newest artifact of any of their kinds.
    one_of: ClassVar[tuple[str, ...]] = ()

    @property
    def code(self) -> str:
        return resolve_module(self.name).code

    @property
    def title(self) -> str:
        return resolve_module(self.name).title

    def backend_name(self, name: str | None = None, models: ModelsFile | None = None) -> str:
        """The named backend, else the one the models file configures, else the embedded one."""
        if name is None and models is not None and (spec := models.spec(self.name)) is not None:
            name = spec.backend
        if name is None:
            name = next((n for n, target in self.backends.items() if target.startswith("tools.embedded.")), None)
        if name is None:
            raise BackendUnavailable(f"{self.name} has no backend on this machine", field="backend",
                                     fix=self.unavailable_fix)
        return name

    def backend(self, name: str | None = None, models: ModelsFile | None = None) -> tuple[str, Backend]:
        """The backend's name and function (see `backend_name`); `BackendUnavailable` when there is none."""
        name = self.backend_name(name, models)
        if name not in self.backends:
            raise BackendUnavailable(f"{self.name} has no backend {name!r}", field="backend",
                                     fix=f"choose one of {sorted(self.backends)}")
        module_name, _, attr = self.backends[name].partition(":")
        return name, getattr(importlib.import_module(module_name), attr)

    def reproducible(self, backend: str, data: dict[str, Any]) -> bool:
        """Whether this input on this backend always gives the same output (so it may be cached)."""
        return backend not in self.random_backends or data.get("seed") is not None

    def parse_input(self, data: In | dict[str, Any]) -> In:
        """Validate `data` against the input model, turning pydantic's error into `InvalidInput`."""
        if isinstance(data, self.input_model):
            return data
        try:
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            raise invalid_input_from(exc, self.name) from None

    def check(self, inp: In, ctx: ToolContext, *, backend: str | None = None) -> tuple[str, Backend]:
        """Everything `run` checks before any work: the input artifacts are in the store (`ArtifactNotFound`), the
        backend exists and its code imports. Its name and function."""
        for ref in input_refs(inp):
            ctx.store.path(ref)
        return self.backend(backend, ctx.models)

    def prepare(self, inp: In, ctx: ToolContext, backend: str | None = None) -> In:
        """The input as every backend can take it, by the tool's `preparer` (a video tool moves a region drawn on a
        later frame to the first); the input itself without one. Run before the backend, and before a long video is
        split into chunks."""
        if self.preparer is None:
            return inp
        module_name, _, attr = self.preparer.partition(":")
        ready: In = getattr(importlib.import_module(module_name), attr)(inp, ctx, self.backend_name(backend,
                                                                                                  ctx.models))
        return ready

    def run(self, data: In | dict[str, Any], ctx: ToolContext | None = None, *, backend: str | None = None) -> Out:
        """Validate, check that the input artifacts exist, run the backend, return its typed output."""
        inp = self.parse_input(data)
        ctx = ctx or ToolContext.from_settings()
        backend_name, fn = self.check(inp, ctx, backend=backend)
        inp = self.prepare(inp, ctx, backend_name)
        ctx.progress(0.0, f"{self.name}: starting ({backend_name})")
        started = time.perf_counter()
        out = fn(inp, ctx)
        ctx.progress(1.0, f"{self.name}: done in {time.perf_counter() - started:.2f}s")
        return out

    def as_langchain_tool(self, ctx: ToolContext | None = None, *, session: Any = None) -> Any:
        """A LangChain `StructuredTool` whose LLM-facing schema leaves the signal tensors out. A bad call (a field,
        an artifact missing from the store, a module with no backend here) is the tool message's content, naming the
        field and the fix, not an exception that ends an agent's loop.

        With `session` (an `agent.AgentSession`), the tool an LLM can use: artifacts named by alias from the
        session's table (`@img1`), each call a step of the session (`agent.langchain_tools`). Without one, it takes
        artifact refs as JSON and runs in `ctx`."""
        if session is not None:  # the session makes it: tools/ sits below agent/ and imports nothing of it
            return session.langchain_tool(self.name)
        from langchain_core.tools import StructuredTool, ToolException

        def call(**kwargs: Any) -> dict[str, Any]:
            try:
                out = self.run(kwargs, ctx)
            except VitronError as exc:
                raise ToolException(exc.message) from exc  # the message's content, status "error"
            return out.model_dump(mode="json")

        def invalid(exc: ValidationError) -> str:
            return invalid_input_from(exc, self.name).message

        return StructuredTool.from_function(
            func=call, name=self.name, description=self.description, args_schema=self.input_model,
            handle_tool_error=True, handle_validation_error=invalid,
        )


def read_models_file(path: Path) -> ModelsFile:
    """The models file at `path`, read again only when it changes (a worker reads it for every job)."""
    try:
        stat = path.stat()
        version: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = None
    return _read_models_file(path, version)


@lru_cache(maxsize=8)
def _read_models_file(path: Path, version: tuple[int, int] | None) -> ModelsFile:
    return ModelsFile.load(path)


def input_refs(inp: BaseModel) -> list[ArtifactRef]:
    """The artifact refs an input model names (directly or inside its region)."""
    refs: list[ArtifactRef] = []
    for name in type(inp).model_fields:
        value = getattr(inp, name)
        if isinstance(value, ArtifactRef):
            refs.append(value)
        elif isinstance(value, BaseModel):
            refs.extend(input_refs(value))
    return refs


def invalid_input_from(exc: ValidationError, where: str) -> InvalidInput:
    """The first pydantic error as an `InvalidInput` naming the field, the problem and the fix."""
    err = exc.errors(include_url=False)[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, InvalidInput):  # our own check inside a validator already names field and fix
        return original
    loc = ".".join(str(p) for p in err["loc"]) or where
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return InvalidInput(err["msg"] + more, field=loc, fix=f"see the {where} input schema")

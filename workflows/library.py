"""Saved workflows: files in `VITRON_WORKFLOWS_DIR` (default `$VITRON_HOME/workflows`) and the examples that ship with
the package, each called by its file's name (`product_cutout`). A saved workflow overrides an example of its name; a
file whose name is not lowercase letters, digits and `_`, or is a module's name, is not listed (a plan could not
call it)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from memory import ArtifactStore
from schemas import WORKFLOW_NAME_PATTERN, InvalidInput, UnknownModule, VitronSettings, resolve_module

from .compiler import CompiledWorkflow, compile_workflow
from .workflow import Workflow

EXAMPLES = Path(__file__).parent / "examples"
_SUFFIXES = (".yaml", ".yml", ".json")


def saved_workflows(settings: VitronSettings | None = None) -> dict[str, Path]:
    """Every workflow known by name (a file's name that can be called like a module: lowercase, digits and `_`):
    the examples, then the saved ones."""
    settings = settings or VitronSettings()
    found: dict[str, Path] = {}
    for folder in (EXAMPLES, settings.workflows_path):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.iterdir())
                          if p.suffix in _SUFFIXES and p.is_file() and _callable(p.stem)})
    return found


def _callable(name: str) -> bool:
    """A name a plan can call: lowercase letters, digits and `_`, and no module's letter, name or title."""
    if not re.fullmatch(WORKFLOW_NAME_PATTERN, name):
        return False
    try:
        resolve_module(name)
    except UnknownModule:
        return True
    return False


def saved_workflow(name: str, settings: VitronSettings | None = None,
                   store: ArtifactStore | None = None) -> CompiledWorkflow | None:
    """The saved workflow `name`, compiled (again only when its file changes); None when there is none. A saved
    workflow that does not compile raises its error, naming the file."""
    path = saved_workflows(settings).get(name)
    if path is None:
        return None
    stat = path.stat()
    try:
        return _compiled(path, stat.st_mtime_ns, stat.st_size, store)
    except InvalidInput as exc:
        raise InvalidInput(f"the saved workflow {name} ({path}) does not compile: {exc.message}", field="module",
                           fix="fix the file, or remove it") from None


@lru_cache(maxsize=64)
def _compiled(path: Path, mtime_ns: int, size: int, store: ArtifactStore | None) -> CompiledWorkflow:
    return compile_workflow(Workflow.load(path).definition, store)


def find_workflow(name_or_path: str | Path, settings: VitronSettings | None = None) -> Path:
    """A workflow file by path, or by a saved workflow's name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    known = saved_workflows(settings)
    if str(name_or_path) in known:
        return known[str(name_or_path)]
    settings = settings or VitronSettings()
    raise InvalidInput(f"no workflow file {str(name_or_path)!r}, and no saved workflow of that name", field="workflow",
                       fix=f"give a file's path, or one of: {', '.join(known) or 'none'} (saved workflows live in "
                           f"{settings.workflows_path}, VITRON_WORKFLOWS_DIR)")


def load_workflow(name_or_path: str | Path, settings: VitronSettings | None = None, **kwargs: Any) -> Workflow:
    """`Workflow.load` for a path or a saved workflow's name."""
    return Workflow.load(find_workflow(name_or_path, settings), settings=settings, **kwargs)

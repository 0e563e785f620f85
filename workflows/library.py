"""Saved workflows: files in `VITRON_WORKFLOWS_DIR` (default `$VITRON_HOME/workflows`) and the examples that ship with
the package, each called by its file's name (`product_cutout`). A saved workflow overrides an example of its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas import InvalidInput, VitronSettings

from .workflow import Workflow

EXAMPLES = Path(__file__).parent / "examples"
_SUFFIXES = (".yaml", ".yml", ".json")


def saved_workflows(settings: VitronSettings | None = None) -> dict[str, Path]:
    """Every workflow known by name: the examples, then the saved ones."""
    settings = settings or VitronSettings()
    found: dict[str, Path] = {}
    for folder in (EXAMPLES, settings.workflows_path):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.iterdir()) if p.suffix in _SUFFIXES and p.is_file()})
    return found


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

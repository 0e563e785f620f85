"""`vitron models`: which backend each module will use, from which weights, and whether they are on disk."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from agent.console import clear_errors, out


def model_rows() -> tuple[str, list[dict[str, Any]]]:
    """(the models file's path, one row per module: backend, source, weights by role with their state, ready)."""
    from schemas import BackendUnavailable, ModelsFile, VitronSettings
    from tools import all_tools

    settings = VitronSettings()
    models = ModelsFile.load(settings.models_path)
    rows = []
    for tool in all_tools():
        spec = models.spec(tool.name)
        row: dict[str, Any] = {"code": tool.code, "module": tool.name, "backends": list(tool.backends)}
        if spec is None:
            try:
                embedded: str | None = tool.backend_name(None, models)
            except BackendUnavailable:
                embedded = None
            row.update(backend=embedded, source="embedded" if embedded else "none", weights={}, ready=bool(embedded))
            if not embedded:
                row["problem"] = f"no embedded backend: configure one of {list(tool.backends)} in the models file"
        else:
            weights = {role: {"path": str(path), "exists": path.exists()} for role, path in spec.weights.items()}
            row.update(backend=spec.backend, source="models file", weights=weights, variant=spec.variant,
                       device=spec.device, dtype=spec.dtype, cpu_offload=spec.cpu_offload)
            problems = [f"{role}: {w['path']} does not exist" for role, w in weights.items() if not w["exists"]]
            if spec.backend not in tool.backends:
                problems.insert(0, f"unknown backend {spec.backend!r}: use one of {list(tool.backends)}")
            if not weights:
                problems.append("no weights given")
            row["ready"] = not problems
            if problems:
                row["problem"] = "; ".join(problems)
        rows.append(row)
    return str(models.path or settings.models_path), rows


@clear_errors
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Show each module's backend (embedded or from the models file), its weights and whether they are there."""
    path, rows = model_rows()
    if as_json:
        print(json.dumps({"models_file": path, "modules": rows}))
        return
    table = Table("code", "module", "backend", "weights", "ready", title=f"models file: {path}")
    for row in rows:
        weights = "\n".join(f"{role}: {w['path']}" + ("" if w["exists"] else " [red](missing)[/red]")
                            for role, w in row["weights"].items()) or f"[dim]{row['source']}[/dim]"
        ready = "[green]yes[/green]" if row["ready"] else f"[red]no[/red]: {row.get('problem', '')}"
        table.add_row(row["code"], row["module"], row["backend"] or "-", weights, ready)
    out.print(table)

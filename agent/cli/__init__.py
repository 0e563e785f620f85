"""The `vitron` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .console import clear_errors, fail, out, progress_bar
from .jobs import jobs_app, worker_cmd
from .mcp import mcp_cmd
from .models import models_cmd
from .planner import planner_app
from .serve import keys_app, serve_cmd
from .sessions import sessions_app
from .store import store_app
from .turns import chat_cmd, plan_cmd, run_cmd
from .workflows import workflow_app

app = typer.Typer(help="vitron-agent: pixel-level vision tools with a planner.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(sessions_app, name="sessions")
app.add_typer(jobs_app, name="jobs")
app.add_typer(planner_app, name="planner")
app.add_typer(workflow_app, name="workflow")
app.add_typer(keys_app, name="keys")
app.add_typer(store_app, name="store")
app.command("serve")(serve_cmd)
app.command("mcp")(mcp_cmd)
app.command("worker")(worker_cmd)
app.command("run")(run_cmd)
app.command("plan")(plan_cmd)
app.command("chat")(chat_cmd)
app.command("models")(models_cmd)


def _artifact_rows(refs: list[Any], store: Any) -> list[dict[str, str]]:
    return [{"kind": r.kind, "path": str(store.path(r)), "sha256": r.sha256} for r in refs]


@app.command("tools")
@clear_errors
def tools_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the specialist modules (letters, backends) and the saved workflows, which plans can call too."""
    from agent.service import tool_rows

    rows = tool_rows()
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("code", "module", "backends", "description")
    for row in rows:
        if row["kind"] == "tool":
            table.add_row(row["code"], row["module"], ", ".join(row["backends"]) or "[dim]none configured[/dim]",
                          row["description"])
        else:
            table.add_row("", row["module"], "[dim]workflow[/dim]", row.get("description") or row.get("error", ""))
    out.print(table)


@app.command()
@clear_errors
def invoke(
    module: Annotated[str, typer.Argument(help="Letter (B), name (image_segmentation) or title.")],
    image: Annotated[Path | None, typer.Option(help="Input image file.")] = None,
    video: Annotated[Path | None, typer.Option(help="Input video file.")] = None,
    box: Annotated[str | None, typer.Option(help="Region box x1,y1,x2,y2 in pixels.")] = None,
    points: Annotated[str | None, typer.Option(help='Region points "x,y,label;..." (label 1 object, 0 not).')] = None,
    scribble: Annotated[Path | None, typer.Option(help="Region scribble: a mask image painted on the object.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Input mask image (where to edit).")] = None,
    command: Annotated[str | None, typer.Option(help="The instruction, e.g. 'make it blue'.")] = None,
    frames: Annotated[int | None, typer.Option(help="Frame count (video outputs).")] = None,
    fps: Annotated[float | None, typer.Option(help="Frame rate (video outputs).")] = None,
    width: Annotated[int | None, typer.Option(help="Output width.")] = None,
    height: Annotated[int | None, typer.Option(help="Output height.")] = None,
    backend: Annotated[str | None, typer.Option(help="Backend (default: the models file's, else embedded).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights for this call: diffusers folder or SAM .pth.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of a diffusion backend's noise (reproducible).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run one tool directly on files."""
    from agent.service import invoke_tool
    from schemas import parse_box, parse_points
    from tools import get_tool

    if len([r for r in (box, points, scribble) if r is not None]) > 1:
        fail("give one region: --box, --points or --scribble", 2)
    tool = get_tool(module)
    given: dict[str, Any] = {"image": image, "video": video, "mask": mask, "scribble": scribble, "command": command,
                             "num_frames": frames, "fps": fps, "width": width, "height": height, "seed": seed,
                             "region": parse_box(box) if box else parse_points(points) if points else None}
    fields = tool.input_model.model_fields
    for name, value in given.items():
        if value is not None and name not in fields and name != "scribble":
            flag = {"num_frames": "frames"}.get(name, name)
            fail(f"{tool.name} takes no --{flag}; it takes {', '.join(f for f in fields if f != 'signal')}", 2)
    with progress_bar(enabled=not as_json) as progress:
        store, result = invoke_tool(tool.name, given, backend=backend, weights=weights, progress=progress)
    rows = _artifact_rows(result.artifacts(), store)
    text = getattr(result, "text", None)  # what visual understanding said
    if as_json:
        print(json.dumps({"module": tool.name, "backend": result.backend, "artifacts": rows,
                          **({"text": text} if text is not None else {})}))
        return
    if text is not None:
        out.print(text, highlight=False, markup=False)
    if rows or text is None:
        table = Table("kind", "path", title=f"{tool.name} ({result.backend})")
        for row in rows:
            table.add_row(row["kind"], row["path"])
        out.print(table)


@app.command()
@clear_errors
def demo(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """The main job, in plain English: segment the cup in scikit-image's coffee photo, make it blue, blur the
    background (two turns planned by the built-in mini planner)."""
    from agent.demo import TURNS, run_demo
    from memory import ArtifactStore
    from schemas import VitronSettings

    settings = VitronSettings()
    with progress_bar(enabled=not as_json) as progress:
        result = run_demo(settings, progress)
    store = ArtifactStore.from_settings(settings)
    named = {"photo": result.photo, "mask": result.mask, **result.edits}
    rows = {name: str(store.path(ref)) for name, ref in named.items()}
    if as_json:
        print(json.dumps(rows))
        return
    for text, plan in zip(TURNS, result.plans, strict=True):
        out.print(f"[bold]you:[/bold] {text}\n[dim]planner:[/dim] {plan}", highlight=False)
    table = Table("result", "file", title="vitron demo: the cup in skimage.data.coffee()")
    for name, path in rows.items():
        table.add_row(name, path)
    out.print(table)
    out.print(f"[dim]artifact store: {store.root}; session {result.session_id} "
              f"(vitron sessions show {result.session_id[:8]})[/dim]")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

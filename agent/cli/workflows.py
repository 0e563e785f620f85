"""`vitron workflow …`: validate, describe, run and batch workflow files; list the blocks to compose with. Parsing
and printing only: the engine is `workflows`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .console import clear_errors, err, out

workflow_app = typer.Typer(help="Declarative workflows: validate, describe, run, batch; the blocks to compose with.",
                           no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="A workflow file (YAML or JSON), or a saved workflow's name.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", "-i", help="NAME=VALUE: a file for an image, video or mask input, x1,y1,x2,y2 for a region, "
    "a number or text. Repeat for each input.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="NAME=VALUE for a value input (text, number).")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse steps already run on the same inputs.")]


def _load(file: Path):
    from workflows import load_workflow

    return load_workflow(file)


def _assignments(*groups: list[str] | None, option: str = "--input") -> dict[str, str]:
    from workflows.inputs import parse_assignment

    return dict(parse_assignment(text, option) for group in groups for text in group or [])


@workflow_app.command("validate")
@clear_errors
def validate_cmd(file: FileArg, as_json: JsonFlag = False) -> None:
    """Check a workflow: modules, selectors, kinds, defaults and cycles, before anything runs (exit 2 on an error,
    naming the step and field)."""
    with _load(file) as flow:
        compiled = flow.validate()
    if as_json:
        print(json.dumps({"ok": True, "steps": [s.name for s in compiled.steps]}))
        return
    out.print(f"[green]ok[/green]: {len(compiled.steps)} steps, in the order "
              + " → ".join(s.name for s in compiled.steps), highlight=False)


@workflow_app.command("describe")
@clear_errors
def describe_cmd(file: FileArg, as_json: JsonFlag = False) -> None:
    """A workflow's inputs and outputs with their kinds, and its steps."""
    with _load(file) as flow:
        described = flow.describe()
    if as_json:
        print(json.dumps(described))
        return
    table = Table("input", "kind", "default", "description", title=described["name"])
    for name, spec in described["inputs"].items():
        table.add_row(name, spec["kind"], "" if spec["required"] else json.dumps(spec["default"]), spec["description"])
    out.print(table)
    table = Table("output", "kind", "from")
    for name, spec in described["outputs"].items():
        table.add_row(name, spec["kind"], spec["from"])
    out.print(table)


@workflow_app.command("blocks")
@clear_errors
def blocks_cmd(as_json: JsonFlag = False) -> None:
    """Every tool as a block (`name@vN`): its inputs and outputs with kinds, and which outputs feed which inputs."""
    from workflows.kinds import blocks

    described = blocks()
    if as_json:
        print(json.dumps(described))
        return
    table = Table("block", "inputs", "outputs")
    for block in described:
        table.add_row(block["type"], ", ".join(f"{f['name']}: {f['kind']}" + ("" if f["required"] else "?")
                                               for f in block["inputs"] if f["name"] != "signal"),
                      ", ".join(f"{f['name']}: {f['kind']}" for f in block["outputs"]))
    out.print(table)


class _StepBars:
    """A rich bar per running step (per item and step in a batch), fed by the run's events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[Any, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        key = (event.get("item"), event.get("step"))
        label = (f"#{event['item'] + 1} " if event.get("item") is not None else "") + str(event.get("step"))
        if kind == "step_started":
            self.tasks[key] = self.progress.add_task(f"{label} {event['module']}", total=1.0)
        elif kind == "progress" and key in self.tasks:
            self.progress.update(self.tasks[key], completed=event["fraction"],
                                 description=f"{label} {event['message']}")
        elif kind == "cached":
            self.progress.console.print(f"[dim]{label}: {event['module']} from the cache[/dim]", highlight=False)
        elif kind in ("step_finished", "step_failed") and key in self.tasks:
            self.progress.remove_task(self.tasks.pop(key))
            if kind == "step_failed":
                self.progress.console.print(f"[red]{label} failed:[/red] {event['error']}", highlight=False)


def _bars() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=err, transient=True)


@workflow_app.command("run")
@clear_errors
def run_cmd(file: FileArg, inputs: InputOpt = None, values: SetOpt = None, cache: CacheOpt = True,
            as_json: JsonFlag = False) -> None:
    """Run a workflow once. `--json`: one object whose `outputs` maps each output to {kind, path, sha256}."""
    given = _assignments(inputs, values)
    with _load(file) as flow:
        flow.validate()
        if as_json:
            result = flow.run(given, cache=cache)
        else:
            with _bars() as progress:
                result = flow.run(given, cache=cache, on_event=_StepBars(progress))
        shown = result.to_json()
    if as_json:
        print(json.dumps(shown))
    else:
        table = Table("output", "kind", "file or value")
        for name, value in shown["outputs"].items():
            table.add_row(name, value["kind"] or "", value.get("path") or json.dumps(value.get("value")))
        out.print(table)
        for step, data in shown["steps"].items():
            if data["status"] != "succeeded":
                err.print(f"[red]step {step} {data['status']}:[/red] {data.get('error')}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@workflow_app.command("batch")
@clear_errors
def batch_cmd(
    file: FileArg,
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="NAME=GLOB, NAME=FOLDER or NAME=FILE for an artifact input (one item per file); "
        "NAME=VALUE for the rest (every item); or a JSONL manifest (one JSON object of inputs per line).")] = None,
    values: SetOpt = None,
    parallel: Annotated[int, typer.Option(min=1, help="Items run at a time.")] = 2,
    restart: Annotated[bool, typer.Option(help="Do every item again, not only those not done.")] = False,
    cache: CacheOpt = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per item.")] = False,
) -> None:
    """Run a workflow over many inputs. Each item's status and outputs are recorded; running the same batch again
    does only the items not done. A failing item is recorded and the batch goes on (exit 1 if any failed)."""
    from workflows.batch import expand_items

    manifests = [text for text in inputs or [] if "=" not in text]
    with _load(file) as flow:
        compiled = flow.validate()
        items = expand_items(compiled.inputs, _assignments([t for t in inputs or [] if "=" in t], values),
                             manifests)
        if as_json:
            result = flow.batch(items, parallel=parallel, restart=restart, cache=cache)
        else:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err, transient=True) as progress:
                task = progress.add_task(f"{flow.name}: {len(items)} items", total=len(items))

                def on_event(event: dict[str, Any]) -> None:
                    if event["event"] == "batch_started":
                        progress.update(task, total=event["todo"], description=f"{flow.name}: {event['todo']} of "
                                                                             f"{event['items']} items to do")
                    elif event["event"] == "item_finished":
                        progress.advance(task)
                        if event["status"] == "failed":
                            progress.console.print(f"[red]item {event['position'] + 1} failed:[/red] "
                                                   f"{_error_text(event['error'])}", highlight=False)

                result = flow.batch(items, parallel=parallel, restart=restart, cache=cache, on_event=on_event)
    if as_json:
        for item in result.items:
            sys.stdout.write(json.dumps(item.to_dict()) + "\n")
    else:
        done_before = len(result.items) - result.ran
        out.print(f"batch {result.batch_id[:12]}: {result.succeeded} of {len(result.items)} items succeeded"
                  + (f" ({done_before} done before this run)" if done_before else ""), highlight=False)
        for item in result.failures:
            err.print(f"[red]item {item.position + 1}[/red] {json.dumps(item.inputs)}: {_error_text(item.error)}",
                      highlight=False)
    if result.failures:
        raise typer.Exit(1)


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    text = f"{error['field']}: {error['problem']}" if error.get("field") else str(error.get("problem"))
    return f"{text} ({error['fix']})" if error.get("fix") else text


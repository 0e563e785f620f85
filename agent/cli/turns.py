"""`vitron run`, `vitron plan` and `vitron chat`: turns through the agent, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .console import clear_errors, err, fail, out

SessionOpt = Annotated[str | None, typer.Option("--session", help="Go on with this session (id or a prefix).")]
ImageOpt = Annotated[Path | None, typer.Option(help="An image for this turn.")]
VideoOpt = Annotated[Path | None, typer.Option(help="A video for this turn.")]
BoxOpt = Annotated[str | None, typer.Option(help="A region box x1,y1,x2,y2 in pixels.")]
PlannerOpt = Annotated[str | None, typer.Option(help="mini, explicit, chat or vitron (default VITRON_PLANNER).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _agent(planner: str | None):
    from agent.api import VitronAgent

    return VitronAgent.from_settings(planner=planner)


class _Bars:
    """One rich bar per running step, fed by the turn's events."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[int, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind, position = event.get("event"), event.get("position")
        if kind == "plan":
            steps = ", ".join(s["module"] for s in event["steps"])
            self.progress.console.print(f"[dim]plan: {steps}[/dim]", highlight=False)
        elif kind == "step_started":
            self.tasks[position] = self.progress.add_task(f"{position}. {event['module']}", total=1.0)
        elif kind == "progress" and position in self.tasks:
            self.progress.update(self.tasks[position], completed=event["fraction"],
                                 description=f"{position}. {event['message']}")
        elif kind in ("step_finished", "step_failed") and position in self.tasks:
            done = kind == "step_finished"
            self.progress.update(self.tasks[position], completed=1.0 if done else None,
                                 description=f"{position}. {event['module']}: "
                                             + (f"done in {event['seconds']:.2f}s" if done else event["error"]))


def _turn(session, text: str | None, image, video, box, show_bars: bool):
    from schemas import parse_box

    region = parse_box(box) if box else None
    if not show_bars:
        for _ in session.stream(text, image=image, video=video, region=region):
            pass
        return session.reply()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        bars = _Bars(progress)
        for event in session.stream(text, image=image, video=video, region=region):
            bars(event)
    return session.reply()


def _reply_json(reply, store) -> dict[str, Any]:
    return {"session": reply.session_id, "reply": reply.text,
            "steps": [{"module": s.module, "status": s.status, "command": s.command} for s in reply.steps],
            "artifacts": [{"kind": a.ref.kind, "path": str(store.path(a.ref)), "sha256": a.ref.sha256,
                           "alias": a.alias} for a in reply.artifacts],
            "approval": reply.approval}


def _print_reply(reply, store) -> None:
    out.print(reply.text, highlight=False)
    if reply.artifacts:
        table = Table("alias", "kind", "made by", "path")
        for a in reply.artifacts:
            table.add_row("@" + a.alias, a.ref.kind, a.made_by, str(store.path(a.ref)))
        out.print(table)
    if reply.approval:
        steps = ", ".join(f"{s['position']}. {s['module']}" for s in reply.approval.get("steps", []))
        out.print(f"[yellow]waiting for approval of {steps}[/yellow]")
    out.print(f"[dim]session {reply.session_id}[/dim]")


@clear_errors
def run_cmd(
    text: Annotated[str | None, typer.Argument(help="The turn. Leave out with --session to resume its "
                                                    "unfinished turn.")] = None,
    session: SessionOpt = None, image: ImageOpt = None, video: VideoOpt = None, box: BoxOpt = None,
    planner: PlannerOpt = None, as_json: JsonOpt = False,
) -> None:
    """Run one turn (or resume a session's interrupted turn) and print the reply and what it made."""
    if text is None and session is None:
        fail("give the turn's text (or --session ID to resume that session's unfinished turn)", 2)
    with _agent(planner) as agent:
        chat = agent.session(session)
        reply = _turn(chat, text, image, video, box, show_bars=not as_json)
        if as_json:
            print(json.dumps(_reply_json(reply, agent.memory.store)))
        else:
            _print_reply(reply, agent.memory.store)


@clear_errors
def plan_cmd(
    text: Annotated[str, typer.Argument(help="The request to plan.")],
    image: ImageOpt = None, video: VideoOpt = None, box: BoxOpt = None, planner: PlannerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the plan a planner makes for a request, without running anything."""
    from agent.service import plan_request
    from schemas import parse_box

    plan = plan_request(text, image=image, video=video, region=parse_box(box) if box else None, planner=planner)
    if as_json:
        print(json.dumps(plan))
        return
    if plan["reply"]:
        out.print(plan["reply"], highlight=False)
    table = Table("step", "module", "instruction", "inputs")
    for number, step in enumerate(plan["steps"], start=1):
        table.add_row(str(number), step["module"], step["instruction"], json.dumps(step["inputs"]))
    out.print(table)


@clear_errors
def chat_cmd(session: SessionOpt = None, planner: PlannerOpt = None) -> None:
    """An interactive session: type turns; `/image PATH` or `/video PATH` attaches a file to the next turn;
    `/quit` ends (the session stays and `--session ID` goes on with it)."""
    from schemas import VitronError

    with _agent(planner) as agent:
        chat = agent.session(session)
        out.print(f"[dim]session {chat.id}; /image PATH, /video PATH, /box x1,y1,x2,y2, /quit[/dim]")
        if chat.unfinished:
            out.print("[yellow]resuming the unfinished turn[/yellow]")
            _print_reply(_turn(chat, None, None, None, None, show_bars=True), agent.memory.store)
        attach: dict[str, Any] = {}
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                break
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            command, _, rest = line.partition(" ")
            if command in ("/image", "/video", "/box"):
                attach[command[1:]] = Path(rest.strip()) if command != "/box" else rest.strip()
                continue
            try:
                reply = _turn(chat, line, attach.get("image"), attach.get("video"), attach.get("box"),
                              show_bars=True)
            except VitronError as exc:
                err.print(f"[red]error:[/red] {exc.message}", highlight=False)
                continue
            attach = {}
            _print_reply(reply, agent.memory.store)

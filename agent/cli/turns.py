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
PointsOpt = Annotated[str | None, typer.Option(help='Region points "x,y,label;..." (label 1 object, 0 not).')]
ScribbleOpt = Annotated[Path | None, typer.Option(help="Region scribble: a mask image painted on the object.")]
PlannerOpt = Annotated[str | None, typer.Option(help="mini, explicit, chat or vitron (default VITRON_PLANNER).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _agent(planner: str | None):
    from agent.preflight import check_services

    check_services()  # a broker that is down is one line now, before the engine loads
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
        if kind == "step_finished":
            for note in event.get("notes", ()):  # e.g. a signal left out: the step ran, the user should know
                self.progress.console.print(f"[yellow]{position}. {note}[/yellow]", highlight=False)


def _follow(events: Any, show_bars: bool) -> None:
    """Read a turn's events to its end, with a bar per step on stderr."""
    if not show_bars:
        for _ in events:
            pass
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        bars = _Bars(progress)
        for event in events:
            bars(event)


def _turn(session, text: str | None, image, video, region, show_bars: bool, wait_s: float = 0.0):
    turn = session.stream(text, image=image, video=video, region=region, wait_s=wait_s)
    _follow(turn, show_bars)
    return turn.reply


def _answer(session, action: str, show_bars: bool):
    turn = session.stream_answer(action)
    _follow(turn, show_bars)
    return turn.reply


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
    points: PointsOpt = None, scribble: ScribbleOpt = None,
    approve: Annotated[bool, typer.Option("--approve", help="Answer the session's approval pause: run the "
                                                            "waiting steps.")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Answer the session's approval pause: skip the waiting "
                                                      "steps.")] = False,
    planner: PlannerOpt = None, as_json: JsonOpt = False,
    wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", min=0,
                                        help="While another process runs a turn of the session, wait up to "
                                             "SECONDS for it to end (default: refuse at once).")] = 0.0,
) -> None:
    """Run one turn (or resume a session's interrupted turn, or answer its approval pause) and print the reply and
    what it made. Exits 3 when a step failed, 2 when no plan could run or the session is busy (the reply is printed
    first)."""
    if text is None and session is None:
        fail("give the turn's text (or --session ID to resume that session's unfinished turn)", 2)
    if approve and deny:
        fail("give --approve or --deny, not both", 2)
    answer = "approve" if approve else "deny" if deny else None
    if answer and (session is None or text is not None):
        fail(f"--{answer} answers a session's approval pause: give --session ID and no text", 2)
    with _agent(planner) as agent:
        from agent.service import read_region

        chat = agent.session(session)
        if answer:
            reply = _answer(chat, answer, show_bars=not as_json)
        else:
            region = read_region(agent.memory.store, box=box, points=points, scribble=scribble)
            reply = _turn(chat, text, image, video, region, show_bars=not as_json, wait_s=wait)
        if as_json:
            print(json.dumps(_reply_json(reply, agent.memory.store)))
        else:
            _print_reply(reply, agent.memory.store)
    if reply.refused is not None:
        raise typer.Exit(2)
    if any(step.status == "failed" for step in reply.steps):
        raise typer.Exit(3)


@clear_errors
def plan_cmd(
    text: Annotated[str, typer.Argument(help="The request to plan.")],
    session: Annotated[str | None, typer.Option("--session", help="Plan it as this session's next turn (its "
                                                                  "history and artifacts).")] = None,
    image: ImageOpt = None, video: VideoOpt = None, box: BoxOpt = None, points: PointsOpt = None,
    scribble: ScribbleOpt = None, planner: PlannerOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show the plan a planner makes for a request, without running anything."""
    from agent.service import plan_request, read_region
    from memory import ArtifactStore

    region = read_region(ArtifactStore.from_settings(), box=box, points=points, scribble=scribble)
    plan = plan_request(text, image=image, video=video, region=region, planner=planner, session=session)
    if as_json:
        print(json.dumps(plan))
        return
    if plan["reply"]:
        out.print(plan["reply"], highlight=False)
    if plan["operation"]:
        out.print(f"{plan['operation']['kind']} {plan['operation']['target']}", highlight=False)
    if plan["confirm"]:
        out.print("[dim]asks first: the steps run only if the next turn says yes[/dim]")
    table = Table("step", "module", "instruction", "inputs")
    for number, step in enumerate(plan["steps"], start=1):
        table.add_row(str(number), step["module"], step["instruction"], json.dumps(step["inputs"]))
    out.print(table)


CHAT_HELP = """\
  /image PATH, /video PATH     attach a file to the next turn
  /box x1,y1,x2,y2             the next turn's region: a box,
  /points x,y,1;x,y,0          or points (label 1 on the object, 0 beside it),
  /scribble PATH               or a mask image painted on the object
  /approve, /deny              answer an approval pause
  /help                        this list
  /quit                        end (the session stays: vitron chat --session ID goes on with it)"""


@clear_errors
def chat_cmd(session: SessionOpt = None, planner: PlannerOpt = None) -> None:
    """An interactive session: type turns; `/image PATH` or `/video PATH` attaches a file to the next turn, `/box`,
    `/points` or `/scribble` gives its region, `/approve` or `/deny` answers an approval pause, `/help` lists the
    commands, `/quit` ends (the session stays and `--session ID` goes on with it)."""
    from agent.service import read_region
    from schemas import InvalidInput, VitronError

    with _agent(planner) as agent:
        store = agent.memory.store
        chat = agent.session(session)
        out.print(f"[dim]session {chat.id}; /help lists the commands[/dim]")
        if chat.unfinished:
            out.print("[yellow]resuming the unfinished turn[/yellow]")
            _print_reply(_turn(chat, None, None, None, None, show_bars=True), store)
        attached: dict[str, Any] = {}  # what the next turn takes: image, video, region
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                break
            command, _, rest = line.partition(" ")
            rest = rest.strip()
            if not line:
                continue
            if command in ("/quit", "/exit"):
                break
            if command == "/help":
                out.print(CHAT_HELP, highlight=False, markup=False)
                continue
            try:
                if command in ("/image", "/video"):
                    attached[command[1:]] = _existing_file(rest, command)
                elif command in ("/box", "/points", "/scribble"):
                    given = _existing_file(rest, command) if command == "/scribble" else rest
                    attached["region"] = read_region(store, **{command[1:]: given})
                elif command in ("/approve", "/deny"):
                    _print_reply(_answer(chat, command[1:], show_bars=True), store)
                elif command.startswith("/"):
                    raise InvalidInput(f"no command {command}", field="command", fix="/help lists the commands")
                else:
                    turn, attached = attached, {}  # a turn takes its attachments, whatever becomes of it
                    reply = _turn(chat, line, turn.get("image"), turn.get("video"), turn.get("region"),
                                  show_bars=True)
                    _print_reply(reply, store)
            except VitronError as exc:
                err.print(f"[red]error:[/red] {exc.message}", highlight=False)


def _existing_file(text: str, command: str) -> Path:
    """The file a chat command names; a clear error (and nothing attached) when there is none."""
    from schemas import InvalidInput

    path = Path(text).expanduser()
    if not text or not path.is_file():
        raise InvalidInput(f"no file {text!r}" if text else "no file was given", field=command[1:],
                           fix=f"{command} PATH, the path of an existing file")
    return path

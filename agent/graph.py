"""The turn as a LangGraph state machine: plan (validated in the same node) → run_next / run_step → review →
respond. A plan edited at an approval pause goes through `validate`; the node that runs a chain's last step
answers at once, a superstep sooner. A plan's session operation (undo, show) is done in `plan`, with no job; a
plan the planner is not sure of (`Plan.confirm`) ends the turn with its question, and the guess waits in the
thread's state (`pending`) for the next turn: a yes runs it without the planner, a no drops it. A step that asks which
object its command means ends the turn with that question, and the turn's plan waits (`which`): an answer that only
picks one ("the right one") is joined to that step's command and the plan runs again, without the planner.

The nodes are LangGraph's; everything about plans is the plan engine's (`workflows`): the planner's invocations
are compiled (inputs resolved, checked against the tool schemas) into compiled steps, `workflows.rounds` says which
steps are ready, and `workflows.StepRunner` runs each as a job and emits its events, with session memory as its
recorder (`agent.recorder`).

State holds refs and small values only (docs/ARCHITECTURE.md, rule 1): compiled steps as JSON whose tensors are
safetensors refs, step results as artifact refs. The checkpointer comes from `memory/`, the session id is
the thread id, so a process killed mid-plan resumes the turn from its last checkpoint and the steps that
finished are not run again. Independent steps of a plan run in parallel (one `Send` per ready step); a
step waits for the steps whose outputs it reads. Events go to the sink the run's config names (`EVENTS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, TypedDict

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt

from memory import ArtifactEntry, SessionMemory, restored
from schemas import (
    AliasNotFound,
    ArtifactRef,
    CompiledStep,
    Invocation,
    Plan,
    PlanStep,
    SessionOperation,
    StepOutput,
    VitronError,
    VitronSettings,
    as_region,
)
from tools.executors import Executor
from tools.referring import picks
from workflows import (
    Ambiguous,
    RunControl,
    StartedStep,
    StepResult,
    StepRunner,
    compile_invocations,
    input_hashes,
    rounds,
    saved_workflow,
    saved_workflows,
)

from .planners.base import Planner, PlanRequest, StepOutcome
from .planners.signals import signal_source, with_signal_source
from .recorder import SessionRecorder


def merge_results(old: dict[str, dict] | None, new: dict[str, dict] | None) -> dict[str, dict]:
    """Step results accumulate within a turn; a new turn resets them by writing None."""
    if new is None:
        return {}
    return {**(old or {}), **new}


class TurnState(TypedDict, total=False):
    session_id: str
    turn_id: int  # the user's turn row
    text: str
    inputs: dict[str, dict]  # this turn's uploads: alias → ref JSON
    region: dict | None
    round: int  # 1, 2… while the planner plans again after seeing results
    attempt: int  # 1, 2… while the planner corrects a refused plan
    feedback: str | None  # why the last plan was refused
    proposal: list[dict]  # a plan edited at an approval pause, to compile: invocation JSON (tensors as refs)
    steps: list[dict]  # the turn's compiled steps (`schemas.CompiledStep` JSON): plan step N of the turn is named N,
    # a saved workflow's steps it calls N.name; positions count them all in order
    step_ids: dict[str, int]  # step name → its row in session memory
    round_start: int  # index in `steps` where this round's plan begins
    results: Annotated[dict[str, dict], merge_results]  # step name → `StepResult` JSON
    approved: list[int]  # heavy steps the user let run
    replies: list[str]  # the planner's words, one per round
    final: str | None  # the reply, once known (or a question, or why nothing ran)
    refused: str | None  # why no plan of this turn could run (the reply says it too)
    shown: list[str]  # aliases the turn answers with that no step made: what an undo brought back, what show showed
    pending: dict | None  # a guess the planner asked about (`Plan` JSON, tensors as refs), kept for the next turn:
    # a new turn's input leaves it out, so it outlives the turn in the thread's checkpoints until a plan reads it
    which: dict | None  # a plan whose step asked which object its command means: {"steps": [invocation JSON],
    # "position": the asking step's}, kept for the next turn like `pending`


@dataclass
class Services:
    """What the nodes use; built once per agent, never stored in the state."""

    memory: SessionMemory
    planner: Planner
    settings: VitronSettings
    executor: Executor  # where steps run: in this process, or on Celery workers
    # Jobs started before their step's node, by (session id, step name); a session runs one turn at a time.
    ahead: dict[tuple[str, str], StartedStep] = field(default_factory=dict)
    # What stops the turn under way, by session (`AgentSession.cancel_turn`).
    controls: dict[str, RunControl] = field(default_factory=dict)

    def control(self, session_id: str) -> RunControl:
        return self.controls.setdefault(session_id, RunControl())

    def new_turn(self, session_id: str) -> None:
        self.controls[session_id] = RunControl()


EVENTS = "vitron_events"
"""The config key of the run's event sink: a callable that takes each event (a dict) as it happens."""


def _sink() -> Callable[[dict[str, Any]], None]:
    return get_config()["configurable"].get(EVENTS) or (lambda event: None)


def _emit(event: str, **data: Any) -> None:
    _sink()({"event": event, **data})


def build_graph(services: Services, checkpointer: Any = None) -> Any:
    memory, planner, settings, executor = services.memory, services.planner, services.settings, services.executor
    ahead = services.ahead
    store = memory.store
    runner = StepRunner(executor, store, settings)
    corrects = getattr(planner, "corrects", True)

    def saved(name: str) -> Any:
        return saved_workflow(name, settings, store)

    # -- plan ----------------------------------------------------------------------------------

    def plan(state: TurnState) -> dict[str, Any]:
        sid = state["session_id"]
        table = _artifact_table(sid)
        region = _region(state.get("region"))
        pending, which = state.get("pending"), state.get("which")
        answered = yes_or_no(state["text"]) if pending else None
        update: dict[str, Any] = {"pending": None, "which": None}  # a guess or a question waits for the next plan only
        if answered is False:
            return {**update, "final": "All right, I won't. What did you mean?"}
        if answered:  # the user said yes to the guess: it runs as this turn's plan, no planner call
            proposal = Plan.model_validate(pending, context={"store": store})
        elif which and picks(state["text"], which["steps"][which["position"] - 1].get("command", "")):
            proposal = _picked(which, state["text"], store)  # "the right one": the asked step's command, refined
        else:
            request = PlanRequest(
                text=state["text"], history=lambda: memory.history(sid), artifacts=table,
                inputs={a: ArtifactRef.model_validate(r) for a, r in state.get("inputs", {}).items()},
                region=region, store=store, round=state.get("round", 1),
                results=_outcomes(state), feedback=state.get("feedback"), attempt=state.get("attempt", 1),
                workflows=tuple(saved_workflows(settings)),
            )
            try:
                proposal = with_signal_source(planner.plan(request), signal_source(planner))
            except VitronError as exc:
                return {**update, **_refused(state, exc.message)}
        invocations = _on_drawn_frame([s.invocation for s in proposal.steps], region)
        if len(invocations) > settings.max_plan_steps:  # before anything is compiled, recorded or checkpointed
            return {**update, **_refused(state, f"the plan has {len(invocations):,} steps, more than the "
                                                f"{settings.max_plan_steps} allowed (VITRON_MAX_PLAN_STEPS)")}
        if proposal.confirm and (invocations or proposal.operation):
            return {**update, **ask(proposal, invocations)}
        replies = state.get("replies", [])
        if proposal.operation is not None and not state.get("shown"):  # one operation a turn, even if it replans
            try:
                entry = operate(state, proposal.operation, table())
            except VitronError as exc:
                return {**update, **_refused(state, exc.message)}
            update["shown"] = [entry.alias]
            table = _artifact_table(sid)  # an undo added a row
            default = (f"Back to @{restored(table(), entry).alias}." if proposal.operation.kind == "undo"
                       else f"Here is @{entry.alias}.")
            replies = [*replies, proposal.reply or default]
        elif proposal.reply:
            replies = [*replies, proposal.reply]
        if invocations:
            _emit("plan", round=state.get("round", 1), reply=proposal.reply,
                  steps=[{"module": i.module, "command": i.command} for i in invocations])
        # Compiled in this node: a superstep less before the first job starts.
        return {**update, "replies": replies, "feedback": None, **settle(state, invocations, table)}

    def ask(proposal: Plan, invocations: list[Invocation]) -> dict[str, Any]:
        """The planner is not sure: the turn answers with its question, and its guess waits for the user's yes."""
        guess = Plan(steps=[PlanStep(invocation=i) for i in invocations], operation=proposal.operation)
        return {"pending": guess.model_dump(mode="json", context={"store": store}, exclude_none=True),
                "final": proposal.reply or _guess_question(guess)}

    def operate(state: TurnState, operation: SessionOperation, table: tuple[ArtifactEntry, ...]) -> ArtifactEntry:
        """An undo's new row, or the artifact a show answers with; no job runs."""
        if operation.kind == "undo":
            return memory.record_undo(state["session_id"], operation.target, turn_id=state["turn_id"])
        name = operation.target.lstrip("@")
        found = next((e for e in table if e.alias == name), None)
        if found is None:
            raise AliasNotFound(f"this session has no artifact @{name} to show", field="operation.target",
                                fix="name one of " + ", ".join("@" + e.alias for e in table[-12:]) if table
                                else "this session has no artifacts yet")
        return found

    def _refused(state: TurnState, message: str) -> dict[str, Any]:
        """A refused plan goes back to the planner a bounded number of times, then becomes the reply."""
        attempt = state.get("attempt", 1)
        if corrects and attempt <= settings.max_corrections:
            return {"proposal": [], "feedback": message, "attempt": attempt + 1}
        return {"proposal": [], "feedback": None, "final": f"I could not make a plan that runs: {message}",
                "refused": message}

    def after_plan(state: TurnState) -> Any:
        if state.get("final"):
            return "respond"
        return "plan" if state.get("feedback") else route(state)

    # -- compile -------------------------------------------------------------------------------

    def _artifact_table(session_id: str) -> Callable[[], tuple]:
        """The session's artifact table, read once when first asked for (a plan and its compiling share it)."""
        return cache(lambda: tuple(memory.artifact_table(session_id)))

    def validate(state: TurnState) -> dict[str, Any]:
        """A plan the user edited at an approval pause."""
        invocations = [Invocation.model_validate(j, context={"store": store}) for j in state["proposal"]]
        return settle(state, invocations, _artifact_table(state["session_id"]))

    def settle(state: TurnState, invocations: Sequence[Invocation], table: Callable[[], tuple]) -> dict[str, Any]:
        """Compile the plan against the tools' schemas and the session's artifacts, start its first job, and record
        its steps. A refused plan goes back to the planner (`feedback`); a tie between artifacts becomes a
        question to the user (`final`)."""
        sid = state["session_id"]
        done = list(state.get("steps", []))
        if not invocations:
            return {"round_start": len(done), "proposal": [], "attempt": 1}
        try:
            compiled = compile_invocations(invocations, table(), store, offset=len(done), workflows=saved,
                                           uploads=_drawn(state))
        except Ambiguous as question:
            return {"proposal": [], "final": question.question}
        except VitronError as exc:
            return _refused(state, exc.message)
        new = [step.model_dump(mode="json", exclude_defaults=True) for step in compiled.steps]
        update = {"steps": done + new, "round_start": len(done), "proposal": [], "attempt": 1}
        start_ahead({**state, **update})  # the first job runs while its steps are recorded
        try:
            positions = _positions([*done, *new])
            rows = memory.record_steps(sid, [_record(step, positions) for step in compiled.steps],
                                       turn_id=state["turn_id"], first_position=len(done) + 1)
        except BaseException:
            cancel_ahead(sid)
            raise
        update["step_ids"] = {**state.get("step_ids", {}), **{s.name: row.id for s, row in
                                                              zip(compiled.steps, rows, strict=True)}}
        return update

    def after_validate(state: TurnState) -> str:
        if state.get("final"):
            return "respond"
        return "plan" if state.get("feedback") else route(state)

    # -- dispatch and run ----------------------------------------------------------------------

    def dispatch(state: TurnState) -> dict[str, Any]:
        steps, status = _round(state), _status(state)
        pending = rounds.pending(steps, status)
        skipped = {s.name: f"step {failed} did not succeed" for s in pending
                   if (failed := rounds.blocked_by(s, status)) is not None}
        ready = [s for s in pending if s.name not in skipped and rounds.is_ready(s, status)]
        approved = list(state.get("approved", []))
        waiting = [s for s in ready if s.heavy and settings.approval and s.position not in approved]
        update: dict[str, Any] = {}
        if waiting:
            # Nothing has been written or launched in this node before the pause: on resume it runs again.
            decision = interrupt({"type": "approval", "steps": [
                {"position": s.position, "module": s.module, "command": s.command} for s in waiting]})
            action = decision.get("action") if isinstance(decision, dict) else decision
            if action == "approve":
                approved += [s.position for s in waiting]
                update["approved"] = approved
            elif action == "edit":
                skipped.update({s.name: "replaced by an edited plan" for s in pending})
                update["proposal"] = [i.model_dump(mode="json", context={"store": store}, exclude_none=True)
                                      for i in decision["invocations"]]
            else:
                skipped.update({s.name: "not approved" for s in waiting})
        if skipped:
            recorder = SessionRecorder(memory, state.get("step_ids", {}))
            update["results"] = {s.name: runner.skip(s, skipped[s.name], recorder=recorder, emit=_sink()).to_json()
                                 for s in pending if s.name in skipped}
        return update

    def route(state: TurnState) -> Any:
        """Where the turn goes once the state is settled: the one ready step straight on (`run_next`, a
        superstep less per step of a chain), several in parallel (one `Send` each, joined at `dispatch`), to
        `dispatch` when a step must be skipped or approved first, or on when nothing is pending."""
        if state.get("final") is not None:
            return END  # answered by the node that ran the last step
        if state.get("proposal"):
            return "validate"  # the user edited the plan at the approval pause
        steps, status = _round(state), _status(state)
        pending = rounds.pending(steps, status)
        if not pending:
            return "review" if planner.replans else "respond"
        if any(rounds.blocked_by(s, status) is not None for s in pending):
            return "dispatch"
        ready = [s for s in pending if rounds.is_ready(s, status)]
        approved = state.get("approved", [])
        if any(s.heavy and settings.approval and s.position not in approved for s in ready):
            return "dispatch"
        if len(ready) == 1:
            return "run_next"
        return [Send("run_step", {"session_id": state["session_id"], "step": s.model_dump(mode="json"),
                                  "step_ids": state.get("step_ids", {}), "outputs": _outputs(state)})
                for s in ready] or "dispatch"

    def run_next(state: TurnState) -> dict[str, Any]:
        """The one step that is ready (a chain runs here, step after step)."""
        (step,) = rounds.ready(_round(state), _status(state))
        results = state.get("results", {})

        def start_successor(outputs: dict[str, Any]) -> None:
            done = {**results, step.name: {"status": "succeeded", "outputs": outputs}}
            start_ahead({**state, "results": done})

        result = execute(state["session_id"], step, state.get("step_ids", {}), _outputs(state), start_successor)
        update: dict[str, Any] = {"results": {step.name: result.to_json()}}
        settled = {**state, "results": {**results, **update["results"]}}
        if route(settled) == "respond":  # the turn's last step: answer here, a superstep sooner
            update.update(answer(settled))
        return update

    def run_step(task: dict[str, Any]) -> dict[str, Any]:
        """One of several steps that run in parallel (a `Send` each)."""
        step = CompiledStep.model_validate(task["step"])
        result = execute(task["session_id"], step, task["step_ids"], task["outputs"])
        return {"results": {step.name: result.to_json()}}

    def start_ahead(state: TurnState) -> None:
        """When the state a node is about to write sends the turn on to one ready step (`run_next`), start that
        step's job now: the node's own bookkeeping and the superstep between the two nodes then overlap the
        job instead of delaying it. `run_next` picks the job up by its step's name; only jobs that need no
        approval start this way, and a crash in between just runs the step again after resume."""
        if route(state) != "run_next":
            return
        (step,) = rounds.ready(_round(state), _status(state))
        try:
            started = runner.start(step, _outputs(state), session_id=state["session_id"])
        except Exception:  # only a head start: the step's own node meets the same error and reports it as its own
            return
        ahead[(state["session_id"], step.name)] = started

    def cancel_ahead(session_id: str) -> None:
        """Cancel the jobs started ahead for steps of this session that will not run."""
        for key in [k for k in ahead if k[0] == session_id]:
            ahead.pop(key).cancel()

    def execute(session_id: str, step: CompiledStep, step_ids: dict[str, int], outputs: dict[str, dict],
                on_success: Callable[[dict[str, Any]], None] | None = None) -> StepResult:
        recorder = SessionRecorder(memory, step_ids)
        control = services.control(session_id)
        started = ahead.pop((session_id, step.name), None)
        if started is not None and (control.skip_reason(step.name) or
                                    started.inputs != input_hashes(step.tool_input(outputs))):
            started.cancel()  # the turn was cancelled, or the job started on other inputs: run it afresh
            started = None
        if (reason := control.skip_reason(step.name)) is not None:
            return runner.skip(step, reason, recorder=recorder, emit=_sink())
        if started is None:
            return runner.run(step, outputs, recorder=recorder, emit=_sink(), session_id=session_id, control=control)
        with control.running(step.name, started):
            return runner.finish(started, recorder=recorder, emit=_sink(), on_success=on_success)

    # -- review and respond --------------------------------------------------------------------

    def review(state: TurnState) -> dict[str, Any]:
        return {"round": state.get("round", 1) + 1, "attempt": 1}

    def after_review(state: TurnState) -> str:
        ran = bool(_round(state))
        if planner.replans and ran and state.get("round", 1) <= settings.max_rounds:
            return "plan"
        return "respond"

    def respond(state: TurnState) -> dict[str, Any]:
        return answer(state)

    def answer(state: TurnState) -> dict[str, Any]:
        """The reply (a question or a refusal already in `final`, else a summary), recorded and sent; the plan kept
        for the answer when a step asked which object it means."""
        cancel_ahead(state["session_id"])  # started ahead for a step this turn never ran
        text = state.get("final") or _summary(state)
        positions = _positions(state.get("steps", []))
        invocations = [_record(CompiledStep.model_validate(s), positions) for s in state.get("steps", [])]
        memory.append_turn(state["session_id"], "assistant", reply=text, invocations=invocations)
        _emit("message", text=text)
        return {"final": text, "which": _which(state, invocations)}

    graph = StateGraph(TurnState)
    graph.add_node("plan", plan)
    graph.add_node("validate", validate)
    graph.add_node("dispatch", dispatch)
    graph.add_node("run_next", run_next)
    graph.add_node("run_step", run_step)
    graph.add_node("review", review)
    graph.add_node("respond", respond)
    graph.add_edge(START, "plan")
    onward = ["run_next", "run_step", "dispatch", "review", "respond", "validate", END]
    graph.add_conditional_edges("plan", after_plan, ["plan", *onward])
    graph.add_conditional_edges("validate", after_validate, ["plan", *onward])
    graph.add_conditional_edges("dispatch", route, onward)
    graph.add_conditional_edges("run_next", route, onward)
    graph.add_edge("run_step", "dispatch")  # parallel steps join here before the turn goes on
    graph.add_conditional_edges("review", after_review, ["plan", "respond"])
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


# -- helpers ---------------------------------------------------------------------------------------


def _region(data: dict | None) -> Any:
    return as_region(data) if data else None


def _on_drawn_frame(invocations: list[Invocation], drawn: Any) -> list[Invocation]:
    """A region the user drew on a later frame of a video keeps its frame in the plan: planners copy the drawn
    region, but the grammar (and a chat model's tool schema) has no place for a frame, so the copy gets it back."""
    if drawn is None or drawn.frame == 0:
        return invocations
    return [i.model_copy(update={"region": drawn}) if i.region is not None and _same_place(i.region, drawn) else i
            for i in invocations]


def _drawn(state: TurnState) -> list[ArtifactRef]:
    """The scribbles drawn for this turn (or for the turn whose guess it says yes to): uploads of the turn, which
    session memory records only once a step reads them, so a plan may give them by ref."""
    regions = [state.get("region"), *((s.get("invocation") or {}).get("region")
                                      for s in (state.get("pending") or {}).get("steps", []))]
    return [ArtifactRef.model_validate(r["mask"]) for r in regions
            if isinstance(r, dict) and r.get("kind") == "scribble"]


def _same_place(region: Any, drawn: Any) -> bool:
    if region.kind != drawn.kind or region.frame not in (0, drawn.frame):
        return False
    if region.kind == "scribble":
        return bool(region.mask.sha256 == drawn.mask.sha256)
    return bool(region.model_dump(exclude={"frame"}) == drawn.model_dump(exclude={"frame"}))


def _round(state: TurnState) -> list[CompiledStep]:
    """This round's compiled steps."""
    return [CompiledStep.model_validate(s) for s in state.get("steps", [])[state.get("round_start", 0):]]


def _status(state: TurnState) -> dict[str, str]:
    return {name: r["status"] for name, r in state.get("results", {}).items()}


def _outputs(state: TurnState) -> dict[str, dict]:
    """The output fields of the turn's steps that succeeded, by step name: what later steps read."""
    return {name: r.get("outputs", {}) for name, r in state.get("results", {}).items() if r["status"] == "succeeded"}


def _positions(steps: list[dict]) -> dict[str, int]:
    return {s["name"]: s["position"] for s in steps}


def _record(step: CompiledStep, positions: dict[str, int]) -> dict[str, Any]:
    """A step as session memory keeps it: the invocation, its inputs as refs or `@P` (the turn's step P)."""
    inputs = {f: f"@{positions[v.step]}" if isinstance(v, StepOutput) else v.model_dump(mode="json",
                                                                                          exclude_none=True)
              for f, v in step.inputs.items()}
    params = dict(step.params)
    record = {"module": step.module, "command": params.pop("command", ""), "inputs": inputs,
              **{key: params.pop(key) for key in ("region", "signal") if key in params}}
    return {**record, "params": params} if params else record


def _outcomes(state: TurnState) -> tuple[StepOutcome, ...]:
    results = state.get("results", {})
    outcomes = []
    for data in state.get("steps", []):
        step = CompiledStep.model_validate(data)
        result = results.get(step.name, {})
        outcomes.append(StepOutcome(
            position=step.position, module=step.module, command=step.command,
            status=result.get("status", "pending"),
            outputs=tuple(r["alias"] for r in result.get("outputs", {}).values() if isinstance(r, dict)
                          and r.get("alias")),
            error=result.get("error"), answer=_answer_of(step.module, result), question=result.get("question")))
    return tuple(outcomes)


def _which(state: TurnState, invocations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The turn's plan and the step that asked which object its command means, for the next turn's answer; None when
    no step asked, or when the plan is not the turn's own list of steps (a saved workflow's, a second round's)."""
    asked = next((outcome for outcome in _outcomes(state) if outcome.question), None)
    steps = state.get("steps", [])
    if asked is None or state.get("round", 1) > 1 or any(str(s["name"]) != str(s["position"]) for s in steps):
        return None
    return {"steps": invocations, "position": asked.position}


def _picked(which: dict[str, Any], text: str, store: Any) -> Plan:
    """The plan that asked, its asking step's command joined with the answer that picks ("segmentation: the red
    object, the right one")."""
    steps = [dict(step) for step in which["steps"]]
    asked = steps[which["position"] - 1]
    asked["command"] = f"{asked.get('command', '')}, {text.strip()}"
    return Plan.model_validate({"steps": [{"invocation": step} for step in steps]}, context={"store": store})


def _answer_of(module: str, result: dict[str, Any]) -> str | None:
    """A step's answer in words: visual understanding's text (a caption, an answer, what it found)."""
    text = result.get("outputs", {}).get("text") if result.get("status") == "succeeded" else None
    return text if module == "visual_understanding" and isinstance(text, str) and text else None


_YES = frozenset({"yes", "yes please", "y", "yep", "sure", "ok", "okay", "do it", "go ahead", "sounds good", "correct",
                  "right"})
_NO = frozenset({"no", "nope", "not that"})
_PUNCTUATION = re.compile(r"[\s.,!?;:…]+")


def yes_or_no(text: str) -> bool | None:
    """How a turn answers a yes-or-no question: True for "yes", "Sure!", "go ahead."…, False for "no", "nope", "not
    that"; None for anything else (a new request). Case and punctuation do not count."""
    words = _PUNCTUATION.sub(" ", text.lower()).strip()
    return True if words in _YES else False if words in _NO else None


def _guess_question(guess: Plan) -> str:
    """A question naming a guess, for a planner that asked without words of its own."""
    doing = [f"{guess.operation.kind} {guess.operation.target}"] if guess.operation else []
    doing += [f"{s.invocation.module}: {s.invocation.command}" if s.invocation.command else s.invocation.module
              for s in guess.steps]
    return f"Shall I run {', then '.join(doing)}?"


def _summary(state: TurnState) -> str:
    """The planner's words, the steps' answers (what visual understanding said), then what was made and what went
    wrong, by alias. A step that asks which object its command means asks it here, instead of failing: the steps
    waiting for it are not listed as skipped."""
    parts = [r for r in state.get("replies", []) if r]
    made, problems, questions = [], [], []
    outcomes = _outcomes(state)
    asked = any(outcome.question for outcome in outcomes)
    for outcome in outcomes:
        if outcome.answer and outcome.answer not in parts:  # a planner that saw the answer may have said it already
            parts.append(outcome.answer)
        if outcome.status == "succeeded":
            made.extend(f"@{alias}" for alias in outcome.outputs)
        elif outcome.question:
            questions.append(outcome.question)
        elif outcome.status in ("failed", "cancelled") or (outcome.status == "skipped" and not asked):
            problems.append(f"step {outcome.position} ({outcome.module}) {outcome.status}: {outcome.error}")
    if made:
        parts.append("Made " + ", ".join(made) + ".")
    parts.extend(problems)
    parts.extend(questions)
    if not parts:
        parts.append("Nothing to do. Write invocations such as "
                     "<module>B</module><instruction>segment the cup</instruction><region>(10, 10, 200, 150)</region>")
    return " ".join(parts)

"""The turn as a LangGraph state machine: plan (validated in the same node) → run_next / run_step → review →
respond. A plan edited at an approval pause goes through `validate`; the node that runs a chain's last step
answers at once, a superstep sooner.

State holds refs and small values only (DESIGN.md rule 1): invocations as JSON whose tensors are
safetensors refs, step results as artifact refs. The checkpointer comes from `memory/`, the session id is
the thread id, so a process killed mid-plan resumes the turn from its last checkpoint and the steps that
finished are not run again. Independent steps of a plan run in parallel (one `Send` per ready step); a
step waits for the steps whose outputs it reads. Events go to the sink the run's config names (`EVENTS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, TypedDict

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt
from pydantic import ValidationError

from memory import SessionMemory
from schemas import ArtifactRef, Invocation, JobCancelled, JobSpec, VitronError, VitronSettings
from tools import get_tool
from tools.base import invalid_input_from
from tools.executors import Executor, JobHandle
from tools.jobs import job_spec

from .planners.base import Planner, PlanRequest, StepOutcome
from .references import Ambiguous, resolve_plan_inputs

_PLACEHOLDER_MEDIA = {"image": "image/png", "mask": "image/png", "video": "video/mp4", "masks": "video/x-matroska"}
_PROGRESS_EVERY_S = 0.5  # how often a running step's progress is written to the database


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
    proposal: list[dict]  # the plan being validated: invocation JSON (tensors as refs)
    steps: list[dict]  # the turn's validated steps: position, module, invocation, inputs, step_id, heavy
    round_start: int  # index in `steps` where this round's plan begins
    results: Annotated[dict[str, dict], merge_results]  # position → status, outputs, error, seconds
    approved: list[int]  # heavy steps the user let run
    replies: list[str]  # the planner's words, one per round
    final: str | None  # the reply, once known (or a question, or why nothing ran)


class _Relay:
    """A job's progress callback that drops reports until the step's node attaches its own."""

    def __init__(self) -> None:
        self._target: Callable[[float, str], None] | None = None

    def attach(self, target: Callable[[float, str], None]) -> None:
        self._target = target

    def __call__(self, fraction: float, message: str) -> None:
        if self._target is not None:
            self._target(fraction, message)


@dataclass
class _Ahead:
    """A step's job, started by the node before the step's own (see `start_ahead`)."""

    spec: JobSpec
    handle: JobHandle
    relay: _Relay
    inputs: dict[str, str]  # input field → sha256 it was started on


@dataclass
class Services:
    """What the nodes use; built once per agent, never stored in the state."""

    memory: SessionMemory
    planner: Planner
    settings: VitronSettings
    executor: Executor  # where steps run: in this process, or on Celery workers
    # Jobs started before their step's node, by (session id, step position); a session runs one turn at a time.
    ahead: dict[tuple[str, int], _Ahead] = field(default_factory=dict)


EVENTS = "vitron_events"
"""The config key of the run's event sink: a callable that takes each event (a dict) as it happens."""


def _sink() -> Callable[[dict[str, Any]], None]:
    return get_config()["configurable"].get(EVENTS) or (lambda event: None)


def _emit(event: str, **data: Any) -> None:
    _sink()({"event": event, **data})


def _placeholder(kind: str) -> ArtifactRef:
    """Stands for a step output that does not exist yet, so the tool's schema can check everything else."""
    return ArtifactRef(sha256="0" * 64, kind=kind, media_type=_PLACEHOLDER_MEDIA[kind])  # type: ignore[arg-type]


def _tool_data(step: dict, refs: dict[str, ArtifactRef], store: Any) -> dict[str, Any]:
    inv = Invocation.model_validate(step["invocation"], context={"store": store})
    data: dict[str, Any] = {**refs}
    if inv.command:
        data["command"] = inv.command
    if inv.region is not None:
        data["region"] = inv.region
    if inv.signal is not None:
        data["signal"] = inv.signal
    return data


def build_graph(services: Services, checkpointer: Any = None) -> Any:
    memory, planner, settings, executor = services.memory, services.planner, services.settings, services.executor
    ahead = services.ahead
    store = memory.store
    corrects = getattr(planner, "corrects", True)

    # -- plan ----------------------------------------------------------------------------------

    def plan(state: TurnState) -> dict[str, Any]:
        sid = state["session_id"]
        table = _artifact_table(sid)
        request = PlanRequest(
            text=state["text"], history=lambda: memory.history(sid), artifacts=table,
            inputs={a: ArtifactRef.model_validate(r) for a, r in state.get("inputs", {}).items()},
            region=_region(state.get("region")), store=store, round=state.get("round", 1),
            results=_outcomes(state), feedback=state.get("feedback"), attempt=state.get("attempt", 1),
        )
        try:
            proposal = planner.plan(request)
        except VitronError as exc:
            return _refused(state, exc.message)
        steps = [s.invocation.model_dump(mode="json", context={"store": store}, exclude_none=True)
                 for s in proposal.steps]
        replies = [*state.get("replies", []), proposal.reply] if proposal.reply else state.get("replies", [])
        if steps:
            _emit("plan", round=state.get("round", 1), reply=proposal.reply,
                  steps=[{"module": s["module"], "command": s.get("command", "")} for s in steps])
        # Validated in this node: a superstep less before the first job starts.
        return {"replies": replies, "feedback": None, **settle({**state, "proposal": steps}, table)}

    def _refused(state: TurnState, message: str) -> dict[str, Any]:
        """A refused plan goes back to the planner a bounded number of times, then becomes the reply."""
        attempt = state.get("attempt", 1)
        if corrects and attempt <= settings.max_corrections:
            return {"proposal": [], "feedback": message, "attempt": attempt + 1}
        return {"proposal": [], "feedback": None, "final": f"I could not make a plan that runs: {message}"}

    def after_plan(state: TurnState) -> Any:
        if state.get("final"):
            return "respond"
        return "plan" if state.get("feedback") else route(state)

    # -- validate ------------------------------------------------------------------------------

    def _artifact_table(session_id: str) -> Callable[[], tuple]:
        """The session's artifact table, read once when first asked for (a plan and its validation share it)."""
        return cache(lambda: tuple(memory.artifact_table(session_id)))

    def validate(state: TurnState) -> dict[str, Any]:
        """A plan the user edited at an approval pause."""
        return settle(state, _artifact_table(state["session_id"]))

    def settle(state: TurnState, table: Callable[[], tuple]) -> dict[str, Any]:
        """Check the proposal against the tools' schemas and the session's artifacts, start its first job, and
        record its steps. A refused plan goes back to the planner (`feedback`); a tie between artifacts
        becomes a question to the user (`final`)."""
        sid = state["session_id"]
        done = list(state.get("steps", []))
        if not state["proposal"]:
            return {"round_start": len(done), "proposal": [], "attempt": 1}
        try:
            invocations = [Invocation.model_validate(j, context={"store": store}) for j in state["proposal"]]
            resolved = resolve_plan_inputs(invocations, table(), offset=len(done))
            for number, (inv, inputs) in enumerate(zip(invocations, resolved, strict=True), start=1):
                tool = get_tool(inv.module)
                refs = {f: v if isinstance(v, ArtifactRef) else _placeholder(f) for f, v in inputs.values.items()}
                try:
                    tool.input_model.model_validate(_tool_data({"invocation": state["proposal"][number - 1]},
                                                               refs, store))
                except ValidationError as exc:
                    raise invalid_input_from(exc, f"step {number} ({tool.name})") from None
        except Ambiguous as question:
            return {"proposal": [], "final": question.question}
        except VitronError as exc:
            return _refused(state, exc.message)
        records = [{**inv_json, "inputs": inputs.to_json()} for inv_json, inputs in zip(state["proposal"], resolved,
                                                                                         strict=True)]
        # The step keeps its resolved inputs only: the planner's spelling of them is in session memory.
        new = [{"position": len(done) + number, "module": inv.module,
                "invocation": {k: v for k, v in inv_json.items() if k != "inputs"}, "inputs": record["inputs"],
                "heavy": get_tool(inv.module).heavy}
               for number, (inv, inv_json, record) in enumerate(zip(invocations, state["proposal"], records,
                                                                    strict=True), start=1)]
        update = {"steps": done + new, "round_start": len(done), "proposal": [], "attempt": 1}
        start_ahead({**state, **update})  # the first job runs while its step is recorded
        try:
            rows = memory.record_steps(sid, records, turn_id=state["turn_id"], first_position=len(done) + 1)
        except BaseException:
            cancel_ahead(sid)
            raise
        for step, row in zip(new, rows, strict=True):
            step["step_id"] = row.id
        return update

    def after_validate(state: TurnState) -> str:
        if state.get("final"):
            return "respond"
        return "plan" if state.get("feedback") else route(state)

    # -- dispatch and run ----------------------------------------------------------------------

    def dispatch(state: TurnState) -> dict[str, Any]:
        results = state.get("results", {})
        pending = [s for s in _round_steps(state) if str(s["position"]) not in results]
        skipped = {}
        for step in pending:
            if (failed := _failed_dep(step, results)) is not None:
                skipped[str(step["position"])] = {"status": "skipped", "error": f"step {failed} did not succeed"}
        ready = [s for s in pending if str(s["position"]) not in skipped and _deps_met(s, results)]
        approved = list(state.get("approved", []))
        waiting = [s for s in ready if s["heavy"] and settings.approval and s["position"] not in approved]
        update: dict[str, Any] = {}
        if waiting:
            # Nothing has been written or launched in this node before the pause: on resume it runs again.
            decision = interrupt({"type": "approval", "steps": [
                {"position": s["position"], "module": s["module"], "command": s["invocation"].get("command", "")}
                for s in waiting]})
            action = decision.get("action") if isinstance(decision, dict) else decision
            if action == "approve":
                approved += [s["position"] for s in waiting]
                update["approved"] = approved
            elif action == "edit":
                for step in pending:
                    skipped[str(step["position"])] = {"status": "skipped", "error": "replaced by an edited plan"}
                update["proposal"] = [i.model_dump(mode="json", context={"store": store}, exclude_none=True)
                                      for i in decision["invocations"]]
            else:
                for step in waiting:
                    skipped[str(step["position"])] = {"status": "skipped", "error": "not approved"}
        for position, result in skipped.items():
            step = next(s for s in state["steps"] if str(s["position"]) == position)
            memory.update_step(step["step_id"], status="cancelled", message=result["error"])
            _emit("step_skipped", position=int(position), module=step["module"], reason=result["error"])
        if skipped:
            update["results"] = skipped
        return update

    def route(state: TurnState) -> Any:
        """Where the turn goes once the state is settled: the one ready step straight on (`run_next`, a
        superstep less per step of a chain), several in parallel (one `Send` each, joined at `dispatch`), to
        `dispatch` when a step must be skipped or approved first, or on when nothing is pending."""
        if state.get("final") is not None:
            return END  # answered by the node that ran the last step
        if state.get("proposal"):
            return "validate"  # the user edited the plan at the approval pause
        results = state.get("results", {})
        pending = [s for s in _round_steps(state) if str(s["position"]) not in results]
        if not pending:
            return "review" if planner.replans else "respond"
        approved = state.get("approved", [])
        if any(_failed_dep(s, results) is not None for s in pending):
            return "dispatch"
        ready = _ready(state)
        if any(s["heavy"] and settings.approval and s["position"] not in approved for s in ready):
            return "dispatch"
        if len(ready) == 1:
            return "run_next"
        return [Send("run_step", {"session_id": state["session_id"], "step": s, "refs": _refs_for(s, results)})
                for s in ready] or "dispatch"

    def run_next(state: TurnState) -> dict[str, Any]:
        """The one step that is ready (a chain runs here, step after step)."""
        results = state.get("results", {})
        (step,) = _ready(state)

        def start_successor(outputs: dict[str, dict]) -> None:
            done = {**results, str(step["position"]): {"status": "succeeded", "outputs": outputs}}
            start_ahead({**state, "results": done})

        update = execute(state["session_id"], step, _refs_for(step, results), start_successor)
        settled = {**state, "results": {**results, **update["results"]}}
        if route(settled) == "respond":  # the turn's last step: answer here, a superstep sooner
            update["final"] = answer(settled)
        return update

    def run_step(task: dict[str, Any]) -> dict[str, Any]:
        """One of several steps that run in parallel (a `Send` each)."""
        return execute(task["session_id"], task["step"], task["refs"])

    def start_ahead(state: TurnState) -> None:
        """When the state a node is about to write sends the turn on to one ready step (`run_next`), start that
        step's job now: the node's own bookkeeping and the superstep between the two nodes then overlap the
        job instead of delaying it. `run_next` picks the job up by its step id; only jobs that need no
        approval start this way, and a crash in between just runs the step again after resume."""
        if route(state) != "run_next":
            return
        (step,) = _ready(state)
        relay = _Relay()
        try:
            refs = {f: ArtifactRef.model_validate(r) for f, r in _refs_for(step, state.get("results", {})).items()}
            spec = job_spec(step["module"], _tool_data(step, refs, store), store, session_id=state["session_id"])
            handle = executor.submit(spec, relay)
        except Exception:  # only a head start: the step's own node meets the same error and reports it as its own
            return
        inputs = {f: r.sha256 for f, r in refs.items()}
        ahead[(state["session_id"], step["position"])] = _Ahead(spec, handle, relay, inputs)

    def cancel_ahead(session_id: str) -> None:
        """Cancel the jobs started ahead for steps of this session that will not run."""
        for key in [k for k in ahead if k[0] == session_id]:
            ahead.pop(key).handle.cancel()

    def execute(session_id: str, step: dict[str, Any], step_refs: dict[str, dict],
                on_success: Callable[[dict[str, dict]], None] | None = None) -> dict[str, Any]:
        position, step_id = step["position"], step["step_id"]
        tool = get_tool(step["module"])
        writer = _sink()
        started = time.perf_counter()
        handle: Any = None
        marking: Future | None = None
        try:
            refs = {f: ArtifactRef.model_validate(r) for f, r in step_refs.items()}
            early = ahead.pop((session_id, position), None)
            if early is not None and early.inputs != {f: r.sha256 for f, r in refs.items()}:
                early.handle.cancel()  # started on other inputs than the state now names: run it afresh
                early = None
            spec = early.spec if early is not None else job_spec(
                tool.name, _tool_data(step, refs, store), store, session_id=session_id)
            # The job id and the "running" mark are written while the job starts; they only have to land
            # before the step's end (and before anyone can ask to cancel the job by its id).
            marking = _background(lambda: memory.update_step(step_id, status="running", progress=0.0,
                                                             job_id=spec.job_id))
            _emit("step_started", position=position, module=tool.name, job_id=spec.job_id,
                  command=step["invocation"].get("command", ""))
            last_write = [time.monotonic()]  # the database hears of progress only when a step runs a while

            def progress(fraction: float, message: str) -> None:
                writer({"event": "progress", "position": position, "module": tool.name, "fraction": fraction,
                        "message": message})
                now = time.monotonic()
                if now - last_write[0] >= _PROGRESS_EVERY_S:
                    last_write[0] = now
                    row = memory.update_step(step_id, progress=min(1.0, max(0.0, fraction)), message=message)
                    if row.status == "cancelled" and handle is not None:  # `vitron jobs cancel`, any process
                        handle.cancel()

            if early is not None:
                handle = early.handle
                early.relay.attach(progress)
            else:
                handle = executor.submit(spec, progress)
            result = handle.result()
            out = tool.output_model.model_validate(result.output)
            seconds = result.seconds  # the tool's own time; bookkeeping around it is the agent's
            if on_success is not None:
                on_success({ref.kind: ref.model_dump(mode="json") for ref in out.artifacts()})
            marking.result()
            refs_out = memory.finish_step(step_id, out.artifacts(), backend=out.backend)
            outputs = {ref.kind: ref.model_dump(mode="json") for ref in refs_out}
        except Exception as exc:  # a failing step must not end the turn: its dependants are skipped instead
            cancelled = isinstance(exc, JobCancelled)
            message = exc.message if isinstance(exc, VitronError) else f"{type(exc).__name__}: {exc}"
            if marking is not None:
                marking.result()
            memory.update_step(step_id, status="cancelled" if cancelled else "failed", error=exc)
            _emit("step_failed", position=position, module=tool.name, error=message)
            return {"results": {str(position): {"status": "skipped" if cancelled else "failed", "error": message,
                                                "seconds": time.perf_counter() - started}}}
        _emit("step_finished", position=position, module=tool.name, seconds=round(seconds, 3),
              outputs={k: v["alias"] for k, v in outputs.items()})
        return {"results": {str(position): {"status": "succeeded", "outputs": outputs, "seconds": seconds}}}

    # -- review and respond --------------------------------------------------------------------

    def review(state: TurnState) -> dict[str, Any]:
        return {"round": state.get("round", 1) + 1, "attempt": 1}

    def after_review(state: TurnState) -> str:
        ran = bool(_round_steps(state))
        if planner.replans and ran and state.get("round", 1) <= settings.max_rounds:
            return "plan"
        return "respond"

    def respond(state: TurnState) -> dict[str, Any]:
        return {"final": answer(state)}

    def answer(state: TurnState) -> str:
        """The reply (a question or a refusal already in `final`, else a summary), recorded and sent."""
        cancel_ahead(state["session_id"])  # started ahead for a step this turn never ran
        text = state.get("final") or _summary(state)
        invocations = [{**s["invocation"], "inputs": s["inputs"]} for s in state.get("steps", [])]
        memory.append_turn(state["session_id"], "assistant", reply=text, invocations=invocations)
        _emit("message", text=text)
        return text

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


_bookkeeping = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vitron-bookkeeping")


def _background(work: Callable[[], Any]) -> Future:
    return _bookkeeping.submit(work)


def _region(data: dict | None) -> Any:
    if not data:
        return None
    from pydantic import TypeAdapter

    from schemas import Region

    return TypeAdapter(Region).validate_python(data)


def _round_steps(state: TurnState) -> list[dict]:
    return state.get("steps", [])[state.get("round_start", 0):]


def _deps(step: dict) -> list[int]:
    return [int(v[1:]) for v in step["inputs"].values() if isinstance(v, str) and v.startswith("@")]


def _failed_dep(step: dict, results: dict[str, dict]) -> int | None:
    """The first step this one reads that failed or was skipped, if any."""
    return next((d for d in _deps(step) if results.get(str(d), {}).get("status") in ("failed", "skipped")), None)


def _ready(state: TurnState) -> list[dict]:
    """The round's steps that have not run and whose inputs are all there."""
    results = state.get("results", {})
    return [s for s in _round_steps(state) if str(s["position"]) not in results and _deps_met(s, results)]


def _deps_met(step: dict, results: dict[str, dict]) -> bool:
    return all(results.get(str(d), {}).get("status") == "succeeded" for d in _deps(step))


def _refs_for(step: dict, results: dict[str, dict]) -> dict[str, dict]:
    """The step's inputs with every `@P` replaced by step P's output of the fitting kind."""
    refs = {}
    for name, value in step["inputs"].items():
        if isinstance(value, str):
            refs[name] = results[value[1:]]["outputs"][name]
        else:
            refs[name] = value
    return refs


def _outcomes(state: TurnState) -> tuple[StepOutcome, ...]:
    results = state.get("results", {})
    return tuple(
        StepOutcome(position=s["position"], module=s["module"], command=s["invocation"].get("command", ""),
                    status=results.get(str(s["position"]), {}).get("status", "pending"),
                    outputs=tuple(r["alias"] for r in results.get(str(s["position"]), {}).get("outputs", {}).values()),
                    error=results.get(str(s["position"]), {}).get("error"))
        for s in state.get("steps", []))


def _summary(state: TurnState) -> str:
    """The planner's words, then what was made and what went wrong, by alias."""
    parts = [r for r in state.get("replies", []) if r]
    made, problems = [], []
    for outcome in _outcomes(state):
        if outcome.status == "succeeded":
            made.extend(f"@{alias}" for alias in outcome.outputs)
        elif outcome.status in ("failed", "skipped"):
            problems.append(f"step {outcome.position} ({outcome.module}) {outcome.status}: {outcome.error}")
    if made:
        parts.append("Made " + ", ".join(made) + ".")
    parts.extend(problems)
    if not parts:
        parts.append("Nothing to do. Write invocations such as "
                     "<module>B</module><instruction>segment the cup</instruction><region>(10, 10, 200, 150)</region>")
    return " ".join(parts)

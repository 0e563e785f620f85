"""Scoring a planner on hand-written conversations (`bench/planner_heldout.jsonl`): what a new user types, turn after
turn, with what a careful person would have done. The set is held out: nothing is trained or tuned on it.

Each line is a conversation: turns with the user's text, an optional upload (`image` or `video`, named as the
session names it: `@img1`, `@video1`…) and a drawn region, and what should happen:
- `steps`: the plan, each step with its module letter, the `words` its instruction must keep, what it acts on
  (`on`: an alias the user meant, or `@N` for this turn's step N) and `where` an edit acts (`inside` the mask, or
  `outside` it: "blur the background"; read from the edit's `area` field, `background` being outside);
- `ask`: the request is too vague to act on, and the planner should ask;
- `question`: the user asks about the picture: answered by the understanding module (one H step) or in words;
- `op`: a session operation (`undo`, making `current` the current artifact again; `show`, answering with `target`)
  that needs no job: right when the plan's `operation` is that and nothing runs.

A plan that asks before running its guess (`Plan.confirm`) counts as a question: nothing ran.

The session is simulated: the artifact table grows by what the gold plan would have made (and a gold undo's row, as
session memory records one), so every turn is scored on the session the user actually had, whatever the planner did
before; its history holds the user's words and the plans that ran, as session memory does. Inputs a plan leaves out
are filled by the agent's own resolver (`workflows.resolve`), as in a real turn.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memory import ArtifactEntry, ArtifactStore, History, restored, undo_replaces
from memory.sessions import ALIAS_PREFIXES, UNDO, TurnRecord
from schemas import (
    ArtifactRef,
    BoxRegion,
    InvalidInput,
    Plan,
    SessionOperation,
    StepOutput,
    VitronError,
    resolve_module,
)

from .base import Planner, PlanRequest

REGION = BoxRegion(box=(10, 10, 50, 40))  # a drawn region: where it is does not matter to the plan
_MEDIA = {"image": ("image/png", (64, 64, 3)), "mask": ("image/png", (64, 64)), "video": ("video/mp4", (4, 64, 64, 3)),
          "masks": ("video/x-matroska", (4, 64, 64)), "boxes": ("application/json", ()),
          "embedding": ("application/vnd.safetensors", (1, 4))}
_OUTPUTS = {"A": ("image",), "B": ("mask",), "C": ("image",), "D": ("video",), "E": ("masks", "boxes"),
            "F": ("video",), "G": ("video",)}


@dataclass
class _Session:
    """The artifact table of a simulated session."""

    entries: list[ArtifactEntry] = field(default_factory=list)
    turn: int = 0
    history: list[TurnRecord] = field(default_factory=list)
    store: ArtifactStore | None = None  # where its pictures are, for a planner that looks at them

    def add(self, kind: str, made_by: str, parents: Sequence[str] = (), *, content: ArtifactRef | None = None) -> str:
        number = 1 + sum(1 for e in self.entries if e.ref.kind == kind)
        alias = f"{ALIAS_PREFIXES[kind]}{number}"
        media, shape = _MEDIA[kind]
        if content is None and kind in ("image", "video") and self.store is not None:
            content = _picture(self.store, kind, len(self.entries) + 1)
        sha = content.sha256 if content else f"{len(self.entries) + 1:064x}"
        # A step's output has its step, as session memory has it; an upload or an undo's row has none.
        step = None if made_by in ("upload", UNDO) else len(self.entries) + 1
        self.entries.append(ArtifactEntry(ArtifactRef(sha256=sha, kind=kind, media_type=media, shape=shape,
                                                      alias=alias), made_by, tuple(parents), step_id=step,
                                          turn_seq=self.turn))
        return alias

    def remember(self, text: str, done: _Turn) -> None:
        """The turn in the session's history: the user's words, and the plan that ran (none when it asked)."""
        now = datetime.now(UTC)
        for role, words, invocations in (("user", text, ()), ("assistant", done.reply, done.invocations)):
            self.history.append(TurnRecord(id=len(self.history) + 1, session_id="heldout", seq=len(self.history) + 1,
                                           role=role, text=words, invocations=invocations, reply=None, tokens=0,
                                           created_at=now))

    def find(self, alias: str) -> ArtifactEntry | None:
        return next((e for e in self.entries if e.alias == alias.lstrip("@")), None)

    def undo(self, target: str) -> None:
        """A gold undo, recorded as `SessionMemory.record_undo` records it: a new row for the target's content."""
        entry = self.find(target)
        if entry is None:
            raise InvalidInput(f"a gold undo goes back to {target}, which its session does not have", field="set",
                               fix="name an artifact an earlier turn uploaded or made")
        back = restored(self.entries, entry)
        replaced = undo_replaces(self.entries, back)
        self.add(back.ref.kind, UNDO, [replaced.alias] if replaced else [], content=back.ref)

    def apply(self, steps: Sequence[dict[str, Any]]) -> None:
        """What the gold plan makes: each step's outputs, made from what it acts on."""
        made: list[str] = []
        for step in steps:
            on = step.get("on")
            if on and on[1:].isdigit():
                on = "@" + made[int(on[1:]) - 1]
            outputs = [self.add(kind, step["module"], [on[1:]] if on else []) for kind in _OUTPUTS[step["module"]]]
            made.append(outputs[0])


def _picture(store: ArtifactStore, kind: str, number: int) -> ArtifactRef:
    """A small picture (or 4-frame video) of its own for the session's artifact `number`: a planner that reads the
    pixels (vitron, a multimodal chat model) gets real ones; their content does not matter to the plan."""
    rng = np.random.default_rng(number)
    frame = np.empty((64, 64, 3), np.uint8)
    frame[:] = rng.integers(0, 256, 3)
    frame[16:48, 16:48] = rng.integers(0, 256, 3)
    if kind == "image":
        return store.put_image(frame)
    return store.put_video([np.roll(frame, 2 * i, axis=1) for i in range(4)], fps=4.0)


@dataclass
class _Turn:
    """What the planner did with one turn."""

    modules: list[str]
    commands: list[str]
    targets: list[str | None]  # each step's image or video: an alias, or `@N`
    wheres: list[str]
    asked: bool  # a question back to the user (or a plan the agent would refuse, or a guess it asks about first)
    reply: str
    operation: SessionOperation | None = None  # its target the alias the agent would act on: `@img1`
    invocations: tuple[dict[str, Any], ...] = ()  # what ran, as session memory records it (the next turn's history)


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """The conversations of a set file; a clear error naming the line for a malformed one."""
    conversations = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            conversation = json.loads(line)
            assert isinstance(conversation.get("turns"), list) and conversation["turns"]
        except (ValueError, AssertionError):
            raise InvalidInput(f"line {number} of {Path(path).name} is not a conversation", field="set",
                               fix='write {"id": …, "turns": [{"text": …, "expect": {…}}]} on each line') from None
        conversations.append(conversation)
    return conversations


def score_conversations(planner: Planner, conversations: Sequence[dict[str, Any]],
                        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The planner's figures on the conversations (see `figures`)."""
    counts: Counter[str] = Counter()
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        store = ArtifactStore(folder)
        for index, conversation in enumerate(conversations):
            session = _Session(store=store)
            for number, turn in enumerate(conversation["turns"]):
                session.turn += 1
                started = time.perf_counter()
                done = _plan_turn(planner, turn, session, store)
                seconds.append(time.perf_counter() - started)
                session.remember(turn["text"], done)
                _score(turn["expect"], done, follow_up=number > 0, counts=counts)
                if "steps" in turn["expect"]:
                    session.apply(turn["expect"]["steps"])
                elif turn["expect"].get("op") == "undo":
                    session.undo(turn["expect"]["current"])
                session.turn += 1  # the assistant's turn
            if progress and index % 25 == 24:
                progress(f"scored {index + 1}/{len(conversations)} conversations")
    return figures(counts, len(conversations), seconds)


def _plan_turn(planner: Planner, turn: dict[str, Any], session: _Session, store: ArtifactStore) -> _Turn:
    from workflows.resolve import Ambiguous, resolve_plan_inputs, tool_callee

    inputs = {}
    if turn.get("upload"):
        alias = session.add(turn["upload"], "upload")
        inputs[alias] = session.entries[-1].ref
    history = History("heldout", tuple(session.history), 0, 0)
    request = PlanRequest(text=turn["text"], history=history, artifacts=tuple(session.entries),
                          inputs=inputs, region=REGION if turn.get("region") else None, store=store)
    try:
        plan: Plan = planner.plan(request)
    except VitronError as exc:  # the agent answers with the error: nothing runs
        return _Turn([], [], [], [], asked=True, reply=exc.message)
    if plan.confirm:  # the agent asks the question and does nothing (an operation neither) until the user says yes
        return _Turn([], [], [], [], asked=True, reply=plan.reply)
    operation = plan.operation
    if operation is not None:
        entry = session.find(operation.target)
        if entry is None:  # the agent refuses an operation on an artifact the session does not have
            return _Turn([], [], [], [], asked=True, reply=f"no artifact {operation.target}")
        shown = restored(session.entries, entry) if operation.kind == "undo" else entry  # an undo's row of it
        operation = operation.model_copy(update={"target": f"@{shown.alias}"})
    steps = [s.invocation for s in plan.steps]
    try:
        resolved = resolve_plan_inputs(steps, tuple(session.entries))
    except Ambiguous as question:
        return _Turn([], [], [], [], asked=True, reply=question.question)
    except VitronError as exc:  # a plan the agent refuses runs nothing
        return _Turn([], [], [], [], asked=True, reply=exc.message)
    modules, targets = [], []
    for invocation, inputs_of in zip(steps, resolved, strict=True):
        modules.append(resolve_module(invocation.module).code if _is_module(invocation.module) else invocation.module)
        kinds = tool_callee(invocation.module).inputs if _is_module(invocation.module) else {}
        main = next((v for f, v in inputs_of.values.items() if kinds.get(f, ("",))[0] in ("image", "video")), None)
        targets.append(None if main is None else f"@{main.step}" if isinstance(main, StepOutput) else f"@{main.alias}")
    return _Turn(modules, [s.command for s in steps], targets,
                 ["outside" if s.params.get("area") == "background" else "inside" for s in steps], asked=False,
                 reply=plan.reply, operation=operation,
                 invocations=tuple(s.model_dump(mode="json", exclude={"signal"}) for s in steps))


def _is_module(name: str) -> bool:
    try:
        resolve_module(name)
    except VitronError:
        return False
    return True


def _score(expect: dict[str, Any], done: _Turn, *, follow_up: bool, counts: Counter[str]) -> None:
    """Count what this turn got right, in `counts`."""
    counts["turns"] += 1
    ran = bool(done.modules)
    if "steps" in expect:
        gold = expect["steps"]
        counts["clear_turns"] += 1
        counts["asked_on_clear"] += done.asked
        same = done.modules == [s["module"] for s in gold]
        counts["module_exact"] += same
        right = same
        for i, step in enumerate(gold):
            command = done.commands[i].lower() if i < len(done.commands) else ""
            for word in step.get("words", []):
                counts["words"] += 1
                counts["words_found"] += word.lower() in command
            if "on" in step and follow_up:
                counts["follow_up_targets"] += 1
                hit = same and done.targets[i] == step["on"]
                counts["follow_up_targets_right"] += hit
            if "on" in step:
                right = right and same and done.targets[i] == step["on"]
            if "where" in step:
                counts["wheres"] += 1
                hit = same and done.wheres[i] == step["where"]
                counts["wheres_right"] += hit
                right = right and hit
        kind = "clear"
    elif expect.get("ask"):
        right, kind = done.asked or (not ran and done.reply.strip().endswith("?")), "vague"
    elif expect.get("question"):  # answered: by the understanding module's one step, or in words
        right, kind = done.modules == ["H"] or (not ran and bool(done.reply.strip())), "question"
    else:  # a session operation: undo back to `current`, or show `target`, and nothing else
        done_op = done.operation
        want = expect["current"] if expect["op"] == "undo" else expect["target"]
        right = not ran and done_op is not None and done_op.kind == expect["op"] and done_op.target == want
        kind = "operation"
    if kind != "clear":
        counts[f"{kind}_turns"] += 1
        counts[f"{kind}_right"] += right
    counts["right"] += right
    counts["silent_wrong"] += ran and not right


def figures(counts: Counter[str], conversations: int, seconds: Sequence[float]) -> dict[str, Any]:
    """- turn_accuracy: turns handled as a careful person would (the plan, its targets, inside or outside; asking
      when vague; answering a question without editing);
    - module_exact / keyword_recall: on turns with a plan, the module sequence exactly, and the share of the
      words each instruction must keep;
    - follow_up_target_accuracy: steps of later turns that act on the artifact the user meant;
    - where_accuracy: edits that act inside or outside the mask as asked;
    - silent_wrong_rate: turns where a plan ran and was wrong (no question asked);
    - ask_rate_on_clear: clear requests answered with a question;
    - question_accuracy, vague_accuracy, operation_accuracy: the other kinds of turn."""

    def share(part: str, whole: str) -> float | None:
        return round(counts[part] / counts[whole], 4) if counts[whole] else None

    ordered = sorted(seconds)
    return {"conversations": conversations, "turns": counts["turns"], "turn_accuracy": share("right", "turns"),
            "module_exact": share("module_exact", "clear_turns"), "keyword_recall": share("words_found", "words"),
            "follow_up_target_accuracy": share("follow_up_targets_right", "follow_up_targets"),
            "where_accuracy": share("wheres_right", "wheres"), "silent_wrong_rate": share("silent_wrong", "turns"),
            "ask_rate_on_clear": share("asked_on_clear", "clear_turns"),
            "question_accuracy": share("question_right", "question_turns"),
            "vague_accuracy": share("vague_right", "vague_turns"),
            "operation_accuracy": share("operation_right", "operation_turns"),
            "plan_ms_p50": round(1000 * ordered[len(ordered) // 2], 2) if ordered else None}

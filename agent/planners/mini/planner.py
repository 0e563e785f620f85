"""The mini planner: a small trained planner that runs offline on CPU, through the same Planner protocol.

It reads the user's text and a context line (this turn's input aliases, the session's aliases, whether a region
was drawn), writes the plan in the invocation grammar with one `<signal/>` per step, and projects the decoder state
at each signal token into the step's `SignalEmbedding` (task-specific + task-invariant), as VitronPlanner does.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from pydantic import ValidationError

from memory import ArtifactEntry
from schemas import (
    BoxRegion,
    InvalidInput,
    Plan,
    PlanStep,
    PointsRegion,
    Region,
    SignalEmbedding,
    resolve_module,
)

from ..base import PlanRequest
from ..grammar import format_plan, parse_plan
from .data import PREFIX, REGION_MODULES, context_line
from .encoder import Encoded, MiniLM, load_minilm
from .model import Decoded, MiniPlannerModel, alias_name, copied_text

CHECKPOINT = Path(__file__).parent / "checkpoint"
"""The trained checkpoint that ships in the repository."""
MAX_MEMORY_ALIASES = 8
"""The context line lists at most this many of the session's newest aliases (plus any the text names)."""

_LOCK = threading.Lock()
_GRAMMAR = re.compile(r"<module[\s>]", re.IGNORECASE)


@lru_cache(maxsize=4)
def _cached(folder: Path) -> MiniPlannerModel:
    return MiniPlannerModel.load(folder)


def load_checkpoint(folder: str | Path | None = None) -> MiniPlannerModel:
    """The trained parts in `folder` (default: the shipped checkpoint), loaded once per process."""
    resolved = Path(folder or CHECKPOINT).expanduser().resolve()
    with _LOCK:
        return _cached(resolved)


@dataclass
class Written:
    """What the model wrote for one request: the grammar text and the signal states, one per step."""

    text: str
    signal_hidden: torch.Tensor  # [n_steps, width]
    modules: list[str]


class MiniPlanner:
    """Plans with the small trained model; each step gets a `<signal/>` and its `SignalEmbedding`."""

    name = "mini"
    replans = False
    corrects = False  # greedy decoding: the same request gives the same plan, so a refused plan is not retried
    # Text that already holds invocations (`<module>B</module>…`) is parsed as it is, as the explicit planner does.

    def __init__(self, model: MiniPlannerModel | None = None, encoder: MiniLM | None = None) -> None:
        self.model = model if model is not None else load_checkpoint()
        self.encoder = encoder if encoder is not None else load_minilm()

    @classmethod
    def from_checkpoint(cls, folder: str | Path | None = None) -> MiniPlanner:
        return cls(load_checkpoint(folder))

    def plan(self, request: PlanRequest) -> Plan:
        if request.round > 1:
            return Plan()  # one round: this planner does not read results back
        if _GRAMMAR.search(request.text if isinstance(request.text, str) else ""):
            # The user wrote the invocations themselves: taken as they are.
            return parse_plan(request.text, workflows=request.workflows)
        if is_question(request.text):
            return Plan(reply=QUESTION_REPLY)  # an honest answer, never an edit nobody asked for
        inputs = [alias for alias in request.inputs if alias]
        memory = context_aliases([entry.alias for entry in request.artifacts], inputs, request.text)
        written = self.write(request.text, inputs, memory, request.region)
        plan = parse_plan(written.text)
        plan = _named_references_only(self._finish(plan, written, request.region), request.text, inputs)
        return _with_edit_area(_with_first_named(plan, request.text, request.artifacts), request.text)

    def write(self, text: str, inputs: Sequence[str], memory: Sequence[str], region: Region | None = None) -> Written:
        """The plan text for a request given as plain values (what `plan` and the evaluation both call)."""
        if not isinstance(text, str):
            raise InvalidInput("the request text must be a string", field="text")
        context = context_line(inputs, memory, region is not None)
        encoded = self.encoder.encode([text], [context])
        decoded = self.model.decode(encoded.hidden, encoded.copyable)
        return Written(self._grammar(decoded, encoded, [text, context], [*inputs, *memory], region),
                       decoded.signal_hidden, [step.module for step in decoded.steps])

    def _grammar(self, decoded: Decoded, encoded: Encoded, sources: list[str], known: Sequence[str],
                 region: Region | None) -> str:
        tokens, offsets, segments = encoded.tokens[0], encoded.offsets[0], encoded.segments[0]
        region_text = _region_text(region)
        region_placed = False
        blocks = []
        for step in decoded.steps:
            words = copied_text(step.copies, tokens, offsets, segments, sources)
            command = f"{PREFIX[step.module]} {words}".strip()
            block = f"<module>{step.module}</module><instruction>{_escape(command)}</instruction>"
            if region_text and not region_placed and step.module in REGION_MODULES:
                block += f"<region>{region_text}</region>"
                region_placed = True
            for ref in step.inputs:
                name = f"{ref}" if isinstance(ref, int) else alias_name(
                    copied_text(ref, tokens, offsets, segments, sources), known)
                if name:
                    block += f"<input>@{name}</input>"
            blocks.append(block + "<signal/>")
        return "".join(blocks)

    def _finish(self, plan: Plan, written: Written, region: Region | None) -> Plan:
        """Attach each step's signal embedding, and a scribble region (the grammar cannot print one)."""
        steps = []
        rows = written.signal_hidden
        scribble = region is not None and _region_text(region) is None
        for index, step in enumerate(plan.steps):
            invocation = step.invocation
            update: dict[str, object] = {}
            if index < rows.shape[0]:
                code = written.modules[index]
                with torch.inference_mode():
                    specific, invariant = self.model.signals(code, rows[index:index + 1])
                update["signal"] = _embedding(specific, invariant)
            if scribble and resolve_module(invocation.module).code in REGION_MODULES:
                update["region"], scribble = region, False
            steps.append(PlanStep(invocation=invocation.model_copy(update=update), signal_tokens=step.signal_tokens))
        return Plan(reply=plan.reply, steps=steps)


def _named_references_only(plan: Plan, text: str, uploads: Sequence[str]) -> Plan:
    """The plan without references to session artifacts the user did not name: the decoder copies aliases from the
    context line on its own, and "now make it green" must edit the latest result, which the agent's resolver picks.
    Kept: this turn's uploads, aliases the text names (`@img1`, `img1`), and the plan's own `@N`."""
    spoken = {match.lower() for match in re.findall(r"@?([a-z]+\d+)", text.lower())}

    def wanted(value: object) -> bool:
        if not isinstance(value, str) or not value.startswith("@") or value[1:].isdigit():
            return True
        return value[1:] in uploads or value[1:].lower() in spoken

    steps = [step.model_copy(update={"invocation": step.invocation.model_copy(update={"inputs": {
        key: value for key, value in step.invocation.inputs.items() if wanted(value)}})}) for step in plan.steps]
    return plan.model_copy(update={"steps": steps})


_FIRST = re.compile(r"\b(?:original|first|initial)\s+(?:(photo|image|picture|pic)|(clip|video))\b")
_MAIN_INPUT = {"B": "image", "C": "image", "G": "image", "E": "video", "F": "video"}


def _with_first_named(plan: Plan, text: str, table: Sequence[ArtifactEntry]) -> Plan:
    """"The first photo", "the original clip": the session's first image or video, for the first step that works on
    one and names none (the resolver alone would pick the latest)."""
    found = _FIRST.search(text.lower())
    if found is None:
        return plan
    kind = "image" if found.group(1) else "video"
    first = next((entry.alias for entry in table if entry.ref.kind == kind and entry.alias), None)
    for index, step in enumerate(plan.steps):
        field = _MAIN_INPUT.get(resolve_module(step.invocation.module).code)
        if first is None or field != kind or step.invocation.inputs:
            continue
        steps = list(plan.steps)
        steps[index] = step.model_copy(update={"invocation": step.invocation.model_copy(
            update={"inputs": {field: f"@{first}"}})})
        return plan.model_copy(update={"steps": steps})
    return plan


QUESTION_REPLY = ("I can't answer questions about pictures yet: that needs an understanding model, and none is "
                  "configured. I can segment, edit, generate and animate: say what to change, e.g. \"make the cup "
                  "blue\".")
_ASKING = re.compile(r"^(?:what|what's|whats|which|who|whose|where|when|why|how|is|are|was|were|does|do|did|"
                     r"describe|caption|tell me|explain|count)\b")
_ACTING = re.compile(  # stems of the verbs of an action, in any form: "making it blue", "removed"
    r"\b(?:segment|cut|outlin|mask|select|pick|isolat|extract|track|follow|mak|made|turn|chang|recolou?r|paint|blur|"
    r"pixelat|remov|eras|delet|replac|swap|brighten|darken|sharpen|invert|generat|creat|draw|render|design|sketch|"
    r"imagin|look like|come up|show|animat|zoom|pan|edit|fix|put|add|giv|convert|keep)(?:e|es|ed|ing|s|d)?\b")


def is_question(text: str) -> bool:
    """Whether a request asks about the picture rather than for a change: it opens as a question does ("what is…",
    "how many…", "describe…") and asks for no action. "Can you make it blue?" is a request, not a question."""
    lowered = " ".join(text.lower().split())
    return bool(_ASKING.match(lowered)) and not _ACTING.search(lowered)


_AROUND = re.compile(r"\b(?:background|backdrop|surroundings|the rest|everything (?:else|around|except|but|behind)"
                     r"|all around|around (?:it|him|her|them)|except (?:for )?(?:the|it|him|her|them))\b")


def _with_edit_area(plan: Plan, text: str) -> Plan:
    """The request's last edit set to act on the background when the user says so ("blur everything else", "the
    background", "everything except the runner"): an explicit field of the edit, not a phrase it must find."""
    edits = [i for i, step in enumerate(plan.steps) if resolve_module(step.invocation.module).code in ("C", "F")]
    if not edits or not _AROUND.search(text.lower()):
        return plan
    steps = list(plan.steps)
    last = steps[edits[-1]]
    params = {**last.invocation.params, "area": "background"}
    steps[edits[-1]] = last.model_copy(update={"invocation": last.invocation.model_copy(update={"params": params})})
    return plan.model_copy(update={"steps": steps})


def context_aliases(table: Sequence[str], inputs: Sequence[str], text: str) -> list[str]:
    """The session's aliases the context line shows: the newest few, plus any the user's text names."""
    others = [alias for alias in table if alias and alias not in inputs]
    lowered = text.lower() if isinstance(text, str) else ""
    named = {a for a in others if re.search(rf"(?<![a-z0-9_]){re.escape(a.lower())}(?![a-z0-9_])", lowered)}
    newest = set(others[-MAX_MEMORY_ALIASES:])
    return [alias for alias in others if alias in newest or alias in named]


def _region_text(region: Region | None) -> str | None:
    """The region as the grammar prints it, or None (no region, or a scribble the grammar cannot say)."""
    if isinstance(region, BoxRegion | PointsRegion):
        step = Plan(steps=[PlanStep.model_validate({"invocation": {"module": "B", "command": "x", "region": region}})])
        printed = format_plan(step)
        return printed.split("<region>", 1)[1].split("</region>", 1)[0]
    return None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _embedding(task_specific: torch.Tensor, task_invariant: torch.Tensor) -> SignalEmbedding:
    try:
        return SignalEmbedding(task_specific=task_specific.detach().float().clone(),
                               task_invariant=task_invariant.detach().float().clone())
    except ValidationError as exc:
        raise InvalidInput(f"the planner's signal embedding is unusable: {exc.errors()[0]['msg']}",
                           field="signal") from None

"""The mini planner: a small trained planner that runs offline on CPU, through the same Planner protocol.

It reads the user's request as tagged spans and one intent (`model.MiniPlannerModel`), composes the steps from the
spans (`compose.compose`), and projects the tagger's states over each step's words into the step's
`SignalEmbedding` (task-specific + task-invariant), as VitronPlanner does at its signal tokens. Questions go to
the understanding module (H), whose answer is the reply; "undo" and "show me the mask again" become session
operations, and a reading it is not sure of becomes one short question naming its best guess, which "yes" runs
(`Plan.confirm`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from memory import UNDO, ArtifactEntry, undo_target
from schemas import (
    BoxRegion,
    InvalidInput,
    Invocation,
    Plan,
    PlanStep,
    Region,
    SessionOperation,
    SignalEmbedding,
    resolve_module,
)

from ..base import PlanRequest
from ..grammar import parse_plan
from .compose import ALIAS, PREFIX, REGION_MODULES, STOPWORDS, TAGS, Context, Span, Step, compose, keywords_of
from .inference import NumpyTagger, Reader, load_reader, load_tagger, step_state

_GRAMMAR = re.compile(r"<module[\s>]", re.IGNORECASE)


def load_checkpoint(folder: str | Path | None = None) -> NumpyTagger:
    """The trained parts in `folder` (default: the shipped checkpoint), loaded once per process."""
    return load_tagger(folder)


@dataclass
class RequestReading:
    """A request as the model read it: intent, the tagged spans, the composed steps with each step's state, and
    the reading's confidence (the least sure of its decisions)."""

    text: str
    intent: str
    spans: list[Span]
    steps: list[Step]
    states: list[np.ndarray]  # one per step
    confidence: float


def read_request(tagger: NumpyTagger, reader: Reader, text: str, context: Context) -> RequestReading:
    """Tag the request, compose its steps, and say how sure the reading is."""
    tokens = reader.tokens(text)
    reading = tagger.read(reader.states(tokens, tagger.config.encoder_layers))
    spans, sure = spans_of(reading.tag_probabilities, tokens.offsets, tokens.words, text,
                           tagger.config.switch_penalty)
    intent = reading.intent
    steps = compose(text, spans, context) if intent == "plan" else []
    if intent == "plan" and _only_praise(text, steps):
        intent, steps = "vague", []  # "make it look good": an edit that says nothing to change
    states = [step_state(reading.hidden, tokens.offsets, tokens.words, step) for step in steps]
    tags_sure = sure if intent == "plan" else 1.0
    return RequestReading(text, intent, spans, steps, states, min(reading.intent_confidence, tags_sure))


def spans_of(probabilities: np.ndarray, offsets: Sequence[tuple[int, int]], is_piece: Sequence[bool], text: str,
             switch_penalty: float) -> tuple[list[Span], float]:
    """The tagged spans of a request, and how sure the least sure word of it is.

    Words (a wordpiece and the pieces glued to it) take one tag type each, chosen together by Viterbi over the
    types' log-probabilities with a penalty for each change of type, so a span does not break up on one unsure
    word ("the | rusty | sun"). A run of words of one type is one span; it continues the latest span of its type
    across a gap when its first word reads `I-` rather than `B-` ("make | the rocket | blue")."""
    words: list[tuple[int, int, int]] = []  # (start, end, first piece)
    for index, ((a, b), piece) in enumerate(zip(offsets, is_piece, strict=True)):
        if not piece:
            continue
        if words and a == words[-1][1] and a > 0 and text[a - 1].isalnum() and text[a:a + 1].isalnum():
            words[-1] = (words[-1][0], b, words[-1][2])
        else:
            words.append((a, b, index))
    if not words:
        return [], 1.0
    rows = probabilities[[first for _, _, first in words]]  # [w, tags]
    begin = rows[:, 1::2]  # B- of each type, in TAGS order
    inside = rows[:, 2::2]
    types = np.concatenate([rows[:, :1], begin + inside], axis=1).clip(min=1e-9)  # [w, 1 + types]: O first
    path = _viterbi(np.log(types), switch_penalty)
    spans: list[Span] = []
    seen: set[int] = set()
    for i, kind in enumerate(path):
        start, end, _ = words[i]
        if kind == 0:
            continue
        if i and path[i - 1] == kind:
            last = spans[-1]
            spans[-1] = Span(last.start, end, last.tag, last.begins)
            continue
        begins = bool(begin[i, kind - 1] >= inside[i, kind - 1]) or kind not in seen
        spans.append(Span(start, end, TAGS[kind - 1], begins))
        seen.add(kind)
    # How sure: the least sure content word. Whether a filler word ("with", "the") sits inside a span or beside it
    # changes no step, so its doubt does not count.
    content = [i for i, (start, end, _) in enumerate(words) if text[start:end].lower() not in _FILLER | STOPWORDS]
    sure = min((float(types[i, path[i]]) for i in content), default=1.0)
    return [_trimmed(span, text) for span in spans], sure


def _viterbi(log_probabilities: np.ndarray, switch_penalty: float) -> list[int]:
    n, k = log_probabilities.shape
    score = log_probabilities[0].copy()
    back = []
    change = switch_penalty * (1 - np.eye(k))
    for i in range(1, n):
        total = score[:, None] - change  # [from, to]
        back.append(total.argmax(0))
        score = total.max(0) + log_probabilities[i]
    path = [int(score.argmax())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


def _trimmed(span: Span, text: str) -> Span:
    """The span without the punctuation at its edges ("the rocket," → "the rocket")."""
    start, end = span.start, span.end
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return Span(start, end, span.tag, span.begins)


class MiniPlanner:
    """Plans with the small trained model; each step gets its `SignalEmbedding`."""

    name = "mini"
    replans = False
    corrects = False  # the same request gives the same plan, so a refused plan is not retried
    # Text that already holds invocations (`<module>B</module>…`) is parsed as it is, as the explicit planner does.

    def __init__(self, tagger: NumpyTagger | None = None, reader: Reader | None = None) -> None:
        self.tagger = tagger if tagger is not None else load_tagger()
        self.reader = reader if reader is not None else load_reader()

    @classmethod
    def from_checkpoint(cls, folder: str | Path | None = None) -> MiniPlanner:
        return cls(load_tagger(folder))

    def plan(self, request: PlanRequest) -> Plan:
        if request.round > 1:
            return Plan()  # one round: this planner does not read results back
        text = request.text
        if not isinstance(text, str):
            raise InvalidInput("the request text must be a string", field="text")
        if _GRAMMAR.search(text):
            return parse_plan(text, workflows=request.workflows)  # the user wrote the invocations themselves
        table = tuple(request.artifacts)
        lowered = text.lower()
        context = context_of(request)
        reading: RequestReading | None = None
        more = _MORE.fullmatch(lowered.strip()) is not None
        do_too = _DO_TOO.fullmatch(lowered.strip())
        if more or do_too or _SAME.search(lowered):
            target = None
            if not more:  # "same for the boots": the object named this time, as the tagger reads it
                reading = read_request(self.tagger, self.reader, text, context)
                target = _object_phrase(reading) or (do_too.group("object") if do_too else None)
                target = target if target and _names_an_object(target) else None  # "on this one": no new object
            again = _same_again(request, edits_only=more, target=target)
            if again is not None:
                return again
        if _CAPABILITY.search(lowered):
            return Plan(reply=CAPABILITIES_REPLY)
        reading = reading or read_request(self.tagger, self.reader, text, context)
        if reading.intent in ("undo", "show"):
            return _operation(reading.intent, text, table)
        if reading.intent == "vague":
            return Plan(reply=VAGUE_REPLY)
        if reading.intent == "question" or is_question(text):
            return _question(text, request)  # an answer from the pixels, never an edit nobody asked for
        if not reading.steps:
            return Plan(reply=VAGUE_REPLY)
        if _another_object_too(reading, lowered):  # "and the driver's face too", after an edit
            again = _same_again(request, target=_object_phrase(reading), after_edit=True)
            if again is not None:
                return again
        steps = self._steps(reading, request.region)
        steps = _with_first_named(steps, text, table)
        steps = _instead(steps, text, table)
        plan = Plan(steps=[PlanStep(invocation=invocation) for invocation in steps])
        doubt = reading.confidence < self.tagger.config.threshold or _unexplained(reading)
        return plan.model_copy(update={"reply": proposal(plan), "confirm": True}) if doubt else plan

    def _steps(self, reading: RequestReading, region: Region | None) -> list[Invocation]:
        out = []
        region_left = region
        for step, state in zip(reading.steps, reading.states, strict=True):
            fields: dict[str, object] = {"module": step.module, "command": step.instruction, "inputs": step.inputs}
            if step.area:
                fields["params"] = {"area": step.area}
            if region_left is not None and step.module in REGION_MODULES:
                fields["region"], region_left = region_left, None
            fields["signal"] = _embedding(*self.tagger.signals(step.module, state))
            out.append(Invocation.model_validate(fields))
        return out


_SAME = re.compile(r"\b(?:do the same|the same (?:thing|again|here|for|on|to|with)|same (?:thing|again|for|here|on)|"
                   r"repeat (?:that|it|this|the last)|do (?:that|it) again)\b")


_DO_TOO = re.compile(r"(?:(?:ok|okay|now|and|also|nice|great|good|cool)[,.!]? )*(?:now )?do (?!it\b|that\b|this\b)"
                     r"(?P<object>(?:the |that |this |his |her |my )?[a-z' ]+?) (?:too|as well|also)(?: please)?[.!]*")
"""The previous edit on another object, said in a few words ("now do the helmet too")."""


_MORE = re.compile(r"(?:(?:ok|okay|now|and|yes|nice|good|great|hmm)[,.!]? )*(?:(?:even|a (?:little |tiny )?bit|"
                   r"a little|a lot|much|some|slightly) )?(?:more|stronger)(?: please| again)?[.!?]*")
"""Asking for more of the last edit ("a bit more", "even stronger"): its edits again, on their own result."""


_TOO = re.compile(r"\b(?:too|as well|also)\b")


def _another_object_too(reading: RequestReading, lowered: str) -> bool:
    """Only an object named, "too": after an edit it asks for the same edit on it (after a segmentation, the tagger's
    segmentation of it is already right)."""
    return (all(step.module in "BE" for step in reading.steps) and _TOO.search(lowered) is not None
            and not any(span.tag == "SEG" for span in reading.spans) and _object_phrase(reading) is not None)


_NOT_OBJECTS = frozenset(("one", "ones", "photo", "picture", "image", "pic", "video", "clip", "too", "also", "well"))


def _names_an_object(phrase: str) -> bool:
    """Whether words read as an object name one ("the boots"), not only the picture or a pointing word ("on this
    one", "here")."""
    return bool(set(keywords_of(phrase)) - _NOT_OBJECTS)


def _object_phrase(reading: RequestReading) -> str | None:
    """The object words of a reading ("the helmet"); None when it names none."""
    said = (reading.text[s.start:s.end] for s in reading.spans if s.tag == "OBJ")
    return " ".join(words for words in said if _names_an_object(words)) or None  # a stray "the" is no object


def _same_again(request: PlanRequest, *, edits_only: bool = False, target: str | None = None,
                after_edit: bool = False) -> Plan | None:
    """"Do the same on this one": the previous plan again, its inputs left to the resolver (this turn's upload, the
    latest result) and this turn's region on its first step that reads one; None when there is no previous plan.
    `edits_only`: only its edits ("a bit more" strengthens the edit, the object is already segmented). `target`:
    the object this time ("same for the helmet"): segmented instead of the previous one (first, when the previous
    plan segmented nothing). `after_edit`: None unless the previous plan edited something."""
    previous = next((turn.invocations for turn in reversed(request.history.turns)
                     if turn.role == "assistant" and turn.invocations), None)
    edits = [d for d in previous or () if resolve_module(d["module"]).code in "CF"]
    if edits_only:
        previous = edits
    if not previous or (after_edit and not edits):
        return None
    if target:
        previous = _retargeted([dict(d) for d in previous], target)
    steps, region = [], request.region
    for dumped in previous:
        fields = {k: v for k, v in dumped.items() if k in ("module", "command", "params")}
        if region is not None and resolve_module(fields["module"]).code in REGION_MODULES:
            fields["region"], region = region, None
        steps.append(PlanStep(invocation=Invocation.model_validate(fields)))
    return Plan(steps=steps)


def _retargeted(previous: list[dict], target: str) -> list[dict]:
    """The previous plan about `target`: its segmentations segment it (one is added before a whole-picture edit)
    and its edits name it where they named the previous object."""
    codes = [resolve_module(d["module"]).code for d in previous]
    segmenting = [d for d, code in zip(previous, codes, strict=True) if code in "BE"]
    edit = next((code for code in codes if code in "CF"), None)
    if not segmenting and edit is not None:
        segmenting = [{"module": "E" if edit == "F" else "B"}]
        previous.insert(0, segmenting[0])
    for dumped in segmenting:
        before = str(dumped.get("command", "")).split(":", 1)[-1].strip()
        dumped["command"] = f"{PREFIX[resolve_module(dumped['module']).code]} {target}"
        for step in previous:  # "editing: make the umbrella red" → "editing: make the helmet red"
            if before and resolve_module(step["module"]).code in "CF":
                step["command"] = str(step.get("command", "")).replace(before, target)
    return previous


def context_of(request: PlanRequest) -> Context:
    uploads = [ref.kind for ref in request.inputs.values()]
    upload = "video" if "video" in uploads else "image" if "image" in uploads else None
    return Context(upload=upload, memory=tuple(e.alias for e in request.artifacts if e.alias),
                   region=request.region is not None, segmented=_last_segmented(request))


_SEGMENTATIONS = {spelling for code in "BE" for spelling in (code, resolve_module(code).name)}


def _last_segmented(request: PlanRequest) -> tuple[str, ...]:
    """The content words of the session's latest segmentation ("segmentation: the red cup" → red, cup)."""
    for turn in reversed(request.history.turns):
        for dumped in reversed(turn.invocations if turn.role == "assistant" else ()):
            if str(dumped.get("module", "")) in _SEGMENTATIONS:
                return keywords_of(str(dumped.get("command", "")).split(":", 1)[-1])
    return ()


# --- what the planner says instead of running something ----------------------------------------------------

CAPABILITIES_REPLY = ("I segment, edit, generate and animate pictures and videos, and answer questions about them: "
                      "e.g. \"segment the dog\", \"make the car red\", \"blur the background\", \"generate an "
                      "image of a lighthouse\", \"animate it with a slow zoom\", \"how big is this photo?\"; "
                      "\"undo\" and \"show me the mask again\" work too. What would you like to do?")
NO_PICTURE_REPLY = "Which picture do you mean? Upload an image or a video and ask again."
_CAPABILITY = re.compile(r"\b(?:what (?:can|could) (?:you|this|it) do|what are you able to do|what do you do|"
                         r"how do i use (?:you|this|it)|what features|what (?:can|could) i ask)\b")


def _question(text: str, request: PlanRequest) -> Plan:
    """A question about the picture is one step of the understanding module (H), whose answer becomes the reply;
    one with no picture to look at is asked back."""
    pictures = [*(e.ref.kind for e in request.artifacts), *(r.kind for r in request.inputs.values())]
    if not any(kind in ("image", "video") for kind in pictures):
        return Plan(reply=NO_PICTURE_REPLY)
    fields: dict[str, object] = {"module": "visual_understanding", "command": " ".join(text.split())}
    if isinstance(request.region, BoxRegion):
        fields["region"] = request.region  # "what is in the box?"
    return Plan(steps=[PlanStep(invocation=Invocation.model_validate(fields))])


VAGUE_REPLY = ("What would you like me to do? For example: \"segment the dog\", \"make the car red\", \"blur the "
               "background\", \"animate it with a slow zoom\" or \"generate an image of a lighthouse\"?")
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


_VERB = {"A": "generate an image of", "B": "segment", "C": "", "D": "generate a video of", "E": "track",
         "F": "", "G": "animate it:"}


def proposal(plan: Plan) -> str:
    """One short question naming the planner's best guess: "Segment the rocket, then blur everything around it?"."""
    parts = []
    for step in plan.steps:
        invocation = step.invocation
        code = resolve_module(invocation.module).code
        words = invocation.command.split(":", 1)[-1].strip()
        part = f"{_VERB[code]} {words}".strip()
        if invocation.params.get("area") == "background":
            part += " everything around it"
        parts.append(part)
    sentence = ", then ".join(parts)
    return f"{sentence[:1].upper()}{sentence[1:]}?" if sentence else VAGUE_REPLY


_CONTENT = re.compile(r"[a-z]{3,}")
_FROM_PLACE = re.compile(r"\bfrom (?:the |my |this |that |his |her )?$")
_FILLER = frozenset((
    "please", "could", "would", "can", "you", "the", "and", "then", "now", "thanks", "thank", "also", "want",
    "need", "like", "for", "with", "this", "that", "these", "those", "there", "here", "its", "his", "her", "them",
    "afterwards", "after", "next", "finally", "first", "photo", "picture", "image", "video", "clip", "just",
    "some", "bit", "more", "too", "well", "instead", "again", "one", "our", "your", "mine", "okay", "great",
    "perfect", "cool", "nice", "hey", "kindly", "pls", "plz", "really", "very", "make", "into", "from", "out",
    "what", "about", "same", "whole", "entire", "every", "frame", "frames", "all", "each", "throughout", "across",
    "over", "time", "mask", "result", "original", "new", "let", "get", "have", "got", "use", "using", "done",
    "once", "followed", "actually", "hmm", "alright", "asap", "possible", "if", "will", "should", "must", "is",
    "are", "was", "be", "has", "had", "been", "it", "me", "my", "him", "she", "he", "they", "we", "yes",
    "even", "little", "slightly", "much", "lot", "bit", "somewhat", "how", "way", "look", "object", "thing",
    "shape", "region", "area", "selection", "part", "stuff", "item", "marked", "drew", "box", "boxed", "where",
    "which", "who", "when", "while", "whose", "second", "seconds", "minute", "minutes", "an", "of", "to", "in", "on",
    "around", "through", "drawn", "circled", "inside", "within", "footage", "movie", "recording", "gif",
    "short", "quick", "colour", "color", "colours", "colors",
))


# Words that judge a result without saying what to change: "make it look good", "can you improve this?".
_PRAISE = frozenset(("good", "better", "best", "nice", "nicer", "great", "amazing", "awesome", "beautiful", "pretty",
                     "prettier", "perfect", "fantastic", "lovely", "gorgeous", "stunning", "improve", "improved",
                     "enhance", "enhanced", "make", "look", "looks", "like"))


def _only_praise(text: str, steps: Sequence[Step]) -> bool:
    """Whether the steps are edits of nothing named whose words only praise: a vague request."""
    if not steps or any(step.module not in "CF" or step.object_spans for step in steps):
        return False
    said = {word for step in steps for span in step.spans for word in keywords_of(text[span.start:span.end])}
    return said <= _PRAISE


def _unexplained(reading: RequestReading) -> bool:
    """Whether a content word of the request is read as nothing: no span holds it and it is no filler word (an
    action the planner would silently drop)."""
    covered = [(s.start, s.end) for s in reading.spans]
    lowered = reading.text.lower()
    for match in _CONTENT.finditer(lowered):
        if match.group(0) in _FILLER or ALIAS.fullmatch(match.group(0)):
            continue
        if _FROM_PLACE.search(lowered, 0, match.start()):
            continue  # "remove the cables from the wall": where the object is, not a step
        if not any(a <= match.start() < b for a, b in covered) and _ACTING.fullmatch(match.group(0)) is None:
            return True
    return False


def _operation(kind: str, text: str, table: Sequence[ArtifactEntry]) -> Plan:
    if kind == "undo":
        lowered = text.lower()
        video = bool(re.search(r"\b(?:animation|video|clip)\b", lowered))
        found = (_first(table, "image") if re.search(r"\b(?:original|first|start)\b", lowered) else
                 undo_target(table, "video" if video else None))
        if found is None:
            return Plan(reply="There is nothing to undo yet.")
        return Plan(operation=SessionOperation(kind="undo", target=f"@{found.alias}"))
    found = show_target(text, table)
    if found is None:
        return Plan(reply="There is nothing to show yet: upload a picture or ask for one.")
    return Plan(operation=SessionOperation(kind="show", target=f"@{found.alias}"))


def show_target(text: str, table: Sequence[ArtifactEntry]) -> ArtifactEntry | None:
    """The artifact "show me … again" means: the kind it names (mask, masks, video, image; the latest), or the
    session's first picture for "the original" / "the first photo", else the latest image or video."""
    lowered = text.lower()
    kind = ("masks" if re.search(r"\bmasks\b", lowered) else "mask" if re.search(r"\bmask\b", lowered) else
            "video" if re.search(r"\b(?:video|clip|animation)\b", lowered) else
            "image" if re.search(r"\b(?:image|photo|picture|pic)\b", lowered) else None)
    if re.search(r"\b(?:original|first)\b", lowered):
        return _first(table, "video" if kind == "video" else "image")
    if kind in (None, "image", "video") and re.search(r"\b(?:before|previous|earlier)\b", lowered):
        return undo_target(table, kind)  # "show me the before": the picture the last edit started from
    kinds = (kind,) if kind else ("image", "video")
    return next((e for e in reversed(table) if e.ref.kind in kinds and e.alias), None)


def _first(table: Sequence[ArtifactEntry], kind: str) -> ArtifactEntry | None:
    return next((entry for entry in table if entry.ref.kind == kind and entry.alias), None)


_FIRST = re.compile(r"\b(?:original|first|initial)\s+(?:(photo|image|picture|pic)|(clip|video))\b")
_MAIN_INPUT = {"B": "image", "C": "image", "G": "image", "E": "video", "F": "video"}


def _with_first_named(steps: list[Invocation], text: str, table: Sequence[ArtifactEntry]) -> list[Invocation]:
    """"The first photo", "the original clip": the session's first image or video, for the first step that works on
    one and names none (the resolver alone would pick the latest)."""
    found = _FIRST.search(text.lower())
    if found is None:
        return steps
    first = _first(table, "image" if found.group(1) else "video")
    return _set_main_input(steps, first, "image" if found.group(1) else "video")


def _instead(steps: list[Invocation], text: str, table: Sequence[ArtifactEntry]) -> list[Invocation]:
    """"Make it sepia instead": the edit replaces the last one, so it works on what the last one was made from."""
    latest = next((e for e in reversed(table) if e.ref.kind in ("image", "video")), None)
    if not re.search(r"\binstead\b", text.lower()) or latest is None or latest.made_by == UNDO:
        return steps  # right after an undo, the restored picture is already the one to edit
    target = undo_target(table)
    return _set_main_input(steps, target, target.ref.kind) if target is not None else steps


def _set_main_input(steps: list[Invocation], entry: ArtifactEntry | None, kind: str) -> list[Invocation]:
    for index, step in enumerate(steps):
        field = _MAIN_INPUT.get(resolve_module(step.module).code)
        if entry is None or field != kind or field in step.inputs:
            continue
        out = list(steps)
        out[index] = step.model_copy(update={"inputs": {**step.inputs, field: f"@{entry.alias}"}})
        return out
    return steps


def _embedding(task_specific: np.ndarray, task_invariant: np.ndarray) -> SignalEmbedding:
    try:
        return SignalEmbedding(task_specific=task_specific.astype(np.float32),
                               task_invariant=task_invariant.astype(np.float32))
    except ValidationError as exc:
        raise InvalidInput(f"the planner's signal embedding is unusable: {exc.errors()[0]['msg']}",
                           field="signal") from None

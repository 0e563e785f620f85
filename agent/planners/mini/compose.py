"""From tagged spans to steps: the small grammar that turns a request's tagged words into the plan's steps.

The tagger marks what each word of the request is for (see `TAGS`); this module decides the steps, their order,
their modules and the words of their instructions, deterministically, so an instruction is always a span of the
user's own words (never a repeated or invented one) and every action tagged in the request becomes a step:

- an object (`OBJ`) with no edit is segmented; an edit around an object ("make the rocket blue", "blur the
  penguin") segments the object first and edits inside its mask; `BG` words ("everything else", "the background")
  make the edit act outside it (`area="background"`), segmenting what the region marks when nothing else is;
- an object-only edit on a follow-up reuses the session's mask (no new segmentation) unless a region was drawn;
- `GEN` / `VGEN` descriptions generate an image / a video; `ANIM` words animate the latest image (so a
  description animated right after is an image's, whichever of the two it was tagged); a description the user
  says they drew themselves ("i drew a box around the dog, …") is their region, not a picture to generate;
- whether segmentation and editing work on images (B, C) or videos (E, F) follows the picture the request is
  about: an alias it names, a video word, this turn's upload, else the session's latest picture, and a video once
  a step of this plan made one.
Which artifact a step works on is left to the agent's resolver unless the user named one (`@img2`, `img2`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

TAGS: tuple[str, ...] = ("SEG", "OBJ", "EDIT", "BG", "GEN", "VGEN", "ANIM")
"""What a tagged word is for: asking for a segmentation, the object, an edit's words, the background an edit acts
on, a description of an image or a video to generate, an animation's words."""

PREFIX: dict[str, str] = {
    "A": "generation:",
    "B": "segmentation:",
    "C": "editing:",
    "D": "video generation:",
    "E": "video segmentation:",
    "F": "video editing:",
    "G": "image to video:",
}
"""The task word each module's instruction starts with (VITRON writes `segmentation: zebra`)."""

REGION_MODULES = frozenset("BCEF")
"""Modules that read a region; a drawn region goes to the first such step."""

STOPWORDS = frozenset((
    "a", "an", "the", "it", "its", "them", "that", "this", "these", "those", "of", "to", "in", "on", "at",
    "from", "with", "and", "into", "onto", "for", "by", "as", "is", "be", "please", "me", "my", "i", "you",
    "your", "there", "then", "so", "up",
))
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# "i drew a box around …", "i've just drawn a circle round …": the user telling what they drew on the sketch pad.
_USER_DREW = re.compile(r"\bi(?:'ve| have)? (?:just |already )?(?:drew|drawn|sketched)\s*$")


def words(text: str) -> list[str]:
    """Lower-case words of `text`, as keyword recall compares them."""
    return _WORD.findall(text.lower())


def keywords_of(text: str) -> tuple[str, ...]:
    """The content words of an instruction: what a specialist needs to read in it."""
    return tuple(w for w in words(text) if w not in STOPWORDS and len(w) > 1)

_KIND_OF_PREFIX = {"img": "image", "image": "image", "mask": "mask", "video": "video", "vid": "video",
                   "masks": "masks"}
ALIAS = re.compile(r"(?<![\w@])@?(img|image|masks|mask|video|vid)(\d+)\b", re.IGNORECASE)
"""An artifact alias as users write it: `img2`, `@mask1`, `video3`."""
_VIDEO_WORDS = re.compile(r"\b(?:video|videos|clip|footage|frames?|movie|film)\b", re.IGNORECASE)
_INPUT_FIELDS = {"B": {"image": "image"}, "C": {"image": "image", "mask": "mask"}, "G": {"image": "image"},
                 "E": {"video": "video"}, "F": {"video": "video", "masks": "masks"}}


@dataclass(frozen=True)
class Span:
    """Characters `start:end` of the request, tagged; `begins` is False where it continues the latest span of
    its tag (an edit's words around its object: "make | the rocket | blue")."""

    start: int
    end: int
    tag: str
    begins: bool = True


@dataclass(frozen=True)
class Context:
    """What the session holds when the request comes: this turn's upload kind, the aliases of its artifact table
    (oldest first), whether a region was drawn, and what the session's latest segmentation was of (its content
    words; empty when unknown)."""

    upload: str | None = None  # "image" or "video"
    memory: tuple[str, ...] = ()
    region: bool = False
    segmented: tuple[str, ...] = ()

    def mask_is_of(self, said: str) -> bool:
        """Whether the session's latest mask may be of the object the user names: yes when it is not known what it
        was of, or when they share a content word ("the lamp" / "the brass lamp"; "boots" / "boot")."""
        if not self.segmented:
            return True
        return bool({_stem(w) for w in said.split()} & {_stem(w) for w in self.segmented})

    def has(self, kind: str) -> bool:
        return any(kind_of(alias) == kind for alias in self.memory)

    def latest_picture(self) -> str | None:
        kinds = [kind_of(alias) for alias in self.memory]
        return next((k for k in reversed(kinds) if k in ("image", "video")), None)


@dataclass
class Step:
    """One step of the plan: module letter, instruction, the inputs the user named, and where an edit acts."""

    module: str
    spans: list[Span] = field(default_factory=list)  # the words this step reads (its signal comes from them)
    object_spans: list[Span] = field(default_factory=list)  # for an edit: its object's words
    area: str | None = None  # "background": an edit outside the mask
    inputs: dict[str, str] = field(default_factory=dict)  # field -> "@alias", only what the user named
    explicit: bool = True  # a segmentation asked for in words (not only implied by an edit of an object)
    instruction: str = ""
    object_phrase: str = ""  # the task-free words (the target of the task-invariant signal)

    @property
    def keywords(self) -> tuple[str, ...]:
        return keywords_of(self.instruction.split(":", 1)[1])


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def kind_of(alias: str) -> str | None:
    match = re.fullmatch(r"@?([a-z]+)\d+", alias.lower())
    return _KIND_OF_PREFIX.get(match.group(1)) if match else None


def compose(text: str, spans: Sequence[Span], context: Context) -> list[Step]:
    """The steps a request's tagged spans ask for (see the module's docstring)."""
    ordered = sorted(spans, key=lambda s: s.start)
    picture = _picture(text, ordered, context)
    steps: list[Step] = []
    edit: Step | None = None  # the edit the latest words belong to
    segment: Step | None = None  # the latest segmentation, while it still waits for its object
    pending_background = False
    made_video = False

    def seg_module() -> str:
        return "E" if made_video or picture == "video" else "B"

    def edit_module() -> str:
        return "F" if made_video or picture == "video" else "C"

    for span in ordered:
        last = steps[-1] if steps else None
        if span.tag in ("GEN", "VGEN") and _USER_DREW.search(text.lower(), 0, span.start):
            continue  # their own drawing (the region), which the words after it act on
        if span.tag in ("GEN", "VGEN"):
            if span.begins or last is None or last.module not in "AD":
                steps.append(Step("A" if span.tag == "GEN" else "D"))
            steps[-1].spans.append(span)
            made_video = made_video or span.tag == "VGEN"
            edit = segment = None
        elif span.tag == "ANIM":
            if span.begins or last is None or last.module != "G":
                steps.append(Step("G"))
            steps[-1].spans.append(span)
            made_video, edit, segment = True, None, None
        elif span.tag == "SEG":
            if segment is not None and not segment.explicit and span.begins:
                segment.explicit = True  # "the bee: | trace it": the object came first
            elif span.begins or segment is None:
                segment = Step(seg_module())
                steps.append(segment)
                edit = None
            segment.spans.append(span)
        elif span.tag == "OBJ":
            if segment is not None and not segment.object_spans:
                segment.spans.append(span)  # "segment | the rocket"
                segment.object_spans.append(span)
            elif edit is not None and not edit.object_spans:
                seg = Step(seg_module(), [span], [span], explicit=False)
                steps.insert(steps.index(edit), seg)  # "blur | the penguin": segment it, then blur it
                edit.object_spans.append(span)
            else:
                segment = Step(seg_module(), [span], [span], explicit=False)  # "the candle: make it purple"
                steps.append(segment)
                edit = None
        elif span.tag == "EDIT":
            if span.begins or edit is None:
                edit = Step(edit_module())
                steps.append(edit)
                if segment is not None and segment.object_spans and not segment.explicit \
                        and steps.index(segment) == len(steps) - 2:
                    edit.object_spans.extend(segment.object_spans)  # "the candle: | make it purple"
                segment = None
                if pending_background:
                    edit.area, pending_background = "background", False
            edit.spans.append(span)
        elif span.tag == "BG":
            if edit is not None:
                edit.area = "background"
            else:
                pending_background = True
    for before, after in itertools.pairwise(steps):
        if before.module == "D" and after.module == "G":
            before.module = "A"  # only an image is animated: what was described to animate is an image
    _name_inputs(steps, text, ordered)
    steps = _segment_where_needed(steps, context, text)
    _share_pictures(steps)
    for step in steps:
        _finish(step, text, context.region)
    return steps


def _picture(text: str, spans: Sequence[Span], context: Context) -> str:
    """Whether segmentation and edits work on an image or a video (before any step of this plan makes one)."""
    generated = [s for s in spans if s.tag in ("GEN", "VGEN", "ANIM")]
    for match in ALIAS.finditer(text):
        if not any(s.start <= match.start() < s.end for s in generated):
            kind = kind_of(match.group(0))
            return "video" if kind in ("video", "masks") else "image"
    outside = "".join(" " if any(s.start <= i < s.end for s in generated) else c for i, c in enumerate(text))
    # "make it look like it was shot on film" with a photo just uploaded and no video anywhere is about the photo
    if _VIDEO_WORDS.search(outside) and (context.upload != "image" or context.has("video")):
        return "video"
    if context.upload:
        return context.upload
    return context.latest_picture() or "image"


def _segment_where_needed(steps: list[Step], context: Context, text: str) -> list[Step]:
    """Drop a segmentation only an edit implied when the session already has the object's mask (a follow-up such
    as "make the lighthouse red too" after segmenting the lighthouse; "now make the boots red" after the umbrella
    segments the boots) and one that only repeats the verb about the object just segmented ("find the cup and
    cut it out"); add one before an edit of the background when nothing marks the object yet."""
    fresh = context.region or context.upload is not None
    out: list[Step] = []
    for index, step in enumerate(steps):
        kind = "masks" if step.module in "EF" else "mask"
        follower = steps[index + 1] if index + 1 < len(steps) else None
        if step.module in "BE" and not step.explicit and follower is not None and kind in follower.inputs:
            continue  # "recolour the dog in mask1": the user named the mask
        if step.module in "BE" and not step.explicit and not fresh and context.has(kind) and not out \
                and context.mask_is_of(_said(step, text)):
            continue
        if step.module in "BE" and not step.explicit and any(
                s.module == step.module and _said(s, text) == _said(step, text) for s in out):
            continue  # "segment the cat, then blur the cat": the cat is segmented once
        if step.module in "BE" and any(step is s for s in out):
            continue  # moved before the edit that needed it
        if step.module in "BE" and step.explicit and not step.object_spans and not step.inputs and out \
                and out[-1].module == step.module and out[-1].object_spans:
            continue  # "find the cup and cut it out": the verb again, about the same object
        if step.module in "CF" and step.area == "background" and not any(s.module in "BE" for s in out):
            later = next((s for s in steps[index + 1:] if s.module in "BE"), None)
            if later is not None:  # "make the rest gray but keep the shark": the shark is segmented first
                out.append(later)
            elif fresh or not context.has(kind):
                out.append(Step("E" if step.module == "F" else "B", explicit=False))
        out.append(step)
    return out


def _said(step: Step, text: str) -> str:
    """A segmentation's object as the user said it, for comparing two of them."""
    return " ".join(keywords_of(_words(text, step.object_spans)))


def _finish(step: Step, text: str, region: bool) -> None:
    """The step's instruction (its task word and its words, aliases left out) and its task-free object phrase."""
    spans = step.spans
    if step.module in "BE":
        spans = step.object_spans  # "segmentation: the red cup", without "cut … out"
    elif step.module in "CF" and step.area is None:
        spans = [*spans, *step.object_spans]
    body = _words(text, spans)
    if not body and step.module in "BE":
        body = "the marked region" if region else "the main subject"
    step.instruction = f"{PREFIX[step.module]} {body}".strip()
    step.object_phrase = _words(text, step.object_spans) or body


def _words(text: str, spans: Sequence[Span]) -> str:
    pieces = [text[s.start:s.end] for s in sorted(spans, key=lambda s: s.start)]
    joined = ALIAS.sub(" ", " ".join(pieces))
    return " ".join(joined.replace("<", " ").replace(">", " ").split()).strip(" ,.;:!?")


def _name_inputs(steps: list[Step], text: str, spans: Sequence[Span]) -> None:
    """Each alias the request names goes to the nearest step that reads that kind; an edit of a segmentation's
    object then works on the picture that segmentation named."""
    generated = [s for s in spans if s.tag in ("GEN", "VGEN")]
    for match in ALIAS.finditer(text):
        if any(s.start <= match.start() < s.end for s in generated):
            continue
        kind = kind_of(match.group(0))
        alias = f"@{match.group(1).lower()}{match.group(2)}"
        candidates = [s for s in steps if kind in _INPUT_FIELDS.get(s.module, {})
                      and _INPUT_FIELDS[s.module][kind] not in s.inputs]
        if not candidates:
            continue
        nearest = min(candidates, key=lambda s: _distance(s, match.start(), match.end()))
        nearest.inputs[_INPUT_FIELDS[nearest.module][kind]] = alias


def _share_pictures(steps: list[Step]) -> None:
    """An edit right after a segmentation works on the picture that segmentation named."""
    for before, after in itertools.pairwise(steps):
        if before.module in "BE" and after.module in "CF":
            field_ = "image" if before.module == "B" else "video"
            if field_ in before.inputs and field_ not in after.inputs:
                after.inputs[field_] = before.inputs[field_]


def _distance(step: Step, start: int, end: int) -> int:
    if not step.spans:
        return 10_000
    return min(max(s.start - end, start - s.end, 0) for s in step.spans)
